"""Routes as data: a path, a method, a handler and who may call it; what the route sets share.

Both HTTP APIs (shoal's JSON API and the Open Inference Protocol) describe their routes as
``Endpoint``s, so that one token check guards them alike and ``app.py`` mounts them alike.
``open`` routes answer anyone, ``predict`` routes need the token only with
``--token-for-predict``, ``admin`` routes need it whenever the server has one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from shoal.serve.config import HttpConfig
from shoal.serve.errors import UnknownModel
from shoal.serve.http.body import authorize
from shoal.serve.learning.offload import Predictions
from shoal.serve.learning.service import ModelService

Access = Literal["open", "predict", "admin"]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    handler: Handler
    access: Access


def guard(endpoint: Endpoint, http: HttpConfig) -> Handler:
    """The handler behind the token check its access asks for.

    Always a new function, even for open routes: the request metrics name a request after its
    route's handler, so two routes must never share one (``/v2/models/{name}/infer`` and its
    versioned twin call the same method).
    """
    needs = endpoint.access == "admin" or (endpoint.access == "predict" and http.token_for_predict)

    async def guarded(request: Request) -> Response:
        if needs:
            authorize(request, http.token)
        return await endpoint.handler(request)

    return guarded


def find_service(services: Mapping[str, ModelService], request: Request) -> ModelService:
    """The service that the path's ``{name}`` names; ``UnknownModel`` (404) otherwise."""
    name = request.path_params["name"]
    service = services.get(name)
    if service is None:
        served = ", ".join(repr(n) for n in services) or "none"
        raise UnknownModel(f"no model named {name!r} is served here (served: {served})")
    return service


class Routes:
    """A set of routes over the served models (a service per model name), with the app's HTTP
    settings and the gathering of small predictions that all of an app's routes share."""

    def __init__(
        self,
        services: Mapping[str, ModelService],
        http: HttpConfig,
        predictions: Predictions | None = None,
    ) -> None:
        self.services = services
        self.http = http
        self.predictions = predictions or Predictions()  # shared by an app's front ends

    def endpoints(self) -> list[Endpoint]:
        raise NotImplementedError
