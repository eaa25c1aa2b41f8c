"""Lines parsed and predicted by one kernel call (``predictlines``) get the replies a ``Batch``
and ``Model.predict`` give them, to the character, and the same lines are learned; the lines
it does not take go that way."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import FeatureSpec, LearnerConfig, Model
from shoal.data.batch import Batch
from shoal.errors import DataError
from shoal.serve.errors import RequestError
from shoal.serve.tcp import lines, predictlines

LOSSES = {
    "logistic": LearnerConfig(loss="logistic"),
    "squared": LearnerConfig(loss="squared"),
    "hinge": LearnerConfig(loss="hinge"),
    "multiclass": LearnerConfig(loss="multiclass", classes=3),
}


def trained(loss: str, **spec: Any) -> Model:
    model = Model(FeatureSpec(bits=10, **spec), LOSSES[loss])
    rng = np.random.default_rng(7)
    rows = []
    for i in range(300):
        label = int(rng.integers(1, 4)) if loss == "multiclass" else 2 * int(rng.integers(0, 2)) - 1
        feats = " ".join(f"f{int(j)}:{rng.normal():.3f}" for j in rng.integers(0, 40, 6))
        rows.append(f"{label} |a {feats} |b g{i % 7}")
    data = ("\n".join(rows) + "\n").encode()
    model.learn(lines._parse(model.spec, np.frombuffer(data, dtype=np.uint8), 1))
    return model


MODELS = {loss: trained(loss) for loss in LOSSES}


def batch_way(model: Model, block: bytes, first: int) -> tuple[list[int], list[str], Batch]:
    buf = np.frombuffer(block, dtype=np.uint8)
    batch = lines._parse(model.spec, buf, first)
    values = model.predict(batch).tolist()
    tags = batch.tags() if len(batch.tag_bytes) else None
    return batch.lines.tolist(), lines._replies(values, tags), batch


def kernel_code(
    model: Model, block: bytes, limit: int | None = None, *, labels: bool = True
) -> int:
    """What ``predict_lines`` says of ``block`` (its weights read below ``limit``)."""
    spec = model.spec
    rules, offsets, letters, namespaces = lines._kernel_args(spec)
    return predictlines.predict_lines(
        np.frombuffer(block, dtype=np.uint8), rules, spec.mask, spec.constant, namespaces,
        offsets, letters, model.weights, model.config.outputs,
        spec.index_limit if limit is None else limit, labels,
    )[0]  # fmt: skip


def fused(model: Model, block: bytes, first: int) -> tuple[int, Any]:
    return kernel_code(model, block), lines._score(model, np.frombuffer(block, np.uint8), first)


word = st.text(alphabet="abcxyz019_", min_size=1, max_size=4)
feature = st.tuples(word, st.one_of(st.none(), st.floats(-1e3, 1e3, width=32))).map(
    lambda f: f[0] if f[1] is None else f"{f[0]}:{f[1]!r}"
)
namespace = st.tuples(st.sampled_from(["", "a", "b", "bee"]), st.lists(feature, max_size=5)).map(
    lambda ns: f"|{ns[0]} " + " ".join(ns[1])
)
line = st.tuples(st.one_of(st.none(), word), st.lists(namespace, min_size=1, max_size=3)).map(
    lambda t: ("" if t[0] is None else f"'{t[0]} ") + " ".join(t[1])
)


def blocks(labels: list[str]) -> st.SearchStrategy[str]:
    """Blocks of lines, blank lines and ``\\r\\n`` ends; some lines labeled with one of
    ``labels`` (and sometimes an importance weight)."""
    label = st.tuples(st.sampled_from(labels), st.sampled_from(["", " 0.5"])).map("".join)
    labeled = st.tuples(label, line).map(lambda t: f"{t[0]} {t[1]}")
    one = st.one_of(line, line, labeled, st.just(""), line.map(lambda s: s + "\r"))
    return st.lists(one, min_size=1, max_size=6).map(lambda ls: "\n".join(ls) + "\n")


LABELS = {"logistic": ["1", "-1"], "squared": ["2.5", "-1"], "hinge": ["1", "0"],
          "multiclass": ["1", "3"]}  # fmt: skip


@pytest.mark.parametrize("loss", list(LOSSES))
@settings(max_examples=60, deadline=None)
@given(data=st.data(), first=st.integers(1, 1000))
def test_the_kernel_replies_as_a_batch_and_predict_do(loss: str, data: Any, first: int) -> None:
    model = MODELS[loss]
    text = data.draw(blocks(LABELS[loss]))
    code, scored = fused(model, text.encode(), first)
    assert code == predictlines.OK
    got_lines, replies, batch = batch_way(model, text.encode(), first)
    labeled = np.flatnonzero(~np.isnan(batch.labels))
    assert (scored.lines, scored.replies) == (got_lines, replies)
    assert scored.labeled == labeled.tolist()
    assert scored.labeled_lines == (batch.lines[labeled] - first).tolist()


def test_interactions_and_tags_the_kernel_replies_as_a_batch_does() -> None:
    model = trained("logistic", interactions=("ab",))
    text = b"'r1 |a f1:0.5 f3 |b g2\n\n|a f9\r\n-1 'r9 |b g1 |a f2:-2\n"
    code, scored = fused(model, text, 5)
    assert code == predictlines.OK
    got_lines, replies, _ = batch_way(model, text, 5)
    assert (scored.lines, scored.replies) == (got_lines, replies) == ([5, 7, 8], replies)
    assert replies[0].endswith(" r1") and replies[2].endswith(" r9")
    assert (scored.labeled, scored.labeled_lines) == ([2], [3])


@pytest.mark.parametrize("text", [b"|a f1\n1 |a f2\n", b" |a f1\n"])
def test_without_labels_the_kernel_stops_at_a_line_that_may_hold_one(text: bytes) -> None:
    """(``predicted_only``: the TCP server's way for blocks that only ask for predictions.)"""
    model = MODELS["logistic"]
    assert kernel_code(model, text, labels=False) == predictlines.LABELED
    assert kernel_code(model, text) == predictlines.OK


def test_a_label_the_loss_cannot_take_is_the_batch_way_s_error() -> None:
    with pytest.raises(DataError, match="line 3 of line: label 7 is not valid for logistic loss"):
        lines._score(MODELS["logistic"], np.frombuffer(b"| a\n7 |a f1\n", np.uint8), 2)


def test_a_multiclass_initial_prediction_goes_the_batch_way() -> None:
    """The Batch way refuses it with its reason (a multiclass model takes none)."""
    assert kernel_code(MODELS["multiclass"], b"2 1 0.5 |a f1\n") == predictlines.BAD_LINE
    assert kernel_code(MODELS["logistic"], b"1 1 0.5 |a f1\n") == predictlines.OK


def test_a_bad_line_is_the_batch_way_s_error() -> None:
    model = MODELS["logistic"]
    assert kernel_code(model, b"|a f1:x\n") == predictlines.BAD_LINE
    with pytest.raises(RequestError):
        lines._score(model, np.frombuffer(b"|a f1:x\n", dtype=np.uint8), 1)


def test_an_index_past_the_weights_is_not_read() -> None:
    """``spec.index_limit`` bounds the indices the kernel reads the weights at: past it, the
    block goes the Batch way, whose ``Model`` check names the problem."""
    assert kernel_code(MODELS["logistic"], b"|a f1 f2 f3\n", limit=1) == predictlines.OUT_OF_RANGE
