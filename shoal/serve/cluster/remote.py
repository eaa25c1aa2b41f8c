"""``RemoteService``: what a front-end process serves -- a ``ModelService`` whose predictions are
made here, from the shared weights, and whose learning and versions live in the learner process.

It answers the calls the HTTP app and the TCP line server make of a ``ModelService`` (same
names, same results, same errors), so the front ends run unchanged in a front-end process:

- ``predict``: parsed, hashed and scored here with the learner's weights, mapped from shared
  memory (no copy; ``shmweights.Reader``), gathered into batches as in one process. The
  features kept for feedback go to the learner without waiting.
- ``learn``, ``feedback``: checked here (a bad record is a 400 before it costs the learner
  anything), then logged by the learner; the future resolves once they are durable.
- versions, snapshot, rollback, load, info, stats: calls to the learner.

While the learner restarts, predictions go on from the last published weights; everything else
raises ``Unavailable`` (503 with ``Retry-After``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.data.batch import Batch
from shoal.model.model import Model
from shoal.serve.cluster.learnerproc import SOCKET
from shoal.serve.cluster.rpc import RpcClient
from shoal.serve.cluster.shmweights import Reader
from shoal.serve.config import ServiceConfig
from shoal.serve.errors import RequestError
from shoal.serve.futures import then
from shoal.serve.histogram import Histogram
from shoal.serve.learning.batcher import Batcher
from shoal.serve.learning.learner import Live
from shoal.serve.reading.records import (
    number_text,
    weight_text,
)
from shoal.serve.reading.scoring import (
    Predicting,
    Prediction,
    Request,
    Scored,
    check_labels,
    kept_features,
    learn_lines,
    score,
)
from shoal.serve.state.snapshots import Version

CALL_TIMEOUT = 10.0  # seconds a front end waits for the learner's answer to a quick call


@dataclass(frozen=True)
class SharedLearner:
    """What the routes read of ``ModelService.learner``: the live model and its version."""

    live: Live
    applied_seq: int


class RemoteService(Predicting):
    """A front end's service (see the module's doc); thread-safe."""

    def __init__(
        self,
        config: ServiceConfig,
        rundir: Path,
        *,
        on_batch: Callable[[int], None] = lambda n: None,
        on_scored: Callable[[int], None] = lambda n: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = config.served_name
        self.replayed = 0
        self.predictions = 0
        self._on_batch = on_batch  # records per scored batch (the front end's metrics)
        self._on_scored = on_scored  # records predicted apart from the batcher (``score``)
        self._clock = clock
        self._weights = Reader(rundir)
        self._rpc = RpcClient(rundir / SOCKET)
        self._batcher: Batcher[Request, Prediction] = Batcher(
            self._predict_batch,
            size=lambda request: len(request[0]),
            max_rows=config.batch_max_records,
            max_wait=config.batch_wait,
        )

    def close(self) -> None:
        self._rpc.close()

    # -- what the routes read ----------------------------------------------------------------

    @property
    def learner(self) -> SharedLearner:
        model, version, applied = self._weights.current()
        return SharedLearner(Live(model, version), applied)

    @property
    def ready(self) -> bool:
        """Predictions can be answered (learning may be waiting for the learner to restart)."""
        try:
            self._weights.current()
        except Exception:
            return False
        return True

    @property
    def learner_connected(self) -> bool:
        return self._rpc.connected

    def wait_connected(self, timeout: float) -> bool:
        return self._rpc.wait_connected(timeout)

    # -- predictions, here ---------------------------------------------------------------------

    def _live_model(self) -> Model:
        return self._weights.current()[0]

    def score(self, scorer: Callable[[Model], Scored]) -> tuple[Scored, int]:
        """As ``ModelService.score``: the TCP fast path's block, predicted now."""
        model, version, _ = self._weights.current()
        scored = scorer(model)
        self.predictions += len(scored)
        self._on_scored(len(scored))  # not a batch of concurrent requests: not in its histogram
        return scored, version

    def _predict_batch(self, requests: list[Request]) -> list[Prediction | Exception]:
        model, version, applied = self._weights.current()
        out = score(model, requests, version=version, applied_seq=applied, remember=self._remember)
        n = sum(len(p.values) for p in out if isinstance(p, Prediction))
        self.predictions += n
        self._on_batch(n)
        return out

    def _remember(self, requests: list[list[str]]) -> list[list[str]]:
        """Event ids, made as the learner makes them; the features go to the learner without
        waiting (dropped while it restarts: their feedback is then 404)."""
        now = self._clock()
        ids, rows = kept_features(requests, self.learner.live.model.spec, now)
        if rows:
            self._rpc.send("remember", rows=rows, expires=now + self.config.feedback_ttl)
        return ids

    # -- learning, in the learner ----------------------------------------------------------------

    def learn(
        self, records: Sequence[Any], *, ignore_unknown: bool = False, checked: bool = False
    ) -> Future[list[int]]:
        """Check labeled records here, log them in the learner (which checks them again against
        its own model, unless ``checked``: see ``ModelService.learn``); the future gives their
        seqs once durable."""
        if checked:
            return self._rpc.call("learn", records=list(records), checked=True)
        ignore = ignore_unknown or self.config.ignore_unknown
        lines = learn_lines(records, self.learner.live.model, ignore_unknown=ignore)
        return self._rpc.call("learn", records=lines)

    def feedback(self, event_id: Any, label: Any, weight: Any = None) -> Future[int]:
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 64:
            raise RequestError("event_id", "must be the event id string that predict returned")
        number_text(label, "label")  # the learner checks again; a bad one costs it nothing
        if weight is not None:
            weight_text(weight, "weight")
        check_labels(
            self.learner.live.model, Batch.from_rows([([], [])], labels=[float(label)]), "label"
        )
        return self._rpc.call("feedback", event_id=event_id, label=label, weight=weight)

    def wait_applied(self, seq: int) -> Future[None]:
        if seq <= self._weights.current()[2]:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        return self._rpc.call("wait_applied", seq=seq)

    def snapshot(self) -> Future[Version]:
        return then(self._rpc.call("snapshot"), Version.from_dict)

    def rollback(self, version: Any) -> Future[Version]:
        if isinstance(version, bool) or not isinstance(version, int):
            raise RequestError("version", "must be a version number (see /versions)")
        return then(self._rpc.call("rollback", version=version), Version.from_dict)

    def load(self, path: Any) -> Future[Version]:
        if not isinstance(path, str) or not path:
            raise RequestError("path", "must be the path of a model file on the server")
        return then(self._rpc.call("load", path=path), Version.from_dict)

    # -- state, from the learner ----------------------------------------------------------------

    def versions(self) -> list[Version]:
        return [Version.from_dict(v) for v in self._rpc.call_sync("versions", CALL_TIMEOUT)]

    def info(self) -> dict[str, Any]:
        return dict(self._rpc.call_sync("info", CALL_TIMEOUT))

    def stats(self) -> dict[str, float]:
        """The learner's numbers; ``predictions`` is NaN: the front ends count those in the
        metrics they share (``frontend.py``)."""
        data = self._rpc.call_sync("stats", CALL_TIMEOUT)
        stats = {k: float("nan") if v is None else float(v) for k, v in data["stats"].items()}
        stats["predictions"] = float("nan")
        return stats

    def histograms(self) -> dict[str, Histogram]:
        """The learner's learn-to-visible histogram (batch sizes are the front ends' own
        metric, ``frontend.py``)."""
        data = self._rpc.call_sync("stats", CALL_TIMEOUT)["visible_seconds"]
        bounds = [float(b) for b, _ in data["cumulative"]]
        h = Histogram(bounds)
        previous = 0
        for i, (_, n) in enumerate(data["cumulative"]):
            h._counts[i] = int(n) - previous  # rebuilt from the learner's counts
            previous = int(n)
        h.sum = float(data["sum"])
        return {"visible_seconds": h}
