"""The coordinator of data-parallel training: rounds of tasks, merging, failures, checkpoints.

A pass over the data is cut into rounds of ``tasks_per_round`` shards. In a round every task
learns its shard from the same global model; the coordinator merges the results in shard
order into the next global model and checkpoints it. The final model is therefore a function
of the data, the configuration and the plan alone: which worker ran a task, how often it was
retried, whether a straggler was duplicated and whether the coordinator restarted from a
checkpoint do not change a bit.

Failures are expected: an attempt that fails or whose worker dies is retried on another
worker (up to ``max_attempts``); an attempt running much longer than its finished peers gets a
duplicate on an idle worker and the first result wins; every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

from shoal.errors import ConfigError, ModelFileError, ShoalError
from shoal.model.model import Model, Progress
from shoal.model.modelfile import ModelData, from_bytes, write_atomic
from shoal.train.executor import Executor
from shoal.train.merge import merge
from shoal.train.plan import Shard, fingerprint, plan
from shoal.train.single import EarlyStop, TrainOptions, TrainReport
from shoal.train.task import Task, TaskResult, TaskSpec

Engine = Literal["local", "ray"]
CHECKPOINT = "checkpoint.shoal"
BEST = "best-pass-{}.shoal"  # beside the checkpoint: the best pass's model so far (early stopping)


class TaskFailedError(ShoalError):
    """A task failed on every attempt."""

    def __init__(self, shard: str, attempts: int, cause: str) -> None:
        super().__init__(f"{shard} failed {attempts} time(s); last error: {cause}")
        self.shard, self.attempts, self.cause = shard, attempts, cause

    def __reduce__(self):
        return (type(self), (self.shard, self.attempts, self.cause))


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    """How to spread training: workers, engine, shards, rounds, fault handling, checkpoints."""

    workers: int = 2
    engine: Engine = "local"
    address: str | None = None
    shards: int = 0  # 0: 4 per worker
    tasks_per_round: int = 0  # 0: one per worker
    max_attempts: int = 4
    task_timeout: float = 3600.0
    straggler_factor: float = 4.0
    straggler_min_seconds: float = 5.0
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError("workers", f"must be an integer >= 1, got {self.workers!r}")
        if self.engine not in ("local", "ray"):
            raise ConfigError("engine", f"must be local or ray, got {self.engine!r}")
        for name in ("shards", "tasks_per_round"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(name, f"must be an integer >= 0, got {v!r}")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts", "must be at least 1")
        for name in ("task_timeout", "straggler_factor", "straggler_min_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, "must be positive")

    @property
    def n_shards(self) -> int:
        return self.shards or 4 * self.workers

    @property
    def round_size(self) -> int:
        return self.tasks_per_round or self.workers

    @property
    def worker_threads(self) -> int:
        """Parser threads of a worker when the options leave it open: the cores per local
        worker (a Ray actor holds one CPU)."""
        return max(1, (os.cpu_count() or 1) // self.workers) if self.engine == "local" else 1


@dataclass
class ClusterReport(TrainReport):
    """A training report plus what the cluster went through."""

    rounds: int = 0
    retries: int = 0
    duplicates: int = 0
    worker_deaths: int = 0
    resumed_from_step: int = 0
    resumed_examples: int = 0  # learned before the restart, in the checkpoint
    workers: int = 0

    @property
    def examples_per_second(self) -> float:
        """This run's speed: the examples of the rounds it ran, over its time."""
        run = self.examples - self.resumed_examples
        return run / self.seconds if self.seconds > 0 else math.nan


@dataclass
class RoundStatus:
    """Progress handed to the callback after every round."""

    step: int
    steps: int
    pass_index: int
    examples: int
    workers_alive: int
    retries: int
    progress: Progress = field(default_factory=Progress)


@dataclass
class _Attempt:
    shard: Shard
    started: float


def _run_key(model: Model, opts: TrainOptions, cluster: ClusterOptions, data: str) -> str:
    """What a checkpoint must match to be resumed: model, data and the plan of the run."""
    doc = {
        "spec": model.spec.to_dict(),
        "config": model.config.to_dict(),
        "initial": hashlib.sha256(model.to_bytes()).hexdigest(),
        "data": data,
        "passes": opts.passes,
        "holdout": opts.holdout,
        "format": opts.format,
        "on_bad_record": opts.on_bad_record,
        "shards": cluster.n_shards,
        "round": cluster.round_size,
        "early_stop": opts.patience if opts.stops_early else 0,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def make_executor(cluster: ClusterOptions) -> Executor:
    if cluster.engine == "ray":
        from shoal.train.ray_executor import RayExecutor

        return RayExecutor(cluster.workers, cluster.address)
    from shoal.train.local import LocalExecutor

    return LocalExecutor(cluster.workers)


class Coordinator:
    """Runs data-parallel training of one model over a list of inputs.

    ``on_round(status)`` is called after every merged round.
    """

    def __init__(
        self,
        model: Model,
        inputs: Sequence[str | os.PathLike[str]],
        options: TrainOptions,
        cluster: ClusterOptions,
        executor: Executor | None = None,
        on_round: Callable[[RoundStatus], None] | None = None,
    ) -> None:
        self.model = model
        self.inputs = list(inputs)
        self.options = options
        self.cluster = cluster
        self.executor = executor or make_executor(cluster)
        self.on_round = on_round
        self.report = ClusterReport(workers=cluster.workers)
        self.early = EarlyStop(options.patience) if options.stops_early else None
        self.held = Progress()  # the last pass's model on the held-out rows (early stopping)
        self.shards: list[Shard] = []  # planned by run()
        self._key = ""
        self._next_attempt = 0

    # -- checkpoints ----------------------------------------------------------------------

    def _checkpoint_path(self) -> Path | None:
        d = self.cluster.checkpoint_dir
        return Path(d) / CHECKPOINT if d else None

    def _resume(self) -> int:
        """Load the last checkpoint of this very run, if any; return the step to start at."""
        path = self._checkpoint_path()
        if path is None or not path.exists():
            return 0
        data = self._load(path)
        self.model = Model.from_data(data)
        self.report.examples = int(data.extra.get("examples", "0"))
        self.report.resumed_examples = self.report.examples
        if self.early is not None:  # the passes judged so far, and the best one's model
            losses = json.loads(data.extra.get("holdout_losses", "[]"))
            self.early = EarlyStop.replay(self.options.patience, [float.fromhex(x) for x in losses])
            if self.early.best_pass >= 0:
                best = self._load(path.parent / BEST.format(self.early.best_pass))
                self.early.best_model = Model.from_data(best)
        return int(data.extra["step"])

    def _load(self, path: Path) -> ModelData:
        """A checkpoint's file, which must be this very run's."""
        try:
            data = from_bytes(path.read_bytes(), str(path))
        except (ModelFileError, OSError) as exc:
            raise ShoalError(f"cannot resume: {exc}") from None
        if data.extra.get("run") != self._key:
            raise ShoalError(
                f"checkpoint {path} belongs to another run (different data, model settings or "
                "plan); use another --checkpoint-dir or delete it to start over"
            )
        return data

    def _checkpoint(self, step: int) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"run": self._key, "step": str(step), "examples": str(self.report.examples)}
        if self.early is not None:  # floats in hex: a resumed run replays the same decisions
            extra["holdout_losses"] = json.dumps([x.hex() for x in self.early.losses])
        write_atomic(path, self.model.to_bytes(extra))
        if self.early is not None:  # the best model of another pass: no checkpoint needs it now
            for old in path.parent.glob(BEST.format("*")):
                if old.name != BEST.format(self.early.best_pass):
                    old.unlink(missing_ok=True)

    def _keep_best(self, pass_index: int) -> None:
        """Write the model of ``pass_index``, the best so far, before a checkpoint names it."""
        path = self._checkpoint_path()
        if path is not None:
            write_atomic(
                path.parent / BEST.format(pass_index), self.model.to_bytes({"run": self._key})
            )

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> tuple[Model, ClusterReport]:
        """Plan the data, resume from a checkpoint if any, and train round after round."""
        self.executor.launch()  # workers start on the other cores while the data is planned
        try:
            self.shards = plan(self.inputs, self.cluster.n_shards)
            self._key = _run_key(self.model, self.options, self.cluster, fingerprint(self.shards))
            return self._run()
        finally:
            self.executor.close()

    def _run(self) -> tuple[Model, ClusterReport]:
        rounds = [
            self.shards[i : i + self.cluster.round_size]
            for i in range(0, len(self.shards), self.cluster.round_size)
        ]
        # with early stopping every pass ends with one more step: each shard's held-out rows
        # score the pass's model (the tasks of that step learn nothing)
        per_pass = len(rounds) + (self.early is not None)
        steps = per_pass * self.options.passes
        step = self._resume()
        self.report.resumed_from_step = step
        spec = TaskSpec(
            format=self.options.format,
            on_bad_record=self.options.on_bad_record,
            holdout_period=self.options.holdout_period,
            block_bytes=self.options.block_bytes,
            parse_threads=self.options.parse_threads or self.cluster.worker_threads,
            cache=None if self.options.cache is None else str(self.options.cache),
        )
        pass_progress = Progress()
        if step >= steps:  # a finished run's checkpoint: nothing left to do
            return self._finish(per_pass, pass_progress)
        self.executor.start()
        start = time.perf_counter()  # the report's time leaves out starting the workers
        while step < steps:
            pass_index, r = divmod(step, per_pass)
            if r == 0:
                pass_progress = Progress()
            if r < len(rounds):
                self._learn(step, rounds[r], spec, pass_progress)
                step += 1
            else:  # the pass is over: its model is judged
                over = self._judge(step, pass_index, replace(spec, score=True))
                step = steps if over else step + 1
            self._checkpoint(step)
            if r == len(rounds) - 1:
                self.report.pass_losses.append(pass_progress.loss)
            if self.on_round is not None:
                self.on_round(
                    RoundStatus(step, steps, pass_index, self.report.examples,
                                self.executor.alive(), self.report.retries, pass_progress)
                )  # fmt: skip
        self.executor.close()  # stopped before the clock: the report's time includes it
        self.report.seconds = time.perf_counter() - start
        return self._finish(per_pass, pass_progress)

    def _learn(self, step: int, shards: list[Shard], spec: TaskSpec, progress: Progress) -> None:
        """One round: its tasks learn their shards, merged into the next global model."""
        results = self._round(step, shards, spec)
        self.model = merge(self.model, results)
        for res in results:
            progress.stats += res.stats
            self.report.bytes_read += res.bytes_read
            self.report.skipped += res.skipped
            self.report.first_skipped = self.report.first_skipped or res.first_skipped
            self.report.add_cache(res.cache)
        self.report.examples += sum(int(res.counters[1]) for res in results)

    def _judge(self, step: int, pass_index: int, spec: TaskSpec) -> bool:
        """Score the pass's model on the held-out rows of every shard, and let early stopping
        judge it (as in one process); True when training is over, the model the best pass's.

        The shards' losses are added up in shard order, so the sum, hence the decision, is the
        same bits whoever ran which task and whenever its result came."""
        assert self.early is not None
        self.held = Progress()
        for res in self._round(step, self.shards, spec):
            self.held.stats += res.stats
            self.report.add_cache(res.cache)
        model = self.model
        stop = self.early.after_pass(pass_index, self.held.holdout_loss, lambda: model)
        if self.early.best_pass == pass_index:
            self._keep_best(pass_index)
        if not stop and pass_index < self.options.passes - 1:
            return False
        if self.early.best_model is not None:
            self.model = cast(Model, self.early.best_model)
        return True

    def _finish(self, per_pass: int, pass_progress: Progress) -> tuple[Model, ClusterReport]:
        self.report.passes = self.options.passes
        self.report.progressive_loss = (
            self.report.pass_losses[0] if self.report.pass_losses else math.nan
        )
        self.report.holdout_loss = pass_progress.holdout_loss
        self.report.holdout_examples = pass_progress.holdout_examples
        if self.early is not None:  # the passes run, each judged; the best pass's loss
            self.report.passes = len(self.early.losses)
            self.report.holdout_examples = self.held.holdout_examples
            self.early.report(self.report)
        self.report.rounds = per_pass * self.report.passes
        # a run that stopped early checkpointed the end of the plan: its last step is this one
        self.report.resumed_from_step = min(self.report.resumed_from_step, self.report.rounds)
        return self.model, self.report

    def _round(self, step: int, shards: list[Shard], spec: TaskSpec) -> list[TaskResult]:
        """Run one task per shard to completion; retry, duplicate and time out as needed."""
        ex = self.executor
        ex.broadcast(step, self.model.to_bytes())
        queue: list[Shard] = list(shards)
        failures: dict[int, int] = {s.index: 0 for s in shards}
        last_error: dict[int, str] = {}
        running: dict[int, _Attempt] = {}
        done: dict[int, TaskResult] = {}
        durations: list[float] = []
        starved_since: float | None = None  # queued work, nothing running, no idle worker
        while len(done) < len(shards):
            now = time.monotonic()
            while queue and ex.idle() > 0:
                self._submit(step, queue.pop(0), spec, running)
            if queue and not running:
                starved_since = starved_since or now
                if now - starved_since > self.cluster.task_timeout:
                    raise ShoalError(
                        f"no worker could take a task for {self.cluster.task_timeout:g} s "
                        f"({ex.alive()} alive); workers fail to start?"
                    )
            else:
                starved_since = None
            self._duplicate_stragglers(step, spec, running, done, durations, now)
            for attempt, a in list(running.items()):
                if now - a.started > self.cluster.task_timeout:
                    ex.cancel(attempt)
                    del running[attempt]
                    self._failed(a.shard, "no result within --task-timeout", queue, failures,
                                 last_error, running, done)  # fmt: skip
            for ev in ex.poll(timeout=0.05):
                a_or_none = running.pop(ev.attempt, None)
                if a_or_none is None:
                    continue  # a cancelled attempt
                a = a_or_none
                if ev.kind == "done" and ev.result is not None:
                    if a.shard.index not in done:
                        done[a.shard.index] = ev.result
                        durations.append(time.monotonic() - a.started)
                    for other, b in list(running.items()):  # the first result wins
                        if b.shard.index == a.shard.index:
                            ex.cancel(other)
                            del running[other]
                    continue
                if ev.kind == "died":
                    self.report.worker_deaths += 1
                if ev.fatal:
                    raise TaskFailedError(a.shard.describe(), failures[a.shard.index] + 1, ev.error)
                self._failed(a.shard, ev.error, queue, failures, last_error, running, done)
        for attempt in list(running):
            ex.cancel(attempt)
        return [done[s.index] for s in shards]

    def _submit(self, step: int, shard: Shard, spec: TaskSpec, running: dict) -> None:
        attempt = self._next_attempt
        self._next_attempt += 1
        self.executor.submit(attempt, Task(step, shard, spec))
        running[attempt] = _Attempt(shard, time.monotonic())

    def _failed(self, shard: Shard, error: str, queue: list[Shard], failures: dict[int, int],
                last_error: dict[int, str], running: dict, done: dict) -> None:  # fmt: skip
        if shard.index in done or any(a.shard.index == shard.index for a in running.values()):
            return  # another attempt of it is still running, or it already finished
        failures[shard.index] += 1
        last_error[shard.index] = error
        if failures[shard.index] >= self.cluster.max_attempts:
            raise TaskFailedError(shard.describe(), failures[shard.index], error)
        self.report.retries += 1
        queue.insert(0, shard)

    def _duplicate_stragglers(self, step: int, spec: TaskSpec, running: dict, done: dict,
                              durations: list[float], now: float) -> None:  # fmt: skip
        if not durations or self.executor.idle() == 0:
            return
        limit = max(self.cluster.straggler_min_seconds,
                    self.cluster.straggler_factor * statistics.median(durations))  # fmt: skip
        counts: dict[int, int] = {}
        for a in running.values():
            counts[a.shard.index] = counts.get(a.shard.index, 0) + 1
        for a in list(running.values()):
            if self.executor.idle() == 0:
                return
            if counts[a.shard.index] == 1 and a.shard.index not in done and now - a.started > limit:
                self._submit(step, a.shard, spec, running)
                counts[a.shard.index] = 2
                self.report.duplicates += 1


def train_cluster(
    model: Model,
    inputs: Sequence[str | os.PathLike[str]],
    options: TrainOptions | None = None,
    cluster: ClusterOptions | None = None,
    on_round: Callable[[RoundStatus], None] | None = None,
) -> tuple[Model, ClusterReport]:
    """Data-parallel training; returns the trained model (a new object) and a report."""
    coord = Coordinator(model, inputs, options or TrainOptions(), cluster or ClusterOptions(),
                        on_round=on_round)  # fmt: skip
    return coord.run()
