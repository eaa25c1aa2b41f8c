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
from typing import TYPE_CHECKING

from shoal.data.formats import BadRecordPolicy, Format
from shoal.errors import ConfigError, ShoalError

if TYPE_CHECKING:  # imported by train(): `import shoal` does not load numba
    from shoal.data.cache import CacheStats
    from shoal.data.reader import ReadStats
    from shoal.model.model import Model, Progress

    ProgressCallback = Callable[[int, Progress, ReadStats], None]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How to stream the data: format, passes, holdout share, bad-record policy, cache.

    ``cache`` is a directory for the binary cache (``shoal.data.cache``): the first pass
    writes the hashed batches of each input there, and later passes and runs read them instead
    of the text (the model is the same, to the bit).
    """

    format: Format | None = None
    passes: int = 1
    holdout: float = 0.0
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
        if not (isinstance(self.holdout, int | float) and 0.0 <= self.holdout < 1.0):
            raise ConfigError("holdout", f"must be a fraction in [0, 1), got {self.holdout!r}")
        if self.cache is not None and not str(self.cache):
            raise ConfigError("cache", "must name a directory (or be None: no cache)")

    @property
    def holdout_period(self) -> int:
        """One example in ``holdout_period`` is held out (0: none)."""
        return 0 if self.holdout == 0 else max(2, round(1.0 / self.holdout))


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
        for pass_index in range(opts.passes):
            stats = ReadStats()
            prog = Progress()
            batches = reader.read_all(paths, stats)
            for batch in batches:
                model.learn(batch, holdout_period=opts.holdout_period, progress=prog)
                if on_batch is not None:
                    on_batch(pass_index, prog, stats)
            total.stats += prog.stats
            report.pass_losses.append(prog.loss)
            report.bytes_read += stats.bytes_read
            if pass_index == 0:
                report.skipped, report.first_skipped = stats.skipped, stats.first_skipped
    finally:
        if isinstance(reader, CachedReader):
            reader.close()  # its files stay mapped only while the run uses them
    report.seconds = time.perf_counter() - start
    report.passes = opts.passes
    report.examples = total.examples
    report.progressive_loss = report.pass_losses[0]
    report.holdout_loss = prog.holdout_loss  # measured after the last pass's updates
    report.holdout_examples = prog.holdout_examples
    if isinstance(reader, CachedReader):
        report.add_cache(reader.stats)
    return report
