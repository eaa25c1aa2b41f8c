"""The Open Inference Protocol (v2, KServe and Triton's REST API) over the served models.

Routes: server metadata (``GET /v2``), model metadata, model readiness and inference
(``/v2/models/{name}[/versions/{version}][/ready|/infer]``), with the binary tensor data
extension (``tensors.py``), so that Triton's and KServe's clients work as they are; and
Triton's model configuration (``.../config``), which its tools ask for.

How shoal reads tensors (each holds one element per record, shape ``[N]`` or ``[N, 1]``):

- the BYTES input ``lines`` holds whole records as text -- Vowpal Wabbit lines, or for a model
  with a column schema rows of its table (``rows.py``) -- and comes alone;
- any other input is a feature named after it, as the JSON API's objects are: a number ``x``
  in input ``NAME`` is the feature ``NAME:x``, a string ``v`` is ``NAME=v``; ``NS.NAME`` is that
  feature in namespace ``NS``. For a model with a column schema each input is a column (or
  ``NS.NAME``, its column in namespace NS), and the columns become rows of its table a tensor
  at a time; an input that names no column is an error (the request's parameter
  ``ignore_unknown``, or ``--ignore-unknown``, drops it). Tensors cannot hold null, so an empty
  string or a NaN is a missing value.

Model metadata also says what the model computes (``parameters``: ``model``, linear, fm or
ffm, with an FM's ``rank`` and an FFM's ``fields``).

Outputs: the prediction (``probability`` FP32 for logistic loss, ``class`` INT64 1..K for
multiclass, else ``prediction`` FP32) and ``event_id`` (BYTES), the id that the JSON API's
``/feedback`` takes. Only the live version answers: a version in the URL must be it.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shoal._version import __version__
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.serve.errors import RequestError, UnknownVersion
from shoal.serve.http.body import INLINE_BYTES, read_body
from shoal.serve.http.endpoints import Endpoint, Routes, find_service
from shoal.serve.http.jsondata import Elements
from shoal.serve.http.jsondata import rows as scanned_rows
from shoal.serve.http.tensors import (
    DATATYPES,
    HEADER,
    InferRequest,
    Output,
    Tensor,
    decode_request,
    encode_response,
)
from shoal.serve.learning.service import ModelService
from shoal.serve.reading.records import check_word
from shoal.serve.reading.rows import Rows, rows_of
from shoal.serve.reading.scoring import Prediction

LINES = "lines"  # the input of whole VW lines
EVENT_ID = "event_id"  # the output of event ids
_PREDICTION = {"logistic": ("probability", "FP32"), "multiclass": ("class", "INT64")}
_TRITON_TYPE = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}
EXTENSIONS = ["binary_tensor_data"]
# the one type of the elements of a tensor of these datatypes, however sent (tensors.py)
_TYPES = {"BYTES": str, **{d: int for d in DATATYPES if d.startswith(("INT", "UINT"))}}


class OpenInference(Routes):
    """The ``/v2`` routes over a set of services (one per served model)."""

    def endpoints(self) -> list[Endpoint]:
        m = "/v2/models/{name}"
        v = f"{m}/versions/{{version}}"
        return [
            Endpoint("/v2", "GET", self.server_metadata, "open"),
            Endpoint(m, "GET", self.model_metadata, "open"),
            Endpoint(v, "GET", self.model_metadata, "open"),
            Endpoint(f"{m}/config", "GET", self.model_config, "open"),
            Endpoint(f"{v}/config", "GET", self.model_config, "open"),
            Endpoint(f"{m}/ready", "GET", self.model_ready, "open"),
            Endpoint(f"{v}/ready", "GET", self.model_ready, "open"),
            Endpoint(f"{m}/infer", "POST", self.infer, "predict"),
            Endpoint(f"{v}/infer", "POST", self.infer, "predict"),
        ]

    def _service(self, request: Request) -> ModelService:
        """The named model, whose live version must be the URL's version if it gives one."""
        service = find_service(self.services, request)
        asked = request.path_params.get("version")
        live = service.learner.live.version
        if asked is None or (asked.isascii() and asked.isdigit() and int(asked) == live):
            return service
        if any(str(v.version) == asked for v in service.versions()):
            raise UnknownVersion(
                f"version {asked} of model {service.name!r} is kept but not live: only the live "
                f"version {live} answers (POST /v1/models/{service.name}/rollback makes a kept "
                "version live again)"
            )
        raise UnknownVersion(
            f"model {service.name!r} has no version {asked!r}: the live version is {live}"
        )

    # -- handlers --------------------------------------------------------------------------------

    async def server_metadata(self, request: Request) -> JSONResponse:
        return JSONResponse({"name": "shoal", "version": __version__, "extensions": EXTENSIONS})

    async def model_metadata(self, request: Request) -> JSONResponse:
        service = self._service(request)
        live = service.learner.live
        return JSONResponse(
            {
                "name": service.name,
                "versions": [str(live.version)],
                "platform": "shoal",
                "inputs": model_inputs(live.model.spec),
                "outputs": [_meta(n, d) for n, d in model_outputs(live.model.config)],
                "parameters": model_kind(live.model.spec, live.model.config),
            }
        )

    async def model_config(self, request: Request) -> JSONResponse:
        """Triton's model configuration: one element per record, up to ``--max-records``."""
        service = self._service(request)
        live = service.learner.live
        inputs = [(i["name"], i["datatype"]) for i in model_inputs(live.model.spec)]

        def tensors(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
            return [{"name": n, "data_type": _TRITON_TYPE[d], "dims": [1]} for n, d in pairs]

        return JSONResponse({
            "name": service.name, "platform": "shoal", "backend": "shoal",
            "max_batch_size": self.http.max_records,
            "version_policy": {"latest": {"num_versions": 1}},
            "input": tensors(inputs), "output": tensors(model_outputs(live.model.config)),
        })  # fmt: skip

    async def model_ready(self, request: Request) -> JSONResponse:
        """200 when the model answers, else 503 (as ``/v2/health/ready``)."""
        service = find_service(self.services, request)
        if not service.ready:
            return JSONResponse({"name": service.name, "ready": False}, status_code=503)
        self._service(request)  # a version that does not answer is a 404
        return JSONResponse({"name": service.name, "ready": True})

    async def infer(self, request: Request) -> Response:
        service = self._service(request)
        body = await read_body(request, self.http.max_body_bytes, self.http.request_timeout)
        header = request.headers.get(HEADER)
        max_records = self.http.max_records
        if len(body) > INLINE_BYTES:  # a large body is decoded in a thread (the loop goes on)
            infer = await asyncio.to_thread(decode_request, body, header, max_records)
        else:
            infer = decode_request(body, header, max_records)
        model = service.learner.live.model
        wanted = _wanted(infer, model.config)  # before predicting: a typo costs no event ids
        ignore = infer.ignore_unknown or service.config.ignore_unknown
        if model.spec.schema is not None:
            recs = schema_records(infer.inputs, rows_of(model.spec), ignore)
        else:
            recs = tensor_records(infer.inputs)
        try:
            out = await self.predictions(service, recs, len(body))
        except RequestError as exc:
            raise _tensor_error(exc, infer.inputs) from None
        return _response(service.name, infer, out, wanted)


# -- metadata ------------------------------------------------------------------------------------


def _meta(name: str, datatype: str) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [-1]}


def model_inputs(spec: FeatureSpec) -> list[dict[str, Any]]:
    """The inputs that metadata can name: ``lines``, and a model's schema columns. A model
    without a schema takes any feature, so its other inputs cannot be listed."""
    columns = spec.schema.columns if spec.schema is not None else ()
    return [_meta(LINES, "BYTES")] + [
        _meta(c.name, "FP32" if c.role == "num" else "BYTES") for c in columns if c.is_feature
    ]


def model_kind(spec: FeatureSpec, config: LearnerConfig) -> dict[str, Any]:
    """What the model computes, for metadata: ``{"model": "linear"}``, or an FM's rank (and an
    FFM's fields), which a hot swap may change (``POST /v1/models/{name}/load``)."""
    if not config.factorized:
        return {"model": config.model}
    kind: dict[str, Any] = {"model": config.model, "rank": config.rank}
    if spec.fields:
        kind["fields"] = list(spec.fields)
    return kind


def model_outputs(config: LearnerConfig) -> list[tuple[str, str]]:
    """Names and datatypes of a model's outputs: its prediction, then the event ids."""
    return [_PREDICTION.get(config.loss, ("prediction", "FP32")), (EVENT_ID, "BYTES")]


# -- tensors to records --------------------------------------------------------------------------


def tensor_records(tensors: list[Tensor]) -> list[Any]:
    """One record per row for ``ModelService.predict``: the row's VW line, or the JSON API's
    object of the row's elements keyed by input name (``{"NS": {"NAME": x}}`` for ``NS.NAME``).

    >>> u = Tensor("u.id", "BYTES", 2, ["a7", ""])
    >>> tensor_records([u, Tensor("hour", "INT32", 2, [14, 2])])
    [{'u': {'id': 'a7'}, 'hour': 14}, {'u': {'id': None}, 'hour': 2}]
    """
    for k, t in enumerate(tensors):
        if t.name == LINES:
            return _lines(tensors, k)
    keys = [_key(t.name, f"inputs[{k}].name") for k, t in enumerate(tensors)]
    plain = {key[0] for key in keys if len(key) == 1}
    for k, key in enumerate(keys):
        if len(key) == 2 and key[0] in plain:
            raise RequestError(
                f"inputs[{k}].name",
                f"namespace {key[0]!r} is also the name of another input's feature",
            )
    columns_of_values = [_feature_values(t) for t in tensors]
    return [_record(keys, row) for row in zip(*columns_of_values, strict=True)]


def schema_records(tensors: list[Tensor], rows: Rows, ignore_unknown: bool) -> list[Any]:
    """The records of a schema model's request: the rows of ``lines``, or the rows that its
    column tensors make, a column at a time (objects, where a value needs its own look).

    >>> from shoal.features.schema import ColumnSchema
    >>> rows = rows_of(FeatureSpec(schema=ColumnSchema.parse("label,n,c:cat")))
    >>> schema_records([Tensor("c", "BYTES", 2, ["a", ""]), Tensor("n", "INT64", 2, [3, 4])],
    ...                rows, ignore_unknown=False)
    [',3,a', ',4,']
    """
    for k, t in enumerate(tensors):
        if t.name == LINES:
            return _lines(tensors, k)
    named: dict[str, Tensor] = {}
    unknown: list[tuple[int, str]] = []
    for k, t in enumerate(tensors):
        column = rows.column_of(t.name)
        if column is None:
            unknown.append((k, t.name))
        elif column in named:
            raise RequestError(
                f"inputs[{k}].name", f"names column {column!r}, as another input does"
            )
        else:
            named[column] = t
    if unknown and not ignore_unknown:
        raise rows.unknown([n for _, n in unknown], f"inputs[{unknown[0][0]}].name", "input")
    n = tensors[0].rows
    scanned = _scanned_rows(rows, named, n)
    if scanned is not None:
        return scanned
    types = {c: _TYPES[t.datatype] for c, t in named.items() if t.datatype in _TYPES}
    fast = rows.of_columns({c: _listed(t.values) for c, t in named.items()}, n, types)
    if fast is not None:
        return fast
    values = [_feature_values(t) for t in named.values()]  # each record on its own
    return [dict(zip(named, row, strict=True)) for row in zip(*values, strict=True)]


def _scanned_rows(rows: Rows, named: dict[str, Tensor], n: int) -> list[str] | None:
    """The rows, written from the request's bytes where every input's JSON ``data`` was read
    by the compiled scan (``jsondata``) and is of a type its column takes as it is: numbers
    for a numeric column, strings or integers for a categorical one; else None."""
    columns: list[Elements | None] = []
    cats: list[bool] = []
    for column in rows.columns:
        t = named.get(column.name) if column.is_feature else None
        if t is not None:
            if not isinstance(t.values, Elements):
                return None
            numeric = column.role == "num"
            taken = t.datatype.startswith("FP") if numeric else t.datatype == "BYTES"
            if not (taken or _TYPES.get(t.datatype) is int):
                return None
        columns.append(None if t is None else t.values)  # type: ignore[arg-type]
        cats.append(t is not None and column.role != "num")
    if all(c is None for c in columns):
        return None
    return scanned_rows(columns, cats, n, rows.sep)


def _listed(values: Sequence[Any]) -> Sequence[Any]:
    """Elements still held as the request's bytes, as the list of their values."""
    return values.values if isinstance(values, Elements) else values


def _lines(tensors: list[Tensor], k: int) -> list[Any]:
    if len(tensors) > 1:
        raise RequestError(
            f"inputs[{k}].name",
            f"{LINES!r} holds whole VW lines: send it alone (every other input is a feature)",
        )
    if tensors[k].datatype != "BYTES":
        raise RequestError(
            f"inputs[{k}].datatype", f"{LINES!r} holds VW lines: BYTES, not {tensors[k].datatype}"
        )
    return list(tensors[k].values)


def _key(name: str, field: str) -> tuple[str, ...]:
    """Where an input's elements go in a record: ``NS.NAME``, or a plain feature."""
    ns, dot, feature = name.partition(".")
    if not dot:
        return (check_word(name, field, "feature name"),)
    return (check_word(ns, field, "namespace name"), check_word(feature, field, "feature name"))


def _feature_values(tensor: Tensor) -> list[Any]:
    """Elements as the JSON API's values: booleans as 0 and 1, empty strings and NaN as null."""
    if tensor.datatype == "BOOL":
        return [int(v) for v in tensor.values]
    if tensor.datatype == "BYTES":
        return [v or None for v in tensor.values]
    if tensor.datatype.startswith("FP"):
        return [None if math.isnan(v) else v for v in tensor.values]
    return list(tensor.values)


def _record(keys: list[tuple[str, ...]], row: tuple[Any, ...]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in zip(keys, row, strict=True):
        if len(key) == 1:
            record[key[0]] = value
        else:
            record.setdefault(key[0], {})[key[1]] = value
    return record


_RECORD_FIELD = re.compile(r"records\[(\d+)\](?:\.(.+))?")


def _tensor_error(exc: RequestError, tensors: list[Tensor]) -> RequestError:
    """The service's ``records[i].NAME: ...`` as the element of the input it came from."""
    m = _RECORD_FIELD.fullmatch(exc.field)
    if m is None:
        return exc
    row, name = m[1], m[2] or LINES
    k = next((k for k, t in enumerate(tensors) if t.name == name), None)
    return RequestError(
        f"inputs[{k}].data[{row}]" if k is not None else f"inputs, row {row}", exc.problem
    )


# -- outputs -------------------------------------------------------------------------------------


def _wanted(infer: InferRequest, config: LearnerConfig) -> list[tuple[str, str, bool]]:
    """Name, datatype and binary flag of each output to send, in the request's order."""
    offered = dict(model_outputs(config))
    if infer.outputs is None:
        return [(name, datatype, infer.binary_output) for name, datatype in offered.items()]
    for k, o in enumerate(infer.outputs):
        if o.name not in offered:
            raise RequestError(
                f"outputs[{k}].name",
                f"{o.name!r} is not an output of this model (its outputs: {', '.join(offered)})",
            )
    return [(o.name, offered[o.name], o.binary) for o in infer.outputs]


def _response(
    name: str, infer: InferRequest, out: Prediction, wanted: list[tuple[str, str, bool]]
) -> Response:
    head: dict[str, Any] = {"model_name": name, "model_version": str(out.version)}
    if infer.id is not None:
        head["id"] = infer.id
    outputs = [
        Output(n, d, out.event_ids if n == EVENT_ID else out.values, binary)
        for n, d, binary in wanted
    ]  # every output but the event ids is the prediction
    body, header_length = encode_response(head, outputs)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body, media_type="application/octet-stream", headers={HEADER: str(header_length)}
    )
