"""A training task: learn one shard from the round's global model, return what changed.

This is what a worker runs, wherever it runs (a local process, a Ray actor). It is a pure
function of the global model and the shard, so a retried or duplicated task returns exactly
the same result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from shoal.data.cache import CachedReader, CacheStats, new_session
from shoal.data.formats import BadRecordPolicy, Format
from shoal.data.reader import ReadStats, TextReader
from shoal.errors import DataError
from shoal.model.kernels import N_STATS
from shoal.model.model import Model, Progress
from shoal.train.plan import Shard


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What every task of a run shares: how to read (``cache``: the binary cache's directory,
    where each shard is cached by the worker that first reads it), and the holdout.

    ``score`` makes the tasks of a step judge the step's model, the model of a finished pass:
    they score the shard's held-out rows and learn nothing (early stopping).
    """

    format: Format | None = None
    on_bad_record: BadRecordPolicy = "stop"
    holdout_period: int = 0
    block_bytes: int = 4 << 20
    parse_threads: int = 1  # parse ahead of the learner; the result does not depend on it
    cache: str | None = None
    cache_session: str = field(default_factory=new_session)  # one per run: files checked once
    score: bool = False


@dataclass(frozen=True)
class Task:
    """Learn ``shard`` from the model of ``step`` (a round counter over the whole run)."""

    step: int
    shard: Shard
    spec: TaskSpec


@dataclass
class TaskResult:
    """The sparse change a task made: slots that changed and their new values."""

    shard: int
    step: int
    changed: np.ndarray  # int64 slots (indices into the flat weight array)
    weights: np.ndarray  # float32 new values at ``changed``
    state: dict[str, np.ndarray]  # optimizer state: new values at ``changed``
    counters: np.ndarray  # float64: the task's increments of the model's counters
    stats: np.ndarray = field(default_factory=lambda: np.zeros(N_STATS))
    rows: int = 0
    bytes_read: int = 0
    skipped: int = 0
    first_skipped: str = ""
    cache: CacheStats | None = None


def _shifted(exc: DataError, lines: int) -> DataError:
    """``exc`` (or its subclass) with its line number moved ``lines`` further."""
    cls, args = exc.__reduce__()[:2]
    return cls(args[0], args[1] + lines, *args[2:])


def _shift_message(text: str, shard: Shard) -> str:
    """A skipped record's "line N of PATH: ..." with N made the file's line."""
    m = re.match(r"line (\d+) (.*)", text, re.S)
    return f"line {int(m[1]) + shard.lines_before()} {m[2]}" if m else text


def run_task(task: Task, base: Model) -> TaskResult:
    """Learn ``task.shard`` on a copy of ``base``; return the sparse difference (with
    ``task.spec.score``: none, and the loss of ``base`` on the held-out rows in ``stats``)."""
    model = base if task.spec.score else base.copy()
    text = TextReader(
        spec=model.spec,
        format=task.spec.format,
        on_bad_record=task.spec.on_bad_record,
        block_bytes=task.spec.block_bytes,
        threads=task.spec.parse_threads,
    )
    cache = task.spec.cache
    reader = (
        text
        if cache is None
        else CachedReader(reader=text, directory=cache, session=task.spec.cache_session)
    )
    stats = ReadStats()
    prog = Progress()
    s = task.shard
    # lines not counted by the plan: numbered from the range's start, made true on an error
    first = 0 if s.first_line is None else s.first_line
    try:
        period = task.spec.holdout_period
        for batch in reader.read(s.path, stats, start=s.start, end=s.end, first_line=first):
            if task.spec.score:
                model.score_holdout(batch, period, prog)
            else:
                model.learn(batch, holdout_period=period, progress=prog)
    except DataError as exc:
        if s.first_line is not None or exc.path != s.path:
            raise
        raise _shifted(exc, s.lines_before()) from None
    if stats.first_skipped and s.first_line is None:
        stats.first_skipped = _shift_message(stats.first_skipped, s)
    mask = model.weights != base.weights
    for k, v in model.state.items():
        mask |= v != base.state[k]
    changed = np.flatnonzero(mask)
    return TaskResult(
        shard=s.index,
        step=task.step,
        changed=changed,
        weights=model.weights[changed],
        state={k: v[changed] for k, v in model.state.items()},
        counters=model.counters - base.counters,
        stats=prog.stats,
        rows=stats.rows,
        bytes_read=stats.bytes_read,
        skipped=stats.skipped,
        first_skipped=stats.first_skipped,
        cache=reader.stats if isinstance(reader, CachedReader) else None,
    )
