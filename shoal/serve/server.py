"""Running the app: uvicorn on a socket bound first, and the service's lifecycle around it.

``serve()`` is what ``shoal serve`` runs: start the service (restore, replay), bind, answer until
SIGTERM or SIGINT, then shut down in order -- stop accepting, let in-flight requests finish
(uvicorn), commit what is queued, drain the learner, write a snapshot (``ModelService.close``).
``HttpServer`` can also run in a thread (tests, embedding), where it handles no signals.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping

import uvicorn

from shoal.errors import ShoalError
from shoal.serve.app import build_app
from shoal.serve.config import HttpConfig, ServiceConfig
from shoal.serve.service import ModelService


class HttpServer:
    """uvicorn over ``build_app(services, http)``; ``bind()`` first to learn the port."""

    def __init__(self, services: Mapping[str, ModelService], http: HttpConfig) -> None:
        self.http = http
        self.sock: socket.socket | None = None
        config = uvicorn.Config(
            build_app(services, http),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(http.graceful_timeout),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def bind(self) -> tuple[str, int]:
        host = self.http.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this: without it a keep-alive response written in two parts
        # (head, body) waits for the client's delayed ACK, 40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, self.http.port))
        except OSError as exc:
            sock.close()
            raise ShoalError(f"cannot listen on {self.http.host}:{self.http.port}: "
                             f"{exc.strerror}") from None  # fmt: skip
        sock.listen(2048)
        sock.set_inheritable(True)
        self.sock = sock
        return host, sock.getsockname()[1]

    @property
    def url(self) -> str:
        assert self.sock is not None, "bind() first"
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def run(self) -> None:
        """Answer until ``stop()`` or, in the main thread, SIGTERM/SIGINT (then drain)."""
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        if threading.current_thread() is not threading.main_thread():
            self._server.run(sockets=[self.sock])
            return

        # Until uvicorn installs its handlers (and after it restores ours and re-raises the
        # signal that stopped it), a signal asks it to exit: never the default handler, which
        # would kill the process before the service drains, and never lost.
        def stop(signum: int, frame: object) -> None:
            self._server.should_exit = True

        noted = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._server.run(sockets=[self.sock])
        finally:
            for sig, handler in noted.items():
                signal.signal(sig, handler)

    @property
    def should_exit(self) -> bool:
        return self._server.should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set to stop: uvicorn stops accepting, finishes in-flight requests, and returns."""
        self._server.should_exit = value

    def start(self) -> None:
        """Run in a thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.run, name="shoal-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30.0
        while not self._server.started:  # uvicorn offers no event to wait on
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ShoalError("the HTTP server did not start")
            self._thread.join(0.01)

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, return when the server is down."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def serve(
    service_config: ServiceConfig,
    http: HttpConfig,
    on_ready: Callable[[ModelService, str], None] = lambda service, url: None,
) -> None:
    """Serve one model until SIGTERM or SIGINT; then shut down gracefully (see the module's doc).

    The signals are caught from the start: one that comes while the service restores and replays
    lets it finish starting and then close as usual, with its snapshot.
    """
    logging.basicConfig(level=logging.WARNING, format="shoal: %(levelname)s: %(message)s")
    server: HttpServer | None = None
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if server is not None:
            server.should_exit = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ModelService(service_config) as service:
            server = HttpServer({service.name: service}, http)
            server.bind()
            if not stopping:
                on_ready(service, server.url)
                server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
