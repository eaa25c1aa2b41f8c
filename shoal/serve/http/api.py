"""shoal's own JSON API: predict, learn, feedback, and the model's versions.

Every route names its model (``/v1/models/{name}/...``) and its access (``endpoints.py``):
predicting is a ``predict`` route, learning and versions are ``admin`` routes. Handlers raise;
``app.py`` maps the errors to status codes.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import PurePath
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from shoal.features.spec import FeatureSpec
from shoal.serve.errors import RequestError, Unauthorized, Unavailable
from shoal.serve.http.body import (
    authorize,
    field,
    off_loop,
    parse_json,
    read_body,
    read_json,
    records,
    result,
    wants_wait,
)
from shoal.serve.http.endpoints import Endpoint, Routes, find_service
from shoal.serve.learning.offload import on_records
from shoal.serve.learning.service import ModelService
from shoal.serve.reading.jsonrows import BodyRows
from shoal.serve.reading.rows import rows_of
from shoal.serve.state.snapshots import Version


class JsonApi(Routes):
    """The ``/v1`` routes over a set of services (one per served model)."""

    def endpoints(self) -> list[Endpoint]:
        m = "/v1/models/{name}"
        return [
            Endpoint("/v1/models", "GET", self.list_models, "open"),
            Endpoint(m, "GET", self.info, "open"),
            Endpoint(f"{m}/versions", "GET", self.versions, "open"),
            Endpoint(f"{m}/predict", "POST", self.predict, "predict"),
            Endpoint(f"{m}/learn", "POST", self.learn, "admin"),
            Endpoint(f"{m}/feedback", "POST", self.feedback, "admin"),
            Endpoint(f"{m}/snapshot", "POST", self.snapshot, "admin"),
            Endpoint(f"{m}/rollback", "POST", self.rollback, "admin"),
            Endpoint(f"{m}/load", "POST", self.load, "admin"),
        ]

    # -- helpers ---------------------------------------------------------------------------------

    def _service(self, request: Request) -> ModelService:
        return find_service(self.services, request)

    async def _body(self, request: Request) -> dict[str, Any]:
        return (await self._sized(request))[0]

    async def _sized(self, request: Request) -> tuple[dict[str, Any], int]:
        """The body, and its size in bytes (which decides where its records are handled)."""
        return await read_json(request, self.http.max_body_bytes, self.http.request_timeout)

    async def _applied(self, service: ModelService, seq: int) -> bool:
        """Wait (up to the wait timeout) for the learner to apply ``seq``. The event is durable
        already, so running out of time is ``applied: false`` in a 200, never an error that a
        client might answer by sending the event again."""
        try:
            await result(service.wait_applied(seq), self.http.wait_timeout, "waiting")
        except Unavailable:
            return False
        return True

    async def _admin(self, fut: Future[Version], what: str) -> Version:
        """A learner command's version; past the wait timeout a 503 (the command still runs)."""
        return await result(fut, self.http.wait_timeout, f"{what} (it goes on; see /versions)")

    # -- handlers --------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> JSONResponse:
        return JSONResponse({"models": [s.info() for s in self.services.values()]})

    async def info(self, request: Request) -> JSONResponse:
        return JSONResponse(self._service(request).info())

    async def versions(self, request: Request) -> JSONResponse:
        """An open route: without the token, the files versions came from are named, not where
        they are on the server."""
        service = self._service(request)
        shown = [v.to_dict() for v in service.versions()]
        try:
            authorize(request, self.http.token)
        except Unauthorized:
            for v in shown:
                v["source"] = PurePath(v["source"]).name
        return JSONResponse({"current": service.learner.live.version, "versions": shown})

    async def predict(self, request: Request) -> JSONResponse:
        service = self._service(request)
        data = await read_body(request, self.http.max_body_bytes, self.http.request_timeout)
        nbytes, limit = len(data), self.http.max_records
        spec = service.learner.live.model.spec
        fast = None
        if spec.schema is not None:  # objects straight to rows, where the kernel reads them
            fast = await off_loop(lambda d: _body_rows(spec, d, limit), data)
        recs: list[Any]
        if fast is not None:
            recs = fast
        else:
            body = await off_loop(parse_json, data)
            recs = records(body, limit)
            if _ignore_unknown(body):  # rare: made into lines here, the usual way skips a step
                recs = await on_records(
                    lambda r: service.lines(r, ignore_unknown=True), recs, nbytes
                )
        out = await self.predictions(service, recs, nbytes)
        return JSONResponse({
            "model": service.name, "version": out.version, "applied_seq": out.applied_seq,
            "predictions": out.values, "event_ids": out.event_ids,
        })  # fmt: skip

    async def learn(self, request: Request) -> JSONResponse:
        service = self._service(request)
        wait = wants_wait(request)
        body, nbytes = await self._sized(request)
        recs = records(body, self.http.max_records)
        ignore = _ignore_unknown(body)
        seqs = await result(
            await on_records(lambda r: service.learn(r, ignore_unknown=ignore), recs, nbytes)
        )
        applied = wait and await self._applied(service, seqs[-1])
        return JSONResponse({"seqs": seqs, "applied": applied})

    async def feedback(self, request: Request) -> JSONResponse:
        service = self._service(request)
        wait = wants_wait(request)
        body = await self._body(request)
        unknown = set(body) - {"event_id", "label", "weight"}
        if unknown:
            raise RequestError("body", f"unknown fields {sorted(unknown)}")
        fut = service.feedback(field(body, "event_id"), field(body, "label"), body.get("weight"))
        seq = await result(fut)
        applied = wait and await self._applied(service, seq)
        return JSONResponse({"seq": seq, "applied": applied})

    async def snapshot(self, request: Request) -> JSONResponse:
        service = self._service(request)
        return JSONResponse((await self._admin(service.snapshot(), "the snapshot")).to_dict())

    async def rollback(self, request: Request) -> JSONResponse:
        service = self._service(request)
        version = field(await self._body(request), "version")
        return JSONResponse(
            (await self._admin(service.rollback(version), "the rollback")).to_dict()
        )

    async def load(self, request: Request) -> JSONResponse:
        service = self._service(request)
        path = field(await self._body(request), "path")
        fut = await run_in_threadpool(service.load, path)
        return JSONResponse((await self._admin(fut, "the load")).to_dict())


def _body_rows(spec: FeatureSpec, data: bytes, limit: int) -> BodyRows | None:
    """The rows of a schema model's request read from its body by one compiled call
    (``jsonrows``), or None for the Python path (``json.loads``, then ``Rows.of_records``)."""
    assert spec.schema is not None
    rows = rows_of(spec).keys.rows(data, limit)
    if rows is None:
        return None
    return BodyRows(rows, spec.schema, lambda: records(parse_json(data), limit))


def _ignore_unknown(body: dict[str, Any]) -> bool:
    """The body's ``ignore_unknown``: drop fields that name no column of the model's schema."""
    value = body.get("ignore_unknown", False)
    if not isinstance(value, bool):
        raise RequestError("ignore_unknown", f"must be true or false, got {value!r}")
    return value
