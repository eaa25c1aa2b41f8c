"""Reading HTTP requests: the JSON body under a size limit, its fields, the bearer token.

Everything here raises the server's typed errors; ``app.py`` turns them into responses.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from concurrent.futures import Future
from typing import Any, TypeVar

from starlette.requests import Request

from shoal.serve.errors import PayloadTooLarge, RequestError, Unauthorized, Unavailable

T = TypeVar("T")


def _no_constants(name: str) -> Any:
    raise RequestError("body", f"{name} is not a JSON number")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes: the limit is {limit} (--max-body-bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes (--max-body-bytes)")
    if not body.strip():
        raise RequestError("body", "empty: expected a JSON object")
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise RequestError("body", "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError("body", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise RequestError("body", "nested too deeply") from None
    if not isinstance(value, dict):
        raise RequestError("body", f"expected a JSON object, got {type(value).__name__}")
    return value


def field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise RequestError(name, "missing")
    return body[name]


def records(body: dict[str, Any], limit: int) -> list[Any]:
    """The ``records`` list: non-empty, at most ``limit`` long (413 beyond)."""
    value = field(body, "records")
    if not isinstance(value, list) or not value:
        raise RequestError("records", "must be a non-empty list of records")
    if len(value) > limit:
        raise PayloadTooLarge(
            f"records: {len(value)} in one request; the limit is {limit} (--max-records)"
        )
    return value


def wants_wait(request: Request) -> bool:
    value = request.query_params.get("wait", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise RequestError("wait", f"must be true or false, got {value!r}")
    return value in ("true", "1")


def authorize(request: Request, token: str | None) -> None:
    """Raise ``Unauthorized`` unless the request carries ``Authorization: Bearer TOKEN``."""
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    ok = hmac.compare_digest(given.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not ok:
        raise Unauthorized("this endpoint needs the header 'Authorization: Bearer TOKEN'")


async def result(fut: Future[T], timeout: float | None = None, what: str = "") -> T:
    """Await a thread's future; a client that goes away or a timeout does not cancel the work."""
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout)
    except TimeoutError:
        raise Unavailable(f"{what} took more than {timeout:g} s") from None
