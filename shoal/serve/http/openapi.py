"""The OpenAPI 3.1 document of the HTTP API, written by hand to say what the routes do.

A test checks that its paths and methods are exactly the app's routes.
"""

from __future__ import annotations

from typing import Any

from shoal._version import __version__
from shoal.serve.http.tensors import DATATYPES, HEADER

_ERROR = {"$ref": "#/components/schemas/Error"}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the served model's name (the model file's stem unless --name)",
}
_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "answer once the learner applied the event(s), or with applied: false after "
    "the wait timeout (the event is durable either way)",
}
_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]

_FEATURES = {
    "type": "object",
    "description": "a record as JSON: a number under NAME is the feature NAME:value, a string "
    "is NAME=value, null is missing; a nested object is a namespace of such features",
    "additionalProperties": {
        "anyOf": [
            {"type": ["number", "string", "null"]},
            {"type": "object", "additionalProperties": {"type": ["number", "string", "null"]}},
        ]
    },
}
_VW_LINE = {
    "type": "string",
    "pattern": "^[^\\r\\n]*\\S[^\\r\\n]*$",  # one line, not blank
    "description": "one record in Vowpal Wabbit text format",
}
_VERSION = {
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "applied_seq": {"type": "integer", "description": "the last event the version holds"},
        "created": {"type": "number", "description": "Unix time"},
        "reason": {
            "enum": ["initial", "periodic", "manual", "shutdown", "rollback", "load", "recovered"]
        },
        "source": {"type": "string"},
        "examples_learned": {"type": "integer"},
        "bytes": {"type": "integer"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


_IGNORE_UNKNOWN = {
    "type": "boolean",
    "description": "drop the fields that name no column of a schema model (default: a 400)",
}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    body: Any = None,
    params: tuple[dict[str, Any], ...] = (_NAME,),
    admin: bool = False,
    limited: bool = True,
) -> dict[str, Any]:
    """An operation; ``limited``: counted in the requests in flight (503 past the limit)."""
    op: dict[str, Any] = {"summary": summary, "parameters": list(params)}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
        errors = (*errors, 408)
    if limited:
        errors = (*errors, 503)
    op["responses"] = {"200": {"description": "OK", **_json(ok)}}
    for code in sorted(set(errors)):
        op["responses"][str(code)] = {"description": _ERRORS[code], **_json(_ERROR)}
    if admin:
        op["security"] = _ADMIN
    return op


_ERRORS = {
    400: "malformed request: the message names the field",
    401: "the server has a token and the request lacks 'Authorization: Bearer TOKEN'",
    404: "no such model, event id or kept version (or the URL's version is not the live one)",
    408: "the body took more than --request-timeout to come",
    409: "the event already received its feedback",
    410: "the event's features expired (--feedback-ttl), or were not kept "
    "(--feedback-buffer-bytes)",
    413: "body over --max-body-bytes or more records than --max-records",
    503: "shutting down, the learner stopped, a wait timed out, a snapshot could not be "
    "written, or too many requests are in flight (--max-connections)",
}
_BODY_ERRORS = (400, 404, 413, 503)
_ADMIN_ERRORS = (400, 401, 404, 413, 503)

# -- the Open Inference Protocol (v2) ------------------------------------------------------------

_MODEL_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "must be the live version: only it answers (POST .../rollback makes a kept "
    "version live again)",
}
_HEADER_LENGTH = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "binary tensor data extension: the body is this many bytes of JSON, then the "
    "binary data of the inputs that give parameters.binary_data_size, in order",
}
_TENSOR_META = _obj(
    ["name", "datatype", "shape"],
    name={"type": "string"},
    datatype={"enum": list(DATATYPES)},
    shape={"type": "array", "items": {"type": "integer"}, "description": "-1: any length"},
)
_SHAPE = {
    "type": "array",
    "minItems": 1,
    "maxItems": 2,
    "prefixItems": [{"type": "integer", "minimum": 1}, {"const": 1}],
    "items": {"type": "integer", "minimum": 0},
    "description": "[N] or [N, 1]: one element per record, the same N in every input",
}
_ELEMENTS = {
    "type": "array",
    "description": "the elements, flat or nested as the shape; BYTES elements are strings",
}
_INFER_REQUEST = _obj(
    ["inputs"],
    id={"type": "string", "description": "echoed in the response"},
    parameters=_obj([], binary_data_output={"type": "boolean", "default": False}),
    inputs={
        "type": "array",
        "minItems": 1,
        "items": _obj(
            ["name", "shape", "datatype"],
            name={
                "type": "string",
                "description": "'lines' (BYTES, alone): whole VW lines; else a feature: NAME, "
                "NS.NAME (namespace NS), or a column of the model's schema. A number x is "
                "NAME:x, a string v is NAME=v; an empty string or NaN is missing",
            },
            shape=_SHAPE,
            datatype={"enum": list(DATATYPES)},
            parameters=_obj([], binary_data_size={"type": "integer", "minimum": 0}),
            data=_ELEMENTS,
        ),
    },
    outputs={
        "type": "array",
        "description": "the outputs to send (default: all of them)",
        "items": _obj(
            ["name"],
            name={"enum": ["probability", "class", "prediction", "event_id"]},
            parameters=_obj([], binary_data={"type": "boolean"}),
        ),
    },
)
_INFER_RESPONSE = _obj(
    ["model_name", "model_version", "outputs"],
    model_name={"type": "string"},
    model_version={"type": "string"},
    id={"type": "string"},
    outputs={
        "type": "array",
        "description": "probability (FP32, logistic loss), class (INT64 1..K, multiclass) or "
        "prediction (FP32, other losses); event_id (BYTES): the id that .../feedback takes",
        "items": _obj(
            ["name", "datatype", "shape"],
            name={"type": "string"},
            datatype={"enum": ["FP32", "INT64", "BYTES"]},
            shape=_SHAPE,
            parameters=_obj([], binary_data_size={"type": "integer"}),
            data=_ELEMENTS,
        ),
    },
)
_BINARY_BODY = {"schema": {"description": f"{HEADER} bytes of JSON, then the tensors' binary data"}}


def _infer(params: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The inference operation: a JSON body, or JSON then binary tensor data, each way."""
    op = _op(
        "predict: Open Inference Protocol tensors in, tensors out",
        _INFER_RESPONSE,
        (*_BODY_ERRORS, 401),
        body=_INFER_REQUEST,
        params=(*params, _HEADER_LENGTH),
    )
    op["requestBody"]["content"]["application/octet-stream"] = _BINARY_BODY
    ok = op["responses"]["200"]
    ok["content"]["application/octet-stream"] = _BINARY_BODY
    ok["headers"] = {
        HEADER: {
            "schema": {"type": "integer"},
            "description": "with binary outputs: the length of the JSON before their data",
        }
    }
    return op


_CONFIG_TENSOR = _obj(
    ["name", "data_type", "dims"],
    name={"type": "string"},
    data_type={"type": "string"},
    dims={"type": "array", "items": {"type": "integer"}},
)
_CONFIG = _obj(
    ["name", "platform", "max_batch_size", "input", "output"],
    name={"type": "string"},
    platform={"const": "shoal"},
    backend={"const": "shoal"},
    max_batch_size={"type": "integer", "description": "--max-records"},
    version_policy={"type": "object"},
    input={"type": "array", "items": _CONFIG_TENSOR},
    output={"type": "array", "items": _CONFIG_TENSOR},
)


def _oip_paths() -> dict[str, Any]:
    m = "/v2/models/{name}"
    v = f"{m}/versions/{{version}}"
    model = _obj(
        ["name", "versions", "platform", "inputs", "outputs", "parameters"],
        name={"type": "string"},
        versions={"type": "array", "items": {"type": "string"}, "description": "the live one"},
        platform={"const": "shoal"},
        inputs={"type": "array", "items": _TENSOR_META},
        outputs={"type": "array", "items": _TENSOR_META},
        parameters=_obj(
            ["model"],
            model={"enum": ["linear", "fm", "ffm"]},
            rank={"type": "integer", "description": "fm, ffm: numbers per latent vector"},
            fields={
                "type": "array",
                "items": {"type": "string"},
                "description": "ffm: each field's namespace letters",
            },
        ),
    )
    ready = _obj(["name", "ready"], name={"type": "string"}, ready={"type": "boolean"})
    paths: dict[str, Any] = {
        "/v2": {
            "get": _op(
                "server metadata",
                _obj(
                    ["name", "version", "extensions"],
                    name={"const": "shoal"},
                    version={"type": "string"},
                    extensions={"type": "array", "items": {"type": "string"}},
                ),
                (),
                params=(),
            )
        }
    }
    for path, params in ((m, (_NAME,)), (v, (_NAME, _MODEL_VERSION))):
        paths[path] = {"get": _op("model metadata", model, (404, 503), params=params)}
        paths[f"{path}/ready"] = {
            "get": _op("200 when the model answers, else 503", ready, (404, 503), params=params)
        }
        paths[f"{path}/infer"] = {"post": _infer(params)}
        paths[f"{path}/config"] = {
            "get": _op("Triton's model configuration", _CONFIG, (404, 503), params=params)
        }
    return paths


def document() -> dict[str, Any]:
    m = "/v1/models/{name}"
    info = _obj(
        ["name", "version", "applied_seq"],
        name={"type": "string"},
        version={"type": "integer"},
        applied_seq={"type": "integer"},
        logged_seq={"type": "integer"},
        examples_learned={"type": "integer"},
        progressive_loss={"type": ["number", "null"]},
        spec={"type": "object"},
        config={"type": "object"},
    )
    learn_record = {
        "anyOf": [
            _VW_LINE,
            _obj(
                ["label", "features"],
                label={"type": "number"},
                features=_FEATURES,
                weight={"type": "number", "minimum": 0},
            ),
            {  # flat, as in JSON-lines files: every other key is a feature
                **_FEATURES,
                "required": ["label"],
                "description": "label, optional weight and tag, and the features beside them",
            },
        ]
    }
    paths = {
        "/v2/health/live": {
            "get": _op(
                "the process is up",
                _obj(["live"], live={"const": True}),
                (),
                params=(),
                limited=False,
            )
        },
        "/v2/health/ready": {
            "get": _op(
                "every model is served and learning",
                _obj(["ready"], ready={"type": "boolean"}),
                (503,),
                params=(),
                limited=False,
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {"get": _op("this document", {"type": "object"}, (), params=())},
        "/": {
            "get": {
                "summary": "a live status page (HTML) drawn from /metrics",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/models": {
            "get": _op(
                "the served models",
                _obj(["models"], models={"type": "array", "items": info}),
                (),
                params=(),
            )
        },
        m: {"get": _op("a model's spec, settings, version and progress", info, (404,))},
        f"{m}/versions": {
            "get": _op(
                "the kept versions",
                _obj(
                    ["current", "versions"],
                    current={"type": "integer"},
                    versions={"type": "array", "items": _VERSION},
                ),
                (404,),
            )
        },
        f"{m}/predict": {
            "post": _op(
                "predict records; each prediction gets an event id for its feedback",
                _obj(
                    ["predictions", "event_ids"],
                    model={"type": "string"},
                    version={"type": "integer"},
                    applied_seq={
                        "type": "integer",
                        "description": "the last event learned before predicting",
                    },
                    predictions={
                        "type": "array",
                        "items": {"type": ["number", "integer"]},
                        "description": "probability (logistic), class 1..K "
                        "(multiclass), else the margin",
                    },
                    event_ids={"type": "array", "items": {"type": "string"}},
                ),
                (*_BODY_ERRORS, 401),
                body=_obj(
                    ["records"],
                    records={
                        "type": "array",
                        "minItems": 1,
                        "items": {"anyOf": [_VW_LINE, _FEATURES]},
                    },
                    ignore_unknown=_IGNORE_UNKNOWN,
                ),
            )
        },
        f"{m}/learn": {
            "post": _op(
                "log labeled records durably, then learn them in order",
                _obj(
                    ["seqs", "applied"],
                    seqs={"type": "array", "items": {"type": "integer"}},
                    applied={"type": "boolean"},
                ),
                _ADMIN_ERRORS,
                admin=True,
                params=(_NAME, _WAIT),
                body=_obj(
                    ["records"],
                    records={"type": "array", "minItems": 1, "items": learn_record},
                    ignore_unknown=_IGNORE_UNKNOWN,
                ),
            )
        },
        f"{m}/feedback": {
            "post": _op(
                "learn a prediction's features with its label, as the labeled record would",
                _obj(["seq", "applied"], seq={"type": "integer"}, applied={"type": "boolean"}),
                (*_ADMIN_ERRORS, 409, 410),
                admin=True,
                params=(_NAME, _WAIT),
                body=_obj(
                    ["event_id", "label"],
                    event_id={"type": "string", "minLength": 1, "maxLength": 64},
                    label={"type": "number"},
                    weight={"type": "number", "minimum": 0},
                ),
            )
        },
        f"{m}/snapshot": {
            "post": _op(
                "write a version of the live model now", _VERSION, (401, 404, 503), admin=True
            )
        },
        f"{m}/rollback": {
            "post": _op(
                "make a kept version live again (as a new version)",
                _VERSION,
                _ADMIN_ERRORS,
                admin=True,
                body=_obj(["version"], version={"type": "integer"}),
            )
        },
        f"{m}/load": {
            "post": _op(
                "swap in a model file on the server (same loss and classes) as a new version",
                _VERSION,
                _ADMIN_ERRORS,
                admin=True,
                body=_obj(
                    ["path"],
                    path={
                        "type": "string",
                        "minLength": 1,
                        "description": "a model file in --models-dir (default: the served "
                        "model's folder), by name or absolute path",
                    },
                ),
            )
        },
    }
    paths.update(_oip_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shoal serve",
            "version": __version__,
            "description": "Online learning and prediction with a shoal model",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _obj(["error"], error={"type": "string"})},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
