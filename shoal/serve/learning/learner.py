"""The learner: the one thread that changes the live model.

It applies logged events in sequence order with ``Model.learn`` -- the update ``shoal train``
makes -- on batches parsed by the training parser, and between batches it runs the commands that
replace the model (rollback, load) and writes snapshots. Being the only writer is what lets
predictions read the weights without a lock: a prediction holds one ``Live`` (model and version)
and sees each weight either before or after an update, never a torn value (float32 stores are
atomic), and a swap replaces the whole ``Live`` at once.

Learning a batch equals learning its rows one by one, so where batches are cut (live, or in a
replay after a crash) does not change a bit of the result.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.data.batch import Batch
from shoal.errors import ShoalError, StepTooLarge
from shoal.model.model import Model, Progress
from shoal.serve.config import ServiceConfig
from shoal.serve.errors import StorageError, Unavailable
from shoal.serve.histogram import Histogram
from shoal.serve.reading.records import parse_lines
from shoal.serve.state.eventlog import EventLog
from shoal.serve.state.snapshots import SnapshotStore, Version

log = logging.getLogger("shoal.serve")
T = TypeVar("T")
_RETRY_SECONDS = 10.0
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, float("inf"))


@dataclass(frozen=True)
class Live:
    """The model that answers predictions, and the snapshot version it grew from."""

    model: Model
    version: int


class Learner:
    """``catch_up()`` (replay, in the caller's thread), ``start()``, then ``stop()`` to drain."""

    def __init__(
        self,
        live: Live,
        applied_seq: int,
        events: EventLog,
        store: SnapshotStore,
        config: ServiceConfig,
    ) -> None:
        self.live = live
        self.applied_seq = applied_seq
        self.snapshot_seq = applied_seq  # the applied seq of the newest snapshot
        self.progress = Progress()  # progressive validation over the events learned here
        self.events_learned = 0
        self.events_rejected = 0
        self.snapshots_written = 0
        self.delays = Histogram(DELAY_BUCKETS)  # seconds from logging to learning (see metrics)
        self.failure: BaseException | None = None
        self._events = events
        self._store = store
        self._config = config
        self._committed = events.last_seq
        self._since_snapshot = 0
        self._snapshot_time = time.monotonic()
        self._retry_at = 0.0
        self._cond = threading.Condition()
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._waiters: list[tuple[int, int, Future[None]]] = []
        self._tie = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Called in the learner thread after each learned batch and each new version, before
        # waiters hear of it: the multi-process server publishes the weights there (cluster/).
        self.on_change: Callable[[], None] = lambda: None

    # -- any thread ----------------------------------------------------------------------------

    def notify(self, committed_seq: int) -> None:
        """The event log committed events up to ``committed_seq``."""
        with self._cond:
            self._committed = max(self._committed, committed_seq)
            self._cond.notify()

    def wait_applied(self, seq: int) -> Future[None]:
        """Resolves once the event ``seq`` is in the live model."""
        fut: Future[None] = Future()
        with self._cond:
            if self.failure is not None:
                fut.set_exception(Unavailable(f"the learner stopped: {self.failure}"))
            elif seq <= self.applied_seq:
                fut.set_result(None)
            else:
                heapq.heappush(self._waiters, (seq, next(self._tie), fut))
        return fut

    def submit(self, command: Callable[[], T]) -> Future[T]:
        """Run ``command`` in the learner thread, after the events logged so far."""
        fut: Future[T] = Future()
        with self._cond:
            if self.failure is not None or self._stopping or self._thread is None:
                fut.set_exception(Unavailable("the learner is not running"))
            else:
                self._commands.append((command, fut))
                self._cond.notify()
        return fut

    def snapshot(self, reason: str = "manual") -> Future[Version]:
        return self.submit(lambda: self._write_snapshot(reason))

    def install(self, model: Model, reason: str, source: str) -> Future[Version]:
        """Make ``model`` a new version and swap it in (rollback, hot load)."""
        return self.submit(lambda: self._install(model, reason, source))

    def rollback(self, version: int) -> Future[Version]:
        """Make a kept version live again, as a new version (loaded here: no prune races it)."""
        return self.submit(
            lambda: self._install(self._store.load(version)[0], "rollback", f"v{version}")
        )

    @property
    def lag(self) -> int:
        return max(0, self._committed - self.applied_seq)

    # -- lifecycle -------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every logged event (the replay after a restart); returns how many."""
        return self._apply_available(replay=True)

    def accept_loss(self, seq: int) -> None:
        """After ``catch_up``, when events up to ``seq`` were lost and the loss accepted: new
        events are numbered after ``seq``, and a snapshot says the model holds what it will."""
        self._events.reserve(seq).result()
        with self._cond:
            self.applied_seq = max(self.applied_seq, seq)
            self._committed = max(self._committed, self.applied_seq)
        self._write_snapshot("recovered")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shoal-learner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Apply what is logged, write a snapshot if anything changed since the last, stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    # -- the learner thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._apply_available()
                while self._commands:
                    command, fut = self._commands.popleft()
                    try:
                        # every event acknowledged before the command was submitted goes first
                        self._apply_available()
                        fut.set_result(command())
                    except ShoalError as exc:  # a full disk too (StorageError): go on
                        fut.set_exception(exc)
                    except OSError as exc:  # a snapshot that cannot be read (rollback)
                        fut.set_exception(StorageError(f"{exc.strerror}: {exc.filename}"))
                    except BaseException as exc:
                        fut.set_exception(Unavailable(f"the learner stopped: {exc}"))
                        raise
                if self._snapshot_due():
                    self._periodic_snapshot()
                with self._cond:
                    idle = self._committed <= self.applied_seq and not self._commands
                    if idle and self._stopping:
                        break
                    if idle:
                        self._cond.wait(self._snapshot_timeout())
            if self.applied_seq != self.snapshot_seq:
                self._write_snapshot("shutdown")
        except BaseException as exc:  # a bug or a full disk: stop learning, say so everywhere
            log.exception("the learner stopped")
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self.failure = exc
            pending = [f for _, _, f in self._waiters] + [f for _, f in self._commands]
            self._waiters.clear()
            self._commands.clear()
        for fut in pending:
            fut.set_exception(Unavailable(f"the learner stopped: {exc}"))

    def _apply_available(self, replay: bool = False) -> int:
        n = 0
        while True:
            rows = self._events.read(self.applied_seq, self._config.learn_batch)
            if not rows:
                return n
            logged = self._events.logged_at(rows[0][0])
            self._learn([r for _, r in rows])
            if not replay:  # a replayed event was logged before this process started
                self.delays.observe(max(0.0, self._events.clock() - logged))
            n += len(rows)
            self.events_learned += len(rows)
            self._since_snapshot += len(rows)
            with self._cond:
                self.applied_seq = rows[-1][0]
                self._committed = max(self._committed, self.applied_seq)
                done = []
                while self._waiters and self._waiters[0][0] <= self.applied_seq:
                    done.append(heapq.heappop(self._waiters)[2])
            self.on_change()
            for fut in done:
                fut.set_result(None)
            if self._snapshot_due():
                self._periodic_snapshot()

    def _learn(self, records: list[str]) -> None:
        model = self.live.model
        try:
            batch = parse_lines(model.spec, records, "events")
            model.check_labels(batch)
        except ShoalError:  # records or labels this model cannot take (it was swapped)
            for record in records:  # one at a time, to leave out only those
                try:
                    one = parse_lines(model.spec, [record], "events")
                    model.check_labels(one)
                except ShoalError as exc:
                    self._reject(exc)
                else:
                    self._learn_rows(one)
            return
        self._learn_rows(batch)

    def _learn_rows(self, batch: Batch) -> None:
        """Learn the rows in order, leaving out any whose step would be too large (learn()
        stops before such a row, having learned those above it): a model never turns
        infinite, and replaying the log leaves out the same events."""
        while len(batch):
            try:
                self.live.model.learn(batch, progress=self.progress)
                return
            except StepTooLarge as exc:
                self._reject(exc)
                batch = batch.slice(exc.row + 1, len(batch))

    def _reject(self, exc: ShoalError) -> None:
        self.events_rejected += 1
        log.warning("event not learned: %s", exc)

    def _periodic_snapshot(self) -> None:
        try:
            self._write_snapshot("periodic")
        except (ShoalError, OSError) as exc:  # a full disk: keep learning, retry later
            log.error("snapshot failed (retrying in %.0f s): %s", _RETRY_SECONDS, exc)
            self._retry_at = time.monotonic() + _RETRY_SECONDS

    def _snapshot_due(self) -> bool:
        if self._since_snapshot == 0 or time.monotonic() < self._retry_at:
            return False
        age = time.monotonic() - self._snapshot_time
        return (
            self._since_snapshot >= self._config.snapshot_every_events
            or age >= self._config.snapshot_every_seconds
        )

    def _snapshot_timeout(self) -> float | None:
        if self._since_snapshot == 0:
            return None
        due = max(self._snapshot_time + self._config.snapshot_every_seconds, self._retry_at)
        return max(0.0, due - time.monotonic())

    def _written(self, version: Version) -> Version:
        self.snapshot_seq = version.applied_seq
        self._since_snapshot = 0
        self._snapshot_time = time.monotonic()
        self.snapshots_written += 1
        kept = self._store.versions()
        if kept:
            self._events.prune(min(v.applied_seq for v in kept))
        return version

    def _write_snapshot(self, reason: str) -> Version:
        live = self.live
        v = self._store.write(live.model, applied_seq=self.applied_seq, reason=reason)
        self.live = Live(live.model, v.version)
        self.on_change()
        return self._written(v)

    def _install(self, model: Model, reason: str, source: str) -> Version:
        v = self._store.write(model, applied_seq=self.applied_seq, reason=reason, source=source)
        self.live = Live(model, v.version)  # one reference: predictions see old or new, whole
        self.on_change()
        return self._written(v)
