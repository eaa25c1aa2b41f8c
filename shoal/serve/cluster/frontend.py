"""A front-end process: today's HTTP app and TCP line server, on its own event loop, over a
``RemoteService`` (predictions from the shared weights, the rest in the learner process).

Each front end gets its listening sockets from the supervisor (its own, bound with
``SO_REUSEPORT`` so the kernel spreads connections over the processes; or one socket shared by
all where the OS lacks it), so a front end that dies is replaced on the same sockets: the
connections that wait in a dead one's queue are taken by its successor.

Every HTTP response says which front end answered (``Shoal-Front-End: INDEX``, ``Shoal-Pid``);
the request metrics go to files that every process shares (prometheus_client's multiprocess
mode), so any front end's ``/metrics`` describes the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.serve import sockets
from shoal.serve.cluster.remote import RemoteService
from shoal.serve.config import HttpConfig, ServiceConfig, TcpConfig
from shoal.serve.http.app import build_app
from shoal.serve.http.server import run_loop, uvicorn_server
from shoal.serve.learning.batcher import BUCKETS
from shoal.serve.learning.service import ModelService
from shoal.serve.metrics import Metrics, Tally
from shoal.serve.tcp.server import LineServer

HEADER = b"shoal-front-end"
PID_HEADER = b"shoal-pid"


def tagged(app: ASGIApp, index: int) -> ASGIApp:
    """``app`` whose HTTP responses carry ``Shoal-Front-End: index`` and ``Shoal-Pid``."""
    tag = str(index).encode()
    pid = str(os.getpid()).encode()

    async def tagged_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, tag), (PID_HEADER, pid)]
            await send(message)

        await app(scope, receive, send_tagged)

    return tagged_app


class FrontHttp:
    """HTTP on a socket bound by the supervisor (``server.FrontEnd``)."""

    def __init__(self, app: ASGIApp, http: HttpConfig, sock: socket.socket) -> None:
        self.sock = sock
        self._server = uvicorn_server(app, http)

    @property
    def started(self) -> bool:
        return self._server.started

    @property
    def should_exit(self) -> bool:
        return self._server.should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._server.should_exit = value

    @property
    def url(self) -> str:
        return f"http://{sockets.address(self.sock)}"

    def bind(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    async def serve(self) -> None:
        await self._server.serve(sockets=[self.sock])


def _multiprocess_metrics(directory: Path) -> None:
    """Metrics made from now on write to ``directory``, where every front end's are summed."""
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()


def run(
    index: int,
    config: ServiceConfig,
    http: HttpConfig | None,
    tcp: TcpConfig | None,
    listeners: dict[str, socket.socket],
    rundir: Path,
    ready: int,
    parent: int,
) -> int:
    """Serve until SIGTERM (then drain); write a line to ``ready`` once every socket answers.
    Stop too if the supervisor (``parent``) is gone."""
    _multiprocess_metrics(rundir / "metrics")
    from prometheus_client import Counter, Histogram

    name = config.served_name
    predicted = Counter("shoal_predictions", "Records predicted", ["model"]).labels(name)
    sizes = Histogram(
        "shoal_predict_batch_records",
        "Records per batch of concurrent predictions scored together",
        ["model"],
        buckets=BUCKETS,
    ).labels(name)

    def counted(n: int) -> None:
        predicted.inc(n)
        sizes.observe(n)

    remote = RemoteService(config, rundir, on_batch=counted, on_scored=Tally(predicted).inc)
    service = cast(ModelService, remote)  # it answers every call the front ends make
    services = {name: service}
    metrics = Metrics(services)
    metrics.whole_server(services, str(rundir / "metrics"))
    fronts: list[Any] = []
    if http is not None:
        fronts.append(FrontHttp(tagged(build_app(services, http, metrics), index), http,
                                listeners["http"]))  # fmt: skip
    if tcp is not None:
        line_server = LineServer(service, tcp, metrics)
        line_server.sock = listeners["tcp"]
        fronts.append(line_server)

    def stop(signum: int, frame: object) -> None:
        for front in fronts:
            front.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides (Ctrl-C hits the group)
    try:
        run_loop(_serve(fronts, ready, parent))
    finally:
        remote.close()
    return 0


async def _serve(fronts: list[Any], ready: int, parent: int) -> None:
    async with asyncio.TaskGroup() as group:
        for front in fronts:
            group.create_task(front.serve())
        while not all(front.started for front in fronts):  # uvicorn has no event to wait on
            if any(front.should_exit for front in fronts):
                return
            await asyncio.sleep(0.005)
        with contextlib.suppress(OSError):
            os.write(ready, b"{}\n")
        while not all(front.should_exit for front in fronts):
            if os.getppid() != parent:  # the supervisor died (where no death signal came)
                for front in fronts:
                    front.should_exit = True
            await asyncio.sleep(0.25)
