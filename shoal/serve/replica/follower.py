"""A read replica: ``shoal serve --follow URI [--leader URL]``.

It serves the newest snapshot published at ``URI`` (``shelf.py``) and swaps to each newer one
once it is verified -- a damaged one is skipped, counted and reported, never served. It answers
predictions on every protocol (JSON, Open Inference Protocol, the TCP line protocol). Learning
and the admin calls are forwarded to the learner's server (``--leader``) and acknowledged only
once the learner acknowledged them; without a leader they are refused (403).

Its lag shows in ``/metrics`` (``shoal_replica_lag_seconds``, ``shoal_replica_lag_events``) and in
the model's info (``replica``): how many events the learner has logged past the served
snapshot (the learner's count comes from the leader when there is one, else from the newest
manifest), and since when.

A replica keeps no features for feedback: its predictions have no event ids (a feedback names a
prediction of the learner's server).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from shoal.errors import ConfigError, ShoalError
from shoal.model.model import Model
from shoal.serve.errors import ReadOnly, RequestError, Unavailable
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
    learn_lines,
    score,
)
from shoal.serve.replica.leader import Leader
from shoal.serve.replica.shelf import DamagedSnapshot, Shelf
from shoal.serve.state.snapshots import Version

log = logging.getLogger("shoal.serve")


@dataclass(frozen=True, kw_only=True)
class FollowConfig:
    """Where a replica finds snapshots, whom it forwards learning to, how often it looks.

    >>> FollowConfig(uri="/shared/ctr", leader="http://learner:8080/").leader
    'http://learner:8080'
    """

    uri: str
    leader: str | None = None
    name: str = ""  # default: the name the learner published under
    token: str | None = None  # sent to the leader (the learner's --token)
    every: float = 1.0  # seconds between looks at the manifest
    start_timeout: float = 60.0  # seconds to wait for a first snapshot
    batch_max_records: int = 1024
    batch_wait: float = 0.0
    ignore_unknown: bool = False  # --ignore-unknown, as on the learner's server

    def __post_init__(self) -> None:
        if not self.uri:
            raise ConfigError("--follow", "give the URI the learner publishes to (--publish)")
        if self.leader is not None:
            if not self.leader.startswith(("http://", "https://")):
                raise ConfigError("--leader", f"expected http://HOST:PORT, got {self.leader!r}")
            object.__setattr__(self, "leader", self.leader.rstrip("/"))
        if not (isinstance(self.every, int | float) and 0 < self.every <= 3600):
            raise ConfigError("--follow-every", "must be from 0 to 3600 seconds")


@dataclass(frozen=True)
class _Served:
    live: Live
    applied_seq: int
    published: float


class ReplicaService(Predicting):
    """What a replica's front ends serve (the calls of ``ModelService``); thread-safe."""

    keeps_features = False  # a replica's predictions have no event ids (no log to keep them)

    def __init__(self, config: FollowConfig) -> None:
        self.config = config
        self.name = config.name
        self.replayed = 0
        self.predictions = 0
        self.skipped = 0
        self._shelf = Shelf(config.uri)
        self._leader: Leader | None = None
        self._served: _Served | None = None
        self._learner_seq = 0  # events the learner has logged, as last heard
        self._bad: set[str] = set()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, int, Future[None]]] = []
        self._tie = itertools.count()
        self._thread: threading.Thread | None = None
        self._batcher: Batcher[Request, Prediction] = Batcher(
            self._predict_batch,
            size=lambda request: len(request[0]),
            max_rows=config.batch_max_records,
            max_wait=config.batch_wait,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the newest published snapshot (waiting for one), then follow."""
        deadline = time.monotonic() + self.config.start_timeout
        while not self._look():
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"nothing is published at {self.config.uri} yet: start the learner with "
                    f"--publish {self.config.uri}"
                )
            time.sleep(min(self.config.every, 0.5))
        served = self._served
        assert served is not None
        if self.config.leader is not None:
            self._leader = Leader(self.config.leader, self.name, self.config.token)
        self._thread = threading.Thread(target=self._follow, name="shoal-follow", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._leader is not None:
            self._leader.close()

    def __enter__(self) -> ReplicaService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _follow(self) -> None:
        while not self._stop.wait(self.config.every):
            try:
                self._look()
                if self._leader is not None:
                    info = self._leader.request("GET", f"/v1/models/{self.name}")
                    self._learner_seq = max(self._learner_seq, int(info["logged_seq"]))
            except ShoalError as exc:
                log.warning("following %s: %s", self.config.uri, exc)
            except Exception as exc:  # an unreachable store: keep serving what we have
                log.warning("following %s: %s: %s", self.config.uri, type(exc).__name__, exc)

    def _look(self) -> bool:
        """Swap to the newest snapshot if it is newer and sound; whether one is served."""
        entry = self._shelf.latest()
        if entry is None:
            return self._served is not None
        self._learner_seq = max(self._learner_seq, int(entry.get("logged_seq", 0)))
        if not self.name:
            self.name = str(entry.get("name") or "model")
        served = self._served
        newer = served is None or (
            int(entry["version"]), float(entry["published"])
        ) > (served.live.version, served.published)  # fmt: skip
        if not newer or entry["file"] in self._bad:
            return served is not None
        try:
            model = self._shelf.fetch(entry)
        except DamagedSnapshot as exc:
            self._bad.add(str(entry["file"]))
            self.skipped += 1
            log.error("skipping a published snapshot: %s (still serving version %s)", exc,
                      served.live.version if served else "none")  # fmt: skip
            return served is not None
        applied = int(entry["applied_seq"])
        self._served = _Served(Live(model, int(entry["version"])), applied,
                               float(entry["published"]))  # fmt: skip
        with self._cond:
            done = []
            while self._waiters and self._waiters[0][0] <= applied:
                done.append(heapq.heappop(self._waiters)[2])
        for fut in done:
            fut.set_result(None)
        return True

    # -- what the routes read ----------------------------------------------------------------

    @property
    def learner(self) -> _Served:
        served = self._served
        if served is None:
            raise Unavailable("no snapshot is served yet")
        return served

    @property
    def ready(self) -> bool:
        return self._served is not None

    # -- predictions -----------------------------------------------------------------------------

    def _live_model(self) -> Model:
        return self.learner.live.model

    def score(self, scorer: Callable[[Model], Scored]) -> tuple[Scored, int]:
        """As ``ModelService.score``: the TCP fast path's block, predicted now."""
        live = self.learner.live
        scored = scorer(live.model)
        self.predictions += len(scored)
        return scored, live.version

    def _predict_batch(self, requests: list[Request]) -> list[Prediction | Exception]:
        served = self.learner
        out = score(served.live.model, requests, version=served.live.version,
                    applied_seq=served.applied_seq)  # fmt: skip
        self.predictions += sum(len(p.values) for p in out if isinstance(p, Prediction))
        return out

    # -- learning: the leader's ----------------------------------------------------------------

    def _to_leader(self) -> Leader:
        if self._leader is None:
            raise ReadOnly(
                f"this server is a read replica of {self.config.uri} without --leader: send "
                "learn, feedback and admin calls to the learner's server (or give --leader URL)"
            )
        return self._leader

    def learn(
        self, records: Sequence[Any], *, ignore_unknown: bool = False, checked: bool = False
    ) -> Future[list[int]]:
        """Forwarded to the leader, which checks them against its own model (``checked`` or
        not: the replica's model may be older)."""
        leader = self._to_leader()
        ignore = ignore_unknown or self.config.ignore_unknown
        lines = learn_lines(records, self.learner.live.model, ignore_unknown=ignore)
        return then(leader.call("POST", "/learn", {"records": lines}), lambda b: b["seqs"])

    def feedback(self, event_id: Any, label: Any, weight: Any = None) -> Future[int]:
        leader = self._to_leader()
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 64:
            raise RequestError("event_id", "must be the event id string that predict returned")
        number_text(label, "label")
        if weight is not None:
            weight_text(weight, "weight")
        body = {"event_id": event_id, "label": label}
        if weight is not None:
            body["weight"] = weight
        return then(leader.call("POST", "/feedback", body), lambda b: b["seq"])

    def wait_applied(self, seq: int) -> Future[None]:
        """Resolves once this replica serves a snapshot that holds event ``seq``."""
        fut: Future[None] = Future()
        with self._cond:
            if seq <= self.learner.applied_seq:
                fut.set_result(None)
            else:
                heapq.heappush(self._waiters, (seq, next(self._tie), fut))
        return fut

    def snapshot(self) -> Future[Version]:
        return then(self._to_leader().call("POST", "/snapshot", {}), Version.from_dict)

    def rollback(self, version: Any) -> Future[Version]:
        return then(
            self._to_leader().call("POST", "/rollback", {"version": version}), Version.from_dict
        )

    def load(self, path: Any) -> Future[Version]:
        return then(self._to_leader().call("POST", "/load", {"path": path}), Version.from_dict)

    def versions(self) -> list[Version]:
        """The learner's versions (a replica keeps none of its own)."""
        body = self._to_leader().request("GET", f"/v1/models/{self.name}/versions")
        return [Version.from_dict(v) for v in body["versions"]]

    # -- state -----------------------------------------------------------------------------------

    def lag(self) -> tuple[float, int]:
        """(seconds, events) the served snapshot is behind the learner."""
        served = self.learner
        events = max(0, self._learner_seq - served.applied_seq)
        return (max(0.0, time.time() - served.published) if events else 0.0), events

    def info(self) -> dict[str, Any]:
        served = self.learner
        seconds, events = self.lag()
        model = served.live.model
        return {
            "name": self.name,
            "version": served.live.version,
            "applied_seq": served.applied_seq,
            "logged_seq": self._learner_seq,
            "examples_learned": model.examples_learned,
            "progressive_loss": None,
            "spec": model.spec.to_dict(),
            "config": model.config.to_dict(),
            "replica": {
                "follows": self.config.uri,
                "leader": self.config.leader,
                "lag_seconds": seconds,
                "lag_events": events,
                "snapshots_skipped": self.skipped,
            },
        }

    def stats(self) -> dict[str, float]:
        served = self.learner
        seconds, events = self.lag()
        nan = float("nan")
        return {
            "events_logged": nan, "events_learned": nan, "events_rejected": nan,
            "predictions": float(self.predictions), "features_dropped": nan, "snapshots": nan,
            "learner_lag": nan, "applied_seq": float(served.applied_seq),
            "model_version": float(served.live.version), "progressive_loss": nan,
            "progressive_examples": nan, "replica_lag_seconds": seconds,
            "replica_lag_events": float(events), "snapshots_skipped": float(self.skipped),
        }  # fmt: skip

    def histograms(self) -> dict[str, Histogram]:
        return {"batch_records": self._batcher.sizes}
