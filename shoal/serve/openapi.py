"""The OpenAPI 3.1 document of the HTTP API, written by hand to say what the routes do.

A test checks that its paths and methods are exactly the app's routes.
"""

from __future__ import annotations

from typing import Any

from shoal._version import __version__

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
_VW_LINE = {"type": "string", "description": "one record in Vowpal Wabbit text format"}
_VERSION = {
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "applied_seq": {"type": "integer", "description": "the last event the version holds"},
        "created": {"type": "number", "description": "Unix time"},
        "reason": {"enum": ["initial", "periodic", "manual", "shutdown", "rollback", "load"]},
        "source": {"type": "string"},
        "examples_learned": {"type": "integer"},
        "bytes": {"type": "integer"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


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
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": list(params)}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    op["responses"] = {"200": {"description": "OK", **_json(ok)}}
    for code in errors:
        op["responses"][str(code)] = {"description": _ERRORS[code], **_json(_ERROR)}
    if admin:
        op["security"] = _ADMIN
    return op


_ERRORS = {
    400: "malformed request: the message names the field",
    401: "the server has a token and the request lacks 'Authorization: Bearer TOKEN'",
    404: "no such model, event id or kept version",
    409: "the event already received its feedback",
    410: "the event's features expired (--feedback-ttl)",
    413: "body over --max-body-bytes or more records than --max-records",
    503: "shutting down, the learner stopped, or a wait timed out",
}
_BODY_ERRORS = (400, 404, 413, 503)
_ADMIN_ERRORS = (400, 401, 404, 413, 503)


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
        ]
    }
    paths = {
        "/v2/health/live": {
            "get": _op("the process is up", _obj(["live"], live={"const": True}), (), params=())
        },
        "/v2/health/ready": {
            "get": _op(
                "every model is served and learning",
                _obj(["ready"], ready={"type": "boolean"}),
                (503,),
                params=(),
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
                    ["records"], records={"type": "array", "minItems": 1, "items": learn_record}
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
                    event_id={"type": "string"},
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
                body=_obj(["path"], path={"type": "string"}),
            )
        },
    }
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
