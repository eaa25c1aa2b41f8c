"""``ModelService``: one served model -- its live weights, event log, learner and versions.

The service knows nothing of HTTP: the JSON app calls it, and so will the Open Inference
Protocol routes, the TCP line server and a dynamic batcher. Its methods take records as clients
send them (VW lines or JSON objects) and raise ``ShoalError``s that say what is wrong.

Lifecycle: ``start()`` locks the state directory, restores the newest snapshot, replays the
event log after it and starts the writer and learner threads; ``close()`` refuses new work,
commits what is queued, lets the learner drain, writes a snapshot and releases the directory.

>>> import tempfile, pathlib
>>> from shoal import FeatureSpec, Model
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> Model(FeatureSpec(bits=8)).save(d / "m.shoal")
>>> with ModelService(ServiceConfig(model_path=str(d / "m.shoal"), state_dir=str(d / "s"))) as s:
...     seqs = s.learn(["1 | a b", "-1 | c"]).result()
...     s.wait_applied(seqs[-1]).result()
...     s.info()["applied_seq"], len(s.predict([{"a": 1}]).values)
(2, 1)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from shoal.data.batch import Batch
from shoal.errors import ConfigError
from shoal.model.model import Model
from shoal.serve.config import ServiceConfig
from shoal.serve.errors import FeaturesDropped, RequestError, StateDirError, Unavailable
from shoal.serve.histogram import Histogram
from shoal.serve.learning.batcher import Batcher
from shoal.serve.learning.learner import Learner, Live
from shoal.serve.reading.records import number_text, weight_text
from shoal.serve.reading.scoring import (
    Predicting,
    Prediction,
    Request,
    Scored,
    check_labels,
    kept_features,
    learn_lines,
    score,
    warm_up,
)
from shoal.serve.state.eventlog import EventLog
from shoal.serve.state.kept import DROPPED
from shoal.serve.state.models import read_model_file
from shoal.serve.state.recovery import check_log
from shoal.serve.state.seqmark import SeqMark
from shoal.serve.state.snapshots import SnapshotStore, Version
from shoal.serve.state.statedir import StateDir

_DROPPED_IDS = 100_000  # ids of front ends' predictions whose features were dropped, kept


class ModelService(Predicting):
    """One served model; thread-safe: any number of callers, one learner thread writing."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        clock: Callable[[], float] = time.time,
        prepare: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.name = config.served_name
        self._clock = clock  # wall time: event ids and feedback expiry (tests inject one)
        self._prepare = prepare  # runs once the state directory is locked (serve --new)
        self._state = StateDir(config.state_dir)
        self._store = SnapshotStore(self._state.snapshots, config.keep_versions)
        self._events = EventLog(
            self._state.events,
            ttl=config.feedback_ttl,
            clock=clock,
            mark=SeqMark(self._state.seq_file),
            max_buffer_bytes=config.feedback_buffer_bytes,
        )
        self._learner: Learner | None = None
        self._lock = threading.Lock()
        self._dropped: OrderedDict[str, None] = OrderedDict()  # see keep_features
        self._batcher: Batcher[Request, Prediction] = Batcher(
            self._predict_batch,
            size=lambda request: len(request[0]),
            max_rows=config.batch_max_records,
            max_wait=config.batch_wait,
        )
        self.predictions = 0
        self.replayed = 0  # events replayed at start

    def __enter__(self) -> ModelService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._state.open(self.config.model_path, self._prepare)
        try:
            try:
                self._store.open()
            except OSError as exc:
                raise StateDirError(self._state.unwritable(exc)) from None
            self._events.open()
            found = self._store.latest()
            if found is None:
                if self._events.first_seq() > 1:
                    raise StateDirError(
                        f"{self._state.path}: no readable snapshot, and the event log no longer "
                        "starts at the first event: the model cannot be rebuilt"
                    )
                model = Model.load(self.config.model_path)
                source = str(Path(self.config.model_path).resolve())
                found = (
                    model,
                    self._store.write(model, applied_seq=0, reason="initial", source=source),
                )
            model, version = found
            loss = check_log(self._events, version, self.config.accept_event_loss)
            learner = Learner(
                Live(model, version.version), version.applied_seq, self._events, self._store,
                self.config,
            )  # fmt: skip
            self._events.on_commit = learner.notify
            self.replayed = learner.catch_up()
            if loss is not None:
                learner.accept_loss(loss)
            learner.start()
            self._learner = learner
            warm_up(model)  # the first request does not wait for kernels
        except BaseException:
            self._events.close()
            self._state.close()
            raise

    def close(self) -> None:
        learner, self._learner = self._learner, None
        if learner is None:
            return
        try:
            try:
                self._events.flush().result()
            finally:
                learner.stop()  # drains what is logged, writes the shutdown snapshot
        finally:
            self._events.close()
            self._state.close()
        if learner.failure is not None:
            raise Unavailable(
                f"the learner had stopped ({learner.failure}); the event log holds every "
                "acknowledged event, and a restart replays them"
            )

    @property
    def learner(self) -> Learner:
        learner = self._learner
        if learner is None:
            raise Unavailable(f"model {self.name!r} is not being served (shutting down)")
        return learner

    @property
    def ready(self) -> bool:
        return self._learner is not None and self._learner.failure is None

    def _live_model(self) -> Model:
        return self.learner.live.model

    # -- operations ------------------------------------------------------------------------------

    def score(self, scorer: Callable[[Model], Scored]) -> tuple[Scored, int]:
        """Predict now, with no batching: what ``scorer`` makes with the live model (its
        predictions, counted by its length), and the version that made them. The TCP server's
        fast path, which parses whole blocks of lines itself (``lines.answer_block``)."""
        live = self.learner.live
        scored = scorer(live.model)
        with self._lock:
            self.predictions += len(scored)
        return scored, live.version

    def _predict_batch(self, requests: list[Request]) -> list[Prediction | Exception]:
        live = self.learner.live
        out = score(live.model, requests, version=live.version,
                    applied_seq=self.learner.applied_seq, remember=self._remember)  # fmt: skip
        with self._lock:
            self.predictions += sum(len(p.values) for p in out if isinstance(p, Prediction))
        return out

    def _remember(self, requests: list[list[str]]) -> list[list[str]]:
        """New event ids for each request's predictions, their features kept for
        ``--feedback-ttl`` (in one write for all of them)."""
        now = self._clock()
        ids, rows = kept_features(requests, self.learner.live.model.spec, now)
        if not rows:
            return ids
        kept = iter(self._events.remember(rows, now + self.config.feedback_ttl))
        # an id whose features were not kept says so: its feedback gets 410, never 404
        return [[i if next(kept) else i[:-1] + DROPPED for i in r] for r in ids]

    def keep_features(self, rows: Sequence[tuple[str, str]], expires: float) -> None:
        """Keep predictions made elsewhere (a front-end process) for their feedback:
        (event id, features) rows, until ``expires``. Their ids were handed out before the
        rows came here, so one whose features are not kept is remembered as dropped: its
        feedback gets 410, as in one process (the last ``_DROPPED_IDS`` of them)."""
        kept = self._events.remember(rows, expires)
        with self._lock:
            for (event_id, _), ok in zip(rows, kept, strict=True):
                if not ok:
                    self._dropped[event_id] = None
            while len(self._dropped) > _DROPPED_IDS:
                self._dropped.popitem(last=False)

    def learn(
        self, records: Sequence[Any], *, ignore_unknown: bool = False, checked: bool = False
    ) -> Future[list[int]]:
        """Check labeled records and log them; the future gives their seqs once durable.
        ``checked``: they are VW lines that the server's own parser just read, and the live
        model took their labels (the TCP server's blocks): logged as they are."""
        if checked:
            return self._events.append(list(records))
        ignore = ignore_unknown or self.config.ignore_unknown
        return self._events.append(learn_lines(records, self.learner.live.model,
                                               ignore_unknown=ignore))  # fmt: skip

    def feedback(self, event_id: Any, label: Any, weight: Any = None) -> Future[int]:
        """Learn a prediction's features with ``label``, as if the labeled record were sent."""
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 64:
            raise RequestError("event_id", "must be the event id string that predict returned")
        if event_id in self._dropped:
            raise FeaturesDropped(
                f"event {event_id}: its features were not kept for feedback (more waited to be "
                "written than --feedback-buffer-bytes allows; see shoal_feedback_features_dropped)"
            )
        text = number_text(label, "label")
        if weight is not None:
            text += " " + weight_text(weight, "weight")
        model = self.learner.live.model
        check_labels(model, Batch.from_rows([([], [])], labels=[float(label)]), "label")
        return self._events.feedback(event_id, text)

    def wait_applied(self, seq: int) -> Future[None]:
        """Resolves once event ``seq`` is in the live model (predictions reflect it)."""
        return self.learner.wait_applied(seq)

    def snapshot(self) -> Future[Version]:
        """A new version of the live model, holding every event acknowledged before the call."""
        return self.learner.snapshot("manual")

    def rollback(self, version: Any) -> Future[Version]:
        """Make a kept version live again (as a new version); events after it are not re-applied."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise RequestError("version", "must be a version number (see /versions)")
        return self.learner.rollback(version)

    def load(self, path: Any) -> Future[Version]:
        """Swap in the model file at ``path`` (same loss and classes) as a new version: a
        regular file in the models directory (``models.py``), relative to it or absolute. Its
        kind may differ (a linear model for an FM, an FFM of other fields): the event log keeps
        records as text, and the labels, which are all a swap must keep, are the same."""
        found, payload = read_model_file(self.config.load_dir, path)
        model = Model.from_bytes(payload, str(path))
        current = self.learner.live.model.config
        if (model.config.loss, model.config.outputs) != (current.loss, current.outputs):
            raise ConfigError(
                "path",
                f"{path} learns {model.config.loss} loss with {model.config.outputs} output(s); "
                f"the served model learns {current.loss} with {current.outputs}: labels in the "
                "log would not fit it",
            )
        return self.learner.install(model, "load", str(found))

    # -- state -----------------------------------------------------------------------------------

    def versions(self) -> list[Version]:
        return self._store.versions()

    def histograms(self) -> dict[str, Histogram]:
        """Records per prediction batch; seconds from logging an event to predicting with it."""
        return {"batch_records": self._batcher.sizes, "visible_seconds": self.learner.delays}

    def info(self) -> dict[str, Any]:
        learner = self.learner
        live = learner.live
        return {
            "name": self.name,
            "version": live.version,
            "applied_seq": learner.applied_seq,
            "logged_seq": self._events.last_seq,
            "examples_learned": live.model.examples_learned,
            "progressive_loss": _finite(learner.progress.loss),
            "spec": live.model.spec.to_dict(),
            "config": live.model.config.to_dict(),
        }

    def stats(self) -> dict[str, float]:
        """Counters and gauges for monitoring (see ``metrics.py``)."""
        learner = self.learner
        return {
            "events_logged": float(self._events.events_logged),
            "events_learned": float(learner.events_learned),
            "events_rejected": float(learner.events_rejected),
            "predictions": float(self.predictions),
            "features_dropped": float(self._events.features_dropped),
            "snapshots": float(learner.snapshots_written),
            "learner_lag": float(learner.lag),
            "applied_seq": float(learner.applied_seq),
            "model_version": float(learner.live.version),
            "progressive_loss": learner.progress.loss,
            "progressive_examples": float(learner.progress.examples),
        }


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None
