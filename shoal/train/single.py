"""Training in one process: stream the files, learn online, pass after pass.

This is the unit of work that the distributed coordinator hands to its workers, and what
``shoal train`` runs when one process is enough.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from shoal.data.formats import BadRecordPolicy, Format
from shoal.errors import ConfigError, ShoalError

if TYPE_CHECKING:  # imported by train(): `import shoal` does not load numba
    from shoal.data.cache import CacheStats
    from shoal.data.reader import ReadStats
    from shoal.model.model import Model, Progress

    ProgressCallback = Callable[[int, Progress, ReadStats], None]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How to stream the data: format, passes, holdout share, early stopping, bad records,
    cache.

    ``cache`` is a directory for the binary cache (``shoal.data.cache``): the first pass
    writes the hashed batches of each input there, and later passes and runs read them instead
    of the text (the model is the same, to the bit).

    ``holdout`` None (the default) holds out one example in 10 when ``passes`` > 1, as VW does,
    and none in one pass. With a holdout and several passes, each pass's model is scored on the
    held-out examples (never learned), training stops once ``early_stop`` passes in a row have
    not improved on the best (VW's ``--early_terminate``, 3 by default), and the model is the
    best pass's: several passes never end worse on the held-out examples than one.
    ``early_stop`` 0 never stops early and keeps the last pass (the holdout loss is then
    progressive, measured during the last pass); None (the default) is 3.
    """

    format: Format | None = None
    passes: int = 1
    holdout: float | None = None
    early_stop: int | None = None
    on_bad_record: BadRecordPolicy = "stop"
    block_bytes: int = 4 << 20
    parse_threads: int = 0  # 0: one per core (a distributed run: the cores per worker)
    cache: str | os.PathLike[str] | None = None

    @property
    def threads(self) -> int:
        """Parser threads: they run ahead of the learner, which takes the batches in order."""
        return self.parse_threads or os.cpu_count() or 1

    def __post_init__(self) -> None:
        if not isinstance(self.passes, int) or self.passes < 1:
            raise ConfigError("passes", f"must be an integer >= 1, got {self.passes!r}")
        if not isinstance(self.parse_threads, int) or self.parse_threads < 0:
            raise ConfigError("parse_threads", f"must be >= 0, got {self.parse_threads!r}")
        if self.holdout is not None and not (
            isinstance(self.holdout, int | float) and 0.0 <= self.holdout < 1.0
        ):
            raise ConfigError("holdout", f"must be a fraction in [0, 1), got {self.holdout!r}")
        if self.cache is not None and not str(self.cache):
            raise ConfigError("cache", "must name a directory (or be None: no cache)")
        if self.early_stop is not None and (
            not isinstance(self.early_stop, int) or self.early_stop < 0
        ):
            raise ConfigError("early_stop", f"must be an integer >= 0, got {self.early_stop!r}")

    @property
    def holdout_fraction(self) -> float:
        """The share held out: ``holdout``, or 1/10 with several passes and none with one."""
        if self.holdout is not None:
            return float(self.holdout)
        return 0.1 if self.passes > 1 else 0.0

    @property
    def holdout_period(self) -> int:
        """One example in ``holdout_period`` is held out (0: none), chosen by a hash of the
        row: the same rows in every pass and on every shard."""
        h = self.holdout_fraction
        return 0 if h == 0 else max(2, round(1.0 / h))

    @property
    def stops_early(self) -> bool:
        """Whether passes are judged on the holdout (several passes, a holdout, early_stop)."""
        return self.passes > 1 and self.holdout_period > 0 and self.patience > 0

    @property
    def patience(self) -> int:
        """Passes without a better holdout loss before training stops (0: never)."""
        return 3 if self.early_stop is None else self.early_stop


class EarlyStop:
    """The best pass so far by holdout loss, and whether to stop (VW's ``--early_terminate``).

    >>> e = EarlyStop(patience=2)
    >>> losses = [0.5, 0.4, 0.45, 0.41]
    >>> [e.after_pass(i, loss, copy=lambda i=i: str(i)) for i, loss in enumerate(losses)]
    [False, False, False, True]
    >>> e.best_pass, e.best_model
    (1, '1')
    >>> again = EarlyStop.replay(2, losses[:3])  # a resumed run: the same decision follows
    >>> again.after_pass(3, losses[3], copy=lambda: '3'), again.best_pass
    (True, 1)
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = math.inf
        self.best_pass = -1
        self.best_model: object = None
        self.no_win = 0
        self.losses: list[float] = []  # of every pass judged, in order

    @classmethod
    def replay(cls, patience: int, losses: Sequence[float]) -> EarlyStop:
        """The state after judging passes with ``losses`` (those a checkpoint recorded), less
        the best model, which the caller restores: a resumed run decides as the first would."""
        early = cls(patience)
        for pass_index, loss in enumerate(losses):
            early.after_pass(pass_index, loss, copy=lambda: None)
        return early

    def after_pass(self, pass_index: int, holdout_loss: float, copy: Callable[[], object]) -> bool:
        """Record a pass (``copy()`` makes a copy of its model, called for a new best); True when
        training should stop. A NaN loss (no row was held out) decides nothing."""
        self.losses.append(holdout_loss)
        if math.isnan(holdout_loss):
            return False
        if holdout_loss < self.best_loss:
            self.best_loss, self.best_pass, self.best_model = holdout_loss, pass_index, copy()
            self.no_win = 0
            return False
        self.no_win += 1
        return self.no_win >= self.patience

    def report(self, report: TrainReport) -> None:
        """Put the passes' holdout losses, the best pass and its loss in ``report``."""
        report.holdout_losses = self.losses
        if self.best_pass >= 0:
            report.best_pass, report.holdout_loss = self.best_pass, self.best_loss


@dataclass
class TrainReport:
    """What a training run did."""

    examples: int = 0
    passes: int = 0
    seconds: float = 0.0
    bytes_read: int = 0
    progressive_loss: float = math.nan
    holdout_loss: float = math.nan
    holdout_examples: int = 0
    skipped: int = 0
    first_skipped: str = ""
    pass_losses: list[float] = field(default_factory=list)
    cache: CacheStats | None = None  # with a cache: its files, what was written and read
    holdout_losses: list[float] = field(default_factory=list)  # of each pass's model (early stop)
    best_pass: int = -1  # 0-based; -1 when passes were not judged on a holdout

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else math.nan

    def add_cache(self, stats: CacheStats | None) -> None:
        """Count what a reader (or a task) did with the cache."""
        if stats is not None:
            if self.cache is None:
                from shoal.data.cache import CacheStats

                self.cache = CacheStats()
            self.cache.merge(stats)


def _keep(model: Model) -> Callable[[], Model]:
    """``EarlyStop``'s copy of a model that is already a copy."""
    return lambda: model


def train(
    model: Model,
    paths: Sequence[str | os.PathLike[str]],
    options: TrainOptions | None = None,
    on_batch: ProgressCallback | None = None,
) -> TrainReport:
    """Learn ``model`` (in place) from ``paths`` for ``options.passes`` passes.

    ``on_batch(pass_index, progress, read_stats)`` is called after every batch.
    """
    from shoal.data.cache import CachedReader
    from shoal.data.reader import ReadStats, TextReader
    from shoal.model.model import Progress

    opts = options or TrainOptions()
    if not paths:
        raise ShoalError("no input files given")
    text = TextReader(
        spec=model.spec,
        format=opts.format,
        on_bad_record=opts.on_bad_record,
        block_bytes=opts.block_bytes,
        threads=opts.threads,
    )
    reader = text if opts.cache is None else CachedReader(reader=text, directory=opts.cache)
    report = TrainReport()
    start = time.perf_counter()
    total = Progress()
    try:
        early = EarlyStop(opts.patience) if opts.stops_early else None
        # With early stopping, the held-out rows of pass k are scored by ``frozen``, the model as
        # pass k-1 left it: each pass's own model is judged on rows it never learned, not the
        # models on the way (progressive holdout loss, VW's, favours pass 1 on sorted data).
        frozen = model.copy() if early is not None else None
        period = opts.holdout_period
        stopped = False
        for pass_index in range(opts.passes):
            stats = ReadStats()
            prog = Progress()
            for batch in reader.read_all(paths, stats):
                model.learn(batch, holdout_period=period, progress=prog, holdout_model=frozen)
                if on_batch is not None:
                    on_batch(pass_index, prog, stats)
            total.stats += prog.stats
            report.pass_losses.append(prog.loss)
            report.bytes_read += stats.bytes_read
            if pass_index == 0:
                report.skipped, report.first_skipped = stats.skipped, stats.first_skipped
            report.passes = pass_index + 1
            report.holdout_loss = prog.holdout_loss
            report.holdout_examples = prog.holdout_examples
            if early is not None and frozen is not None:
                before = frozen
                frozen = model.copy()
                # this pass scored the previous pass's model
                if pass_index > 0 and early.after_pass(
                    pass_index - 1, prog.holdout_loss, _keep(before)
                ):
                    stopped = True
                    break
        if early is not None and not stopped:  # the last pass's model: one more read, scoring it
            last = Progress()
            for batch in reader.read_all(paths, ReadStats()):
                model.score_holdout(batch, period, last)
            early.after_pass(report.passes - 1, last.holdout_loss, model.copy)
        if early is not None:
            early.report(report)
            if early.best_model is not None:
                best = cast("Model", early.best_model)
                model.weights, model.state, model.counters = best.weights, best.state, best.counters
    finally:
        if isinstance(reader, CachedReader):
            reader.close()  # its files stay mapped only while the run uses them
    report.seconds = time.perf_counter() - start
    report.examples = total.examples
    report.progressive_loss = report.pass_losses[0]
    if isinstance(reader, CachedReader):
        report.add_cache(reader.stats)
    return report
