"""``shoal serve --follow URI``: a read replica's front ends (HTTP and TCP, as the learner's
server has them) on one event loop, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from shoal.serve.config import HttpConfig, TcpConfig
from shoal.serve.http.server import front_ends, run_loop, serve_all, stopped_by_signals
from shoal.serve.learning.service import ModelService
from shoal.serve.replica.follower import FollowConfig, ReplicaService


def serve_replica(
    follow: FollowConfig,
    http: HttpConfig | None,
    tcp: TcpConfig | None,
    on_ready: Callable[[dict[str, Any], list[str]], None] = lambda state, urls: None,
) -> None:
    """Follow ``follow.uri`` and serve what it publishes until a signal."""
    logging.basicConfig(level=logging.WARNING, format="shoal: %(levelname)s: %(message)s")
    with stopped_by_signals() as stop:
        replica = ReplicaService(follow)
        try:
            replica.start()
            service = cast(ModelService, replica)  # it answers every call the front ends make
            stop.fronts[:] = front_ends(service, http, tcp)
            for front in stop.fronts:
                front.bind()
            if not stop.requested:
                on_ready({**replica.info(), "replayed": 0}, [front.url for front in stop.fronts])
                run_loop(serve_all(stop.fronts))
        finally:
            replica.close()
