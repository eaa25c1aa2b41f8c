"""The line protocol's meaning, apart from sockets: VW lines in, one reply line each out.

As Vowpal Wabbit's daemon does, each example line is answered with its prediction, then a blank
and the line's tag if it has one (``0.7310585786300049 mytag``); the prediction is written
exactly as ``shoal predict`` writes it (``prediction_line``). A labeled line is learned too, in
VW's progressive way: it is predicted by the model as it was before learning it, then logged,
and its reply waits until the event is durable -- the reply is its acknowledgement.

Where VW has no answer, shoal replies ``error: line N: PROBLEM``: ``N`` counts the
connection's lines from 1, and the connection stays usable. Blank lines are not examples, as in
VW text files and ``shoal predict``: they get no reply.

The lines that arrived together are answered together (``answer_block``): the block of bytes
is split, parsed and hashed by the training parser's kernel in one call (VW text; for a model
with a column schema, rows of its table: ``rows.py``), predicted at once by the live model (a
lone line waits for no batch; a linear model's lines without labels are parsed and predicted
by one call, ``predictlines.py``), its replies are formatted in one go, and its labeled lines are
logged with one durable commit. A block the kernel refuses (a bad line), a JSON line or text
that is not UTF-8 takes the slow path: each line on its own, so that each gets its own answer.

>>> import tempfile, pathlib
>>> from shoal import FeatureSpec, Model
>>> from shoal.serve import ServiceConfig
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> Model(FeatureSpec(bits=8)).save(d / "m.shoal")
>>> with ModelService(ServiceConfig(model_path=str(d / "m.shoal"), state_dir=str(d / "s"))) as s:
...     fast = answer_block(s, b"| a\\n\\n'q | b\\n", first=1)
...     out = answer_block(s, b"| a\\n\\n1 'seen | b\\n7 | c\\n", first=1)
...     out.lines, out.kinds, [r.split()[-1] for r in out.replies], fast.replies
([1, 3, 4], ['predicted', 'learned', 'error'], ['0.5', 'seen', '0/1'], ['0.5', '0.5 q'])
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoal.data import textparse
from shoal.data.batch import Batch
from shoal.data.reader import as_parsed
from shoal.errors import ShoalError
from shoal.features.spec import FeatureSpec
from shoal.model.model import Model
from shoal.model.output import prediction_line
from shoal.serve.errors import RequestError
from shoal.serve.learning.service import ModelService
from shoal.serve.reading.expansion import MAX_INTERACTION_FEATURES
from shoal.serve.reading.records import check_line
from shoal.serve.reading.rows import rows_of
from shoal.serve.tcp import predictlines


@dataclass
class Answer:
    """The replies to a batch of lines, in order; the learned ones wait for ``durable``."""

    lines: list[int] = field(default_factory=list)  # the line number of each reply
    replies: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # predicted, learned or error (the metrics)
    durable: list[tuple[list[int], Future[list[int]]]] = field(default_factory=list)

    def add(self, line: int) -> int:
        self.lines.append(line)
        self.replies.append("")
        self.kinds.append("predicted")
        return len(self.replies) - 1

    def fail(self, index: int, exc: ShoalError) -> None:
        problem = exc.problem if isinstance(exc, RequestError) else str(exc)
        flat = " ".join(problem.splitlines())  # a reply is one line, whatever the message
        self.replies[index] = f"error: line {self.lines[index]}: {flat}"
        self.kinds[index] = "error"

    def settled_now(self) -> list[str]:
        """``settled``, once every future of ``durable`` is done."""
        for indexes, future in self.durable:
            exc = future.exception()
            if isinstance(exc, ShoalError):
                for i in indexes:
                    self.fail(i, exc)
            elif exc is not None:
                raise exc
        return self.replies

    async def settled(self) -> list[str]:
        """The replies, once every learned line is durable; a line whose event could not be
        logged gets an error instead of its prediction, which would acknowledge it."""
        for indexes, future in self.durable:
            try:
                await asyncio.wrap_future(future)
            except ShoalError as exc:
                for i in indexes:
                    self.fail(i, exc)
        return self.replies


def answer_block(service: ModelService, block: bytes, first: int) -> Answer:
    """Answer the whole lines of ``block`` (the last one's line end may be missing), numbered
    from ``first`` on their connection: at once in the common case, else line by line."""
    try:
        fast = _fast(service, block, first)
    except ShoalError:  # shutting down, a label the loss cannot take: each line says so
        fast = None
    if fast is not None:
        return fast
    return answer(service, block.removesuffix(b"\n").split(b"\n"), first)


def _fast(service: ModelService, block: bytes, first: int) -> Answer | None:
    """The block's answer with no Python per line but for the labeled ones; None where a line
    needs a closer look (it is bad, a JSON line, or not UTF-8)."""
    if b"{" in block or not (block.isascii() or _utf8(block)):
        return None
    buf = np.frombuffer(block, dtype=np.uint8)
    try:
        scored, _ = service.score(lambda model: _score(model, buf, first))
    except RequestError:
        return None
    out = Answer(lines=scored.lines, replies=scored.replies, kinds=["predicted"] * len(scored))
    if scored.labeled:
        ends = np.flatnonzero(buf == 10)
        starts = np.concatenate(([0], ends + 1))
        ends = np.concatenate((ends, [len(buf)]))
        texts = [
            block[starts[k] : ends[k]].removesuffix(b"\r").decode("utf-8")
            for k in scored.labeled_lines
        ]
        future = service.learn(texts, checked=True)  # one commit; their replies wait for it
        for i in scored.labeled:
            out.kinds[i] = "learned"
        out.durable.append((scored.labeled, future))
    return out


@dataclass
class _Scored:
    """A block's replies and the line of each; its rows that hold a label (learned), and
    their lines in the block (from 0)."""

    lines: list[int]
    replies: list[str]
    labeled: list[int]
    labeled_lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)


def _score(model: Model, buf: np.ndarray, first: int) -> _Scored:
    """The block's predictions by ``model``, and its labels checked: a linear model's lines by
    one kernel call (``predictlines``), anything else parsed into a ``Batch`` and predicted. A
    label the loss cannot take raises ``DataError``."""
    found = _predict_lines(model, buf, labels=True)
    if found.code == predictlines.OK:
        labels, rows = found.labels, found.rows
        labeled = np.flatnonzero(~np.isnan(labels))
        if len(labeled):
            model.check_label_values(labels, rows + first, "line")
        return _Scored((rows + first).tolist(), _replies(found.values, found.tags),
                       labeled.tolist(), rows[labeled].tolist())  # fmt: skip
    if found.code == predictlines.BAD_LINE:
        raise RequestError("line", "a bad line")
    batch = _parse(model.spec, buf, first)
    values = model.predict(batch).tolist()
    tags = batch.tags() if len(batch.tag_bytes) else None
    labeled = np.flatnonzero(~np.isnan(batch.labels))
    if len(labeled):
        model.check_labels(batch)
    return _Scored(batch.lines.tolist(), _replies(values, tags), labeled.tolist(),
                   (batch.lines[labeled] - first).tolist())  # fmt: skip


@dataclass(slots=True)
class _Predicted:
    """What ``predictlines`` made of a block: its code, and unless that is ``LABELED`` or an
    error, each row's prediction, line in the block (from 0), tag and label (NaN: none)."""

    code: int
    values: list[Any] = field(default_factory=list)
    rows: Any = None
    tags: list[str] | None = None
    labels: Any = None


def _predict_lines(model: Model, buf: np.ndarray, *, labels: bool) -> _Predicted:
    """The block by one kernel call (``predictlines``); a code other than ``OK`` where it
    takes a ``Batch``: a bad line, a schema model, a factorization machine -- or, without
    ``labels``, a line that may hold a label."""
    spec = model.spec
    if spec.schema is not None or model.config.factorized or _may_expand(buf, spec):
        return _Predicted(predictlines.LABELED)
    rules, offsets, letters, namespaces = _kernel_args(spec)
    k = model.config.outputs
    code, margins, rows, tag_offsets, tag_bytes = predictlines.predict_lines(
        buf, rules, spec.mask, spec.constant, namespaces, offsets, letters, model.weights, k,
        spec.index_limit, labels,
    )  # fmt: skip
    if code != predictlines.OK:
        return _Predicted(code)
    values = model.predictions(margins[:, 0] if k == 1 else margins[:, :k]).tolist()
    return _Predicted(code, values, rows, _tags(tag_offsets, tag_bytes), margins[:, k])


@dataclass(slots=True)
class Replies:
    """The text of a block's replies, and how many lines it answers."""

    text: bytes
    count: int

    def __len__(self) -> int:
        return self.count


class _Declined(Exception):
    """Not a block for ``predicted_only``."""


def predicted_only(service: ModelService, block: bytes) -> Replies | None:
    """The replies to a block of whole lines that only ask a linear model for predictions (each
    line starts with ``|`` or ``'``), as the bytes to send; None for any other block, which
    ``answer_block`` answers. The TCP server's way for the usual small block: nothing is
    learned, nothing can fail, so there is no ``Answer`` to settle."""
    if b"{" in block or not block.isascii():
        return None
    buf = np.frombuffer(block, dtype=np.uint8)
    try:
        replies, _ = service.score(lambda model: _replies_only(model, buf))
    except (_Declined, ShoalError):  # (ShoalError: shutting down; answer_block says so)
        return None
    return replies


def _replies_only(model: Model, buf: np.ndarray) -> Replies:
    found = _predict_lines(model, buf, labels=False)
    if found.code != predictlines.OK:
        raise _Declined
    replies = _replies(found.values, found.tags)
    return Replies(("\n".join(replies) + "\n").encode() if replies else b"", len(replies))


def warm_up(model: Model) -> None:
    """Load the kernels a block of lines takes for ``model`` -- or compile them, on a machine
    without numba's cache (~50 s) -- before a client's first line waits for them."""
    with contextlib.suppress(ShoalError):  # a schema model's row is not "| a": parsed all the same
        _score(model, np.frombuffer(b"| a\n", dtype=np.uint8), 1)


def _utf8(block: bytes) -> bool:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse(spec: FeatureSpec, buf: np.ndarray, first: int) -> Batch:
    """The block's rows, by the training parser's kernel; RequestError for a bad line."""
    if spec.schema is not None:
        return rows_of(spec).parse_block(buf, "line", first - 1)
    if _may_expand(buf, spec):  # the slow path counts them (expansion.py)
        raise RequestError("line", "long lines under interactions are checked one by one")
    rules, offsets, letters, namespaces = _kernel_args(spec)
    out = textparse.parse_block(
        buf, len(buf), False, rules, spec.mask, spec.constant, namespaces, offsets, letters, False
    )
    if out[10]:  # its error code
        raise RequestError("line", "a bad line")
    return as_parsed(out, buf).batch("line", first)


_KERNEL_ARGS: dict[int, tuple[FeatureSpec, tuple[Any, np.ndarray, np.ndarray, np.ndarray]]] = {}


def _may_expand(buf: np.ndarray, spec: FeatureSpec) -> bool:
    """Whether the block's lines might make more interaction features than a request may: a
    line of n bytes holds at most n/2 features, so the block's pairs are at most (its longest
    line / 2) x (its length / 2). Click lines (~200 bytes) in 64 KiB blocks stay far below."""
    if not spec.interactions:
        return False
    ends = np.flatnonzero(buf == 10)
    bounds = np.concatenate(([-1], ends, [len(buf)]))
    longest = int(np.diff(bounds).max())
    return longest * len(buf) // 4 > MAX_INTERACTION_FEATURES


def _kernel_args(spec: FeatureSpec) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The spec's arrays for the VW kernel, made once per spec (looked up by identity: a
    spec's hash walks all its fields, a cost per line here)."""
    found = _KERNEL_ARGS.get(id(spec))
    if found is None or found[0] is not spec:
        if len(_KERNEL_ARGS) > 16:
            _KERNEL_ARGS.clear()
        offsets, letters = spec.interaction_arrays()
        args = (spec.hash_rules(), offsets, letters, spec.namespace_table())
        found = _KERNEL_ARGS[id(spec)] = (spec, args)
    return found[1]


def _tags(offsets: np.ndarray, data: np.ndarray) -> list[str] | None:
    """Each row's tag ('' if none), as ``Batch.tag`` reads it; None when no row has one."""
    if not len(data):
        return None
    text, ends = data.tobytes(), offsets.tolist()
    return [text[a:b].decode("utf-8", errors="replace") for a, b in itertools.pairwise(ends)]


def _replies(values: list[Any], tags: list[str] | None) -> list[str]:
    """Each prediction as ``shoal predict --tags`` writes it (``prediction_line``)."""
    if tags is None:
        return list(map(repr, values))
    return list(map(prediction_line, values, tags))


_Slot = tuple[Answer, int]  # a reply: its connection's answer, and its index there
_Retry = Callable[[list[str], list[_Slot]], None]  # lines to answer, and their replies' slots


def answer(service: ModelService, raw: Sequence[bytes], first: int) -> Answer:
    """Answer the raw lines (no line ends) numbered ``first``, ``first + 1``, ... on their
    connection. Blocks on the model; learned replies wait in ``durable``."""
    return answer_many(service, [(raw, first)])[0]


def answer_many(
    service: ModelService, batches: Sequence[tuple[Sequence[bytes], int]]
) -> list[Answer]:
    """``answer`` for the batches of several connections at once: one ``predict`` and one
    ``learn`` for all their lines (the TCP server gathers those of one event-loop turn)."""
    outs: list[Answer] = []
    texts: list[str] = []
    slots: list[_Slot] = []
    for raw, first in batches:
        out = Answer()
        outs.append(out)
        for number, line in enumerate(raw, first):
            try:
                text = _text(line)
            except RequestError as exc:
                out.fail(out.add(number), exc)
                continue
            if text.strip():
                texts.append(text)
                slots.append((out, out.add(number)))
    if texts:
        _predict(service, texts, slots)
    return outs


def _text(line: bytes) -> str:
    """A line as text: UTF-8, without the ``\\r`` of a ``\\r\\n`` line end."""
    try:
        text = line.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("line", f"is not UTF-8 text (byte {exc.start + 1})") from None
    return check_line(text, "line") if text.strip() else text


def _predict(service: ModelService, texts: list[str], slots: list[_Slot]) -> None:
    """Predict the lines, then learn those with a label (after: the prediction must not know
    its own line)."""
    try:
        pred = service.predict(texts, remember=False)
    except ShoalError as exc:
        _split(exc, texts, slots, lambda t, w: _predict(service, t, w))
        return
    for (out, i), value, tag in zip(slots, pred.values, pred.tags, strict=True):
        out.replies[i] = prediction_line(value, tag)
    labeled = [k for k, has_label in enumerate(pred.labeled) if has_label]
    if labeled:
        _learn(service, [texts[k] for k in labeled], [slots[k] for k in labeled])


def _learn(service: ModelService, texts: list[str], slots: list[_Slot]) -> None:
    """Log the labeled lines, in order; their replies wait for the log."""
    try:
        future = service.learn(texts)
    except ShoalError as exc:
        _split(exc, texts, slots, lambda t, w: _learn(service, t, w))
        return
    waiting: dict[int, tuple[Answer, list[int]]] = {}
    for out, i in slots:
        waiting.setdefault(id(out), (out, []))[1].append(i)
        out.kinds[i] = "learned"
    for out, indexes in waiting.values():
        out.durable.append((indexes, future))


def _split(exc: ShoalError, texts: list[str], slots: list[_Slot], retry: _Retry) -> None:
    """A call on several lines failed. A ``RequestError`` is about one of them: try each on its
    own. Any other error (the service is shutting down) is every line's answer."""
    if isinstance(exc, RequestError) and len(texts) > 1:
        for text, slot in zip(texts, slots, strict=True):
            retry([text], [slot])
    else:
        for out, index in slots:
            out.fail(index, exc)
