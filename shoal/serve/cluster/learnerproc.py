"""The learner process: the one ``ModelService`` of a multi-process server.

It owns what must exist once: the event log, the learner thread, the snapshots and versions.
It publishes the live weights in shared memory (``shmweights.Publisher``, called by the learner
thread after every learned batch and every new version) and answers the front ends' calls on a
Unix socket (``rpc.RpcServer``): learn, feedback, waits, versions, snapshot, rollback, load,
info and stats, and the features of predictions kept for their feedback.

A learn or feedback call is answered once the event is durable in the log, as in one process;
the front end acknowledges it to its client only then.

Feedback may reach the learner before the features it names: a prediction's front end sends
them without waiting (a prediction must not wait for the learner), and the client may send its
feedback to another front end at once. So a feedback whose event id is unknown but was made in
the last ``_RECENT`` seconds is tried again for up to ``_RETRY_FOR`` seconds before it is 404.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from shoal.errors import ShoalError
from shoal.serve.cluster.rpc import RpcServer
from shoal.serve.cluster.shmweights import Publisher
from shoal.serve.config import ServiceConfig
from shoal.serve.errors import UnknownEvent
from shoal.serve.futures import then
from shoal.serve.histogram import Histogram
from shoal.serve.learning.service import ModelService
from shoal.serve.replica.publisher import SnapshotPublisher
from shoal.serve.replica.shelf import Shelf
from shoal.serve.state.eventlog import id_time
from shoal.serve.state.snapshots import Version

log = logging.getLogger("shoal.serve")
T = TypeVar("T")
U = TypeVar("U")
_RECENT = 10.0  # seconds: an event id this young may name features still on their way
_RETRY_FOR = 2.0  # seconds such a feedback is tried again
_RETRY_EVERY = 0.01

SOCKET = "learner.sock"


def histogram_data(h: Histogram) -> dict[str, Any]:
    return {"cumulative": [[b, n] for b, n in h.cumulative()], "sum": h.sum}


class LearnerCalls:
    """The calls a front end makes, over a started service (what ``RpcServer`` dispatches)."""

    def __init__(self, service: ModelService) -> None:
        self.service = service

    def handlers(self) -> dict[str, Callable[..., Any]]:
        s = self.service
        return {
            "learn": lambda records, checked=False: s.learn(records, checked=checked),
            "feedback": self.feedback,
            "wait_applied": lambda seq: s.wait_applied(seq),
            "snapshot": lambda: then(s.snapshot(), Version.to_dict),
            "rollback": lambda version: then(s.rollback(version), Version.to_dict),
            "load": lambda path: then(s.load(path), Version.to_dict),
            "versions": lambda: [v.to_dict() for v in s.versions()],
            "info": lambda: s.info(),
            "stats": self.stats,
            "remember": lambda rows, expires: s.keep_features([tuple(r) for r in rows], expires),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "stats": self.service.stats(),
            "visible_seconds": histogram_data(self.service.histograms()["visible_seconds"]),
        }

    def feedback(self, event_id: Any, label: Any, weight: Any = None) -> Future[int]:
        out: Future[int] = Future()
        deadline = time.monotonic() + _RETRY_FOR
        made = id_time(event_id) if isinstance(event_id, str) else None
        recent = made is not None and abs(time.time() - made) < _RECENT

        def attempt() -> None:
            try:
                self.service.feedback(event_id, label, weight).add_done_callback(settled)
            except Exception as exc:
                out.set_exception(exc)

        def settled(fut: Future[int]) -> None:
            exc = fut.exception()
            if isinstance(exc, UnknownEvent) and recent and time.monotonic() < deadline:
                timer = threading.Timer(_RETRY_EVERY, attempt)
                timer.daemon = True
                timer.start()
            elif exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(fut.result())

        attempt()
        return out


def run(config: ServiceConfig, rundir: Path, ready: int, publish: str | None = None) -> int:
    """Serve the learner until SIGTERM; ``ready`` (a pipe) hears one JSON line: the service's
    state once front ends may come, or the error that stopped it. Returns the exit code."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides (Ctrl-C hits the group)
    service = ModelService(config)
    try:
        service.start()
    except ShoalError as exc:
        _tell(ready, {"error": str(exc)})
        return 2
    server: RpcServer | None = None
    shelf: SnapshotPublisher | None = None
    try:
        publisher = Publisher(rundir)
        learner = service.learner
        if publish is not None:  # --publish: every snapshot also goes to the shared location
            store = Path(config.state_dir) / "snapshots"
            shelf = SnapshotPublisher(Shelf(publish, config.keep_versions), store, service.name)

        def publish_weights() -> None:  # in the learner thread
            live = learner.live
            publisher.publish(live.model, version=live.version, applied_seq=learner.applied_seq)
            if shelf is not None and live.version != shelf.last_version:
                logged = learner.applied_seq + learner.lag  # not service.info(): it may be closing
                shelf.offer(live.version, learner.applied_seq, logged)

        learner.on_change = publish_weights
        learner.submit(publish_weights).result()
        server = RpcServer(rundir / SOCKET, LearnerCalls(service).handlers())
        server.start()
        info = service.info()
        _tell(ready, {
            "name": service.name, "version": info["version"],
            "applied_seq": info["applied_seq"], "replayed": service.replayed,
        })  # fmt: skip
        while not stop.wait(1.0):
            if os.getppid() == 1:  # the supervisor is gone (and the death signal was missed)
                break
    finally:
        if server is not None:
            server.close()
        try:
            service.close()  # drains the learner, writes the shutdown snapshot
        finally:
            if shelf is not None:
                shelf.close()
    return 0


def _tell(fd: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the supervisor is gone
        os.write(fd, json.dumps(message).encode() + b"\n")
