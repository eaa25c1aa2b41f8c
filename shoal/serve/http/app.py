"""The HTTP app: routes, the table from errors to status codes, request metrics.

``build_app`` takes running services and returns a Starlette (ASGI) app; the server (or a test)
owns the services' lifecycles, so the app has no lifespan of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.errors import ConfigError, DataError, ModelFileError, ShoalError
from shoal.serve.config import HttpConfig
from shoal.serve.errors import (
    EventExpired,
    FeedbackConflict,
    NotFound,
    PayloadTooLarge,
    ReadOnly,
    RequestError,
    RequestTimeout,
    StateDirError,
    Unauthorized,
    Unavailable,
)
from shoal.serve.http import openapi
from shoal.serve.http.api import JsonApi
from shoal.serve.http.connections import InFlight
from shoal.serve.http.endpoints import guard
from shoal.serve.http.oip import OpenInference
from shoal.serve.http.status import STATUS_PAGE
from shoal.serve.learning.offload import Predictions
from shoal.serve.learning.service import ModelService
from shoal.serve.metrics import Metrics

# The one place where errors become HTTP statuses (the most specific class in an error's MRO
# wins). Bad input of any kind is a 4xx; a bare ShoalError here is a bug in typing an error.
ERROR_STATUS: dict[type[Exception], int] = {
    RequestError: 400,
    DataError: 400,
    ConfigError: 400,
    ModelFileError: 400,
    Unauthorized: 401,
    ReadOnly: 403,
    NotFound: 404,
    RequestTimeout: 408,
    FeedbackConflict: 409,
    EventExpired: 410,
    PayloadTooLarge: 413,
    Unavailable: 503,
    StateDirError: 503,
    ShoalError: 500,
}


def status_of(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


async def _shoal_error(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:  # shutting down, or a learner process restarting: worth a retry
        headers = {"Retry-After": "1"}
    if status == 408:  # the rest of the body may never come: close the connection
        headers = {"Connection": "close"}
    return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


class _Observe:
    """Counts and times every request under its route's path template (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, names: dict[Any, str]) -> None:
        self.app, self.metrics, self.names = app, metrics, names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            name = self.names.get(scope.get("endpoint"), "other")  # the router set "endpoint"
            self.metrics.observe(name, scope["method"], status, time.perf_counter() - start)


def build_app(
    services: Mapping[str, ModelService], http: HttpConfig, metrics: Metrics | None = None
) -> Starlette:
    """The app over running services; ``metrics`` when another server (TCP) counts in them too."""
    predictions = Predictions()  # small predictions of both APIs batched per loop turn
    endpoints = [
        *JsonApi(services, http, predictions).endpoints(),
        *OpenInference(services, http, predictions).endpoints(),
    ]
    metrics = metrics or Metrics(services)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        ok = bool(services) and all(s.ready for s in services.values())
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def spec(request: Request) -> JSONResponse:
        return JSONResponse(openapi.document())

    async def status(request: Request) -> HTMLResponse:
        return HTMLResponse(STATUS_PAGE)

    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/", status, methods=["GET"]),
    ]
    routes += [Route(e.path, guard(e, http), methods=[e.method]) for e in endpoints]
    names = {r.endpoint: r.path for r in routes}
    handlers: dict[Any, Any] = {cls: _shoal_error for cls in ERROR_STATUS}
    handlers[HTTPException] = _http_error
    handlers[Exception] = _internal_error
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(_Observe, metrics=metrics, names=names),
            Middleware(InFlight, limit=http.max_connections),
        ],
        exception_handlers=handlers,
    )
