"""``shoal serve --follow URI``: a read replica's front ends (HTTP and TCP, as the learner's
server has them) on one event loop, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, cast

from shoal.serve.cluster.frontend import run_loop
from shoal.serve.config import HttpConfig, TcpConfig
from shoal.serve.http.server import FrontEnd, front_ends
from shoal.serve.learning.service import ModelService
from shoal.serve.replica.follower import FollowConfig, ReplicaService


async def _serve_all(fronts: list[FrontEnd]) -> None:
    async with asyncio.TaskGroup() as group:
        for front in fronts:
            group.create_task(front.serve())


def serve_replica(
    follow: FollowConfig,
    http: HttpConfig | None,
    tcp: TcpConfig | None,
    on_ready: Callable[[dict[str, Any], list[str]], None] = lambda state, urls: None,
) -> None:
    """Follow ``follow.uri`` and serve what it publishes until a signal."""
    logging.basicConfig(level=logging.WARNING, format="shoal: %(levelname)s: %(message)s")
    fronts: list[FrontEnd] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for front in fronts:
            front.should_exit = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    replica = ReplicaService(follow)
    try:
        replica.start()
        service = cast(ModelService, replica)  # it answers every call the front ends make
        fronts[:] = front_ends(service, http, tcp)
        for front in fronts:
            front.bind()
        if not stopping:
            on_ready({**replica.info(), "replayed": 0}, [front.url for front in fronts])
            run_loop(_serve_all(fronts))
    finally:
        replica.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
