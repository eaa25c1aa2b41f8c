"""Fixtures for the server's tests: a base model trained offline, the real server on a loopback
port (in this process, with an injectable clock), HTTP and TCP on one event loop as ``shoal
serve`` runs them, and the offline reference for comparisons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal import FeatureSpec, LearnerConfig, Model, TrainOptions, train
from shoal.serve import (
    Background,
    HttpConfig,
    HttpServer,
    ModelService,
    ServiceConfig,
    TcpConfig,
)
from shoal.serve.http.server import front_ends
from tests.serve.helpers import BASE, Clock, LineClient, live_model, tcp_address


@pytest.fixture
def base_model(tmp_path: Path) -> Path:
    model = Model(FeatureSpec(bits=10, interactions=("uv",)), LearnerConfig(loss="logistic"))
    data = tmp_path / "base.vw"
    data.write_text("".join(r + "\n" for r in BASE))
    train(model, [data], TrainOptions(parse_threads=1))
    path = tmp_path / "ctr.shoal"
    model.save(path)
    return path


@dataclass
class Running:
    service: ModelService
    server: HttpServer
    client: httpx.Client
    clock: Clock
    state_dir: Path
    token: str | None
    stopped: bool = False

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {**self.auth, **kw.pop("headers", {})}
        return self.client.post(f"/v1/models/ctr{path}", json=body, headers=headers, **kw)

    def get(self, path: str = "") -> httpx.Response:
        return self.client.get(f"/v1/models/ctr{path}")

    def live_model(self) -> Model:
        """The live model, once every logged event is in it."""
        return live_model(self.service)

    def stop(self) -> None:
        self.stopped = True
        self.client.close()
        self.server.stop()
        self.service.close()


@pytest.fixture
def start(tmp_path: Path, base_model: Path) -> Iterator[Callable[..., Running]]:
    """Start the service and its HTTP server on 127.0.0.1 (any free port)."""
    running: list[Running] = []

    def _start(state: str = "state", token: str | None = "s3cret", **kw: Any) -> Running:
        http_keys = {f for f in HttpConfig.__dataclass_fields__ if f in kw}
        http = HttpConfig(port=0, token=token, **{k: kw.pop(k) for k in http_keys})
        clock = Clock()
        config = ServiceConfig(model_path=str(kw.pop("model", base_model)),
                               state_dir=str(tmp_path / state), **kw)  # fmt: skip
        service = ModelService(config, clock=clock)
        service.start()
        server = HttpServer({service.name: service}, http)
        server.bind()
        server.start()
        r = Running(service, server, httpx.Client(base_url=server.url, timeout=30), clock,
                    tmp_path / state, token)  # fmt: skip
        running.append(r)
        return r

    yield _start
    for r in running:
        if not r.stopped:
            r.stop()


@dataclass
class Both:
    """A service with its HTTP and TCP front ends on one event loop in a thread."""

    service: ModelService
    background: Background
    http: httpx.Client
    address: tuple[str, int]  # of the TCP line server

    def connect(self) -> LineClient:
        return LineClient(self.address)

    def live_model(self) -> Model:
        return live_model(self.service)

    def stop(self) -> None:
        self.http.close()
        self.background.stop()
        self.service.close()


@pytest.fixture
def start_both(tmp_path: Path, base_model: Path) -> Iterator[Callable[..., Both]]:
    """Start a service and ``front_ends`` as ``shoal serve --http ... --tcp ...`` does, on
    127.0.0.1 (any free ports); ``model`` and ``TcpConfig`` fields as keywords."""
    running: list[Both] = []

    def _start(model: Path | None = None, **tcp: Any) -> Both:
        state = tmp_path / f"state{len(running)}"
        service = ModelService(ServiceConfig(model_path=str(model or base_model),
                                             state_dir=str(state)))  # fmt: skip
        service.start()
        fronts = front_ends(service, HttpConfig(port=0), TcpConfig(port=0, **tcp))
        background = Background(fronts)
        background.start()
        http_url, tcp_url = (front.url for front in fronts)
        both = Both(service, background, httpx.Client(base_url=http_url, timeout=30),
                    tcp_address(tcp_url))  # fmt: skip
        running.append(both)
        return both

    yield _start
    for both in running:
        both.stop()
