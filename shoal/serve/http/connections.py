"""HTTP connections that cannot starve the server: a deadline for each request's head, idle
connections closed when too many are open, and a limit on requests in flight, not on sockets.

uvicorn counts open connections against its concurrency limit, so clients that open sockets
and send nothing (or a head, one byte at a time) held every slot, and even the health checks got
503. Here a connection has ``request_timeout`` seconds to send each request's head (then 408 and
closed; uvicorn's keep-alive timeout closes one idle between requests), and when more than
``max_connections`` are open the idle ones -- between requests, or still waiting for a head --
are closed, the oldest first. What is limited is the requests in flight (``InFlight``): past
``max_connections``, a request gets 503 at once, except the health checks, which always answer.
The deadline for a request's body is ``body.read_body``'s.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
ALWAYS = frozenset({"/v2/health/live", "/v2/health/ready"})  # answered however busy


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for request heads (``request_timeout``) and
    idle connections closed past ``max_open``; made by ``protocol(...)``."""

    request_timeout = 30.0
    max_open = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._opened = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        self._arm()
        if len(self.connections) > self.max_open:
            self._close_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._arm()  # the next request's head starts (its deadline runs from here)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.request_timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._between_requests():
            return
        error = {"error": f"the request's head took more than {self.request_timeout:g} s "
                 "(--request-timeout)"}  # fmt: skip
        body = json.dumps(error).encode()
        self.transport.write(_408 % (len(body), body))
        self.transport.close()

    def _close_idle(self) -> None:
        """Close idle connections (the oldest first) until at most ``max_open`` are open; those
        already closing (closed, but not yet told to uvicorn) no longer count."""
        open_ = [c for c in self.connections if not c.transport.is_closing()]
        idle = sorted(
            (c for c in open_
             if isinstance(c, GuardedProtocol) and c is not self and c._between_requests()),
            key=lambda c: c._opened,
        )  # fmt: skip
        for conn in idle[: len(open_) - self.max_open]:
            conn.transport.close()


def protocol(request_timeout: float, max_open: int) -> type[GuardedProtocol]:
    """A ``GuardedProtocol`` class with these settings (uvicorn makes one per connection)."""
    return type(
        "Protocol", (GuardedProtocol,), {"request_timeout": request_timeout, "max_open": max_open}
    )


class InFlight:
    """ASGI middleware: at most ``limit`` requests in flight; past it, 503 at once (the health
    checks are not counted, and always answer)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS:
            await self.app(scope, receive, send)
            return
        if self.count >= self.limit:
            busy = f"the server has {self.count} requests in flight, its limit (--max-connections)"
            body = json.dumps({"error": busy + ": try again shortly"}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", b"1"),
                (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        self.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1
