"""Running the front ends -- HTTP (uvicorn) and the TCP line server -- on one event loop, with
the service's lifecycle around them.

``serve()`` is what ``shoal serve`` runs: start the service (restore, replay), bind every
socket, answer until SIGTERM or SIGINT, then shut down in order -- each front end stops
accepting and lets what is in flight finish (HTTP requests, TCP lines already read), then the
service commits what is queued, drains the learner and writes a snapshot
(``ModelService.close``).

One loop serves both front ends (uvloop where it is installed): the model's work runs on it or
in worker threads alike (``offload.py``), so a loop per front end would only add threads, and
one signal handler stops both at once. ``Background``
runs front ends on a loop in a thread (tests, embedding), where no signals are handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, Protocol

import uvicorn
from starlette.types import ASGIApp

from shoal.errors import ConfigError, ShoalError
from shoal.serve import sockets
from shoal.serve.config import HttpConfig, ServiceConfig, TcpConfig
from shoal.serve.http.app import build_app
from shoal.serve.http.connections import protocol
from shoal.serve.learning.service import ModelService
from shoal.serve.metrics import Metrics
from shoal.serve.tcp.server import LineServer


class FrontEnd(Protocol):
    """A server on a socket that is bound before it serves (so its address is known)."""

    @property
    def started(self) -> bool: ...  # accepting connections

    should_exit: bool  # set (any thread, a signal handler) to stop: serve() drains and returns
    sock: socket.socket | None  # bound by bind(); serve() binds if it is None

    @property
    def url(self) -> str: ...

    def bind(self) -> tuple[str, int]: ...

    async def serve(self) -> None: ...


class _Uvicorn(uvicorn.Server):
    """uvicorn that leaves the signals to ``serve()``, which stops every front end on one."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_server(app: ASGIApp, http: HttpConfig) -> uvicorn.Server:
    """uvicorn over ``app`` as every shoal front end runs it (one process or many)."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(http.graceful_timeout),
        # uvicorn's limit_concurrency counts open sockets, which idle clients can hold:
        # the app limits requests in flight instead (``connections.py``)
        http=protocol(http.request_timeout, http.max_connections),
    )
    return _Uvicorn(config)


class HttpServer:
    """uvicorn over ``build_app(services, http)``; ``bind()`` first to learn the port."""

    def __init__(
        self, services: Mapping[str, ModelService], http: HttpConfig, metrics: Metrics | None = None
    ) -> None:
        self.http = http
        self.sock: socket.socket | None = None
        self._server = uvicorn_server(build_app(services, http, metrics), http)
        self._background: Background | None = None

    def bind(self) -> tuple[str, int]:
        self.sock = sockets.listen(self.http.host, self.http.port, "--http")
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        assert self.sock is not None, "bind() first"
        return f"http://{sockets.address(self.sock)}"

    @property
    def started(self) -> bool:
        return self._server.started

    @property
    def should_exit(self) -> bool:
        return self._server.should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set to stop: uvicorn stops accepting, finishes in-flight requests, and returns."""
        self._server.should_exit = value

    async def serve(self) -> None:
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        await self._server.serve(sockets=[self.sock])

    def start(self) -> None:
        """Serve in a thread (``Background``); returns once the server accepts connections."""
        self._background = Background([self])
        self._background.start()

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, return when the server is down."""
        if self._background is not None:
            self._background.stop()
            self._background = None


async def serve_all(fronts: Sequence[FrontEnd]) -> None:
    """Serve every front end until each has been told to exit; one that fails stops them all."""
    async with asyncio.TaskGroup() as group:
        for front in fronts:
            group.create_task(front.serve())


class Background:
    """Front ends served on one event loop in a thread until ``stop()``; no signals handled.

    ``start()`` returns once every front end accepts connections; ``with Background(...)``
    starts and stops.
    """

    def __init__(self, fronts: Sequence[FrontEnd]) -> None:
        self.fronts = list(fronts)
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Background:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for front in self.fronts:  # here, not in the thread: binding may load (or compile) kernels
            if front.sock is None:
                front.bind()
        self._thread = threading.Thread(
            target=run_loop, args=(serve_all(self.fronts),), name="shoal-serve", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30.0
        while not all(front.started for front in self.fronts):  # uvicorn has no event to wait on
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ShoalError("the server did not start")
            self._thread.join(0.01)

    def stop(self) -> None:
        """Stop accepting, let what is in flight finish, return when every front end is down."""
        for front in self.fronts:
            front.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)``, on uvloop where it is installed (a faster loop; not on Windows)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def front_ends(
    service: ModelService, http: HttpConfig | None, tcp: TcpConfig | None
) -> list[FrontEnd]:
    """The front ends the configs ask for, counting in one ``Metrics`` (HTTP's ``/metrics``)."""
    if http is None and tcp is None:
        raise ConfigError("--http", "nothing to serve: give --http, --tcp or both")
    metrics = Metrics({service.name: service})
    fronts: list[FrontEnd] = []
    if http is not None:
        fronts.append(HttpServer({service.name: service}, http, metrics))
    if tcp is not None:
        fronts.append(LineServer(service, tcp, metrics))
    return fronts


def serve(
    service_config: ServiceConfig,
    http: HttpConfig | None,
    tcp: TcpConfig | None = None,
    on_ready: Callable[[ModelService, list[str]], None] = lambda service, urls: None,
    prepare: Callable[[], None] = lambda: None,
) -> None:
    """Serve one model until SIGTERM or SIGINT; then shut down gracefully (see the module's doc).

    The signals are caught from the start: one that comes while the service restores and replays
    lets it finish starting and then close as usual, with its snapshot. ``prepare`` runs once
    the state directory is locked, before the model file is read (``--new`` writes it there).
    """
    logging.basicConfig(level=logging.WARNING, format="shoal: %(levelname)s: %(message)s")
    with stopped_by_signals() as stop, ModelService(service_config, prepare=prepare) as service:
        stop.fronts[:] = front_ends(service, http, tcp)
        for front in stop.fronts:
            front.bind()
        if not stop.requested:
            on_ready(service, [front.url for front in stop.fronts])
            run_loop(serve_all(stop.fronts))


class Stop:
    """The SIGTERM/SIGINT handler of a server: it tells every front end in ``fronts`` to exit,
    and remembers that it was asked (``requested``), for front ends not made yet."""

    def __init__(self) -> None:
        self.fronts: list[FrontEnd] = []
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        for front in self.fronts:
            front.should_exit = True


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[Stop]:
    """Catch SIGTERM and SIGINT with a ``Stop`` from the start (one that comes while a service
    starts lets it finish starting, then close as usual); the previous handlers come back."""
    stop = Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
