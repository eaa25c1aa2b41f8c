"""Reading HTTP requests: the body under a size limit (plain or compressed), JSON, its fields,
the bearer token.

Everything here raises the server's typed errors; ``app.py`` turns them into responses.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from starlette.requests import Request

from shoal.serve.errors import (
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)

T = TypeVar("T")


class _NoConstant(ValueError):
    """NaN or Infinity where JSON has no such number."""


def _no_constant(name: str) -> Any:
    raise _NoConstant(name)


# one decoder each, made once: json.loads with options builds a new one per call
_DECODERS = {
    True: json.JSONDecoder(parse_constant=float),
    False: json.JSONDecoder(parse_constant=_no_constant),
}


INLINE_BYTES = 64 << 10  # bodies up to this size are parsed on the event loop, larger in a thread


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The body's bytes, decoded from its Content-Encoding; 413 past ``limit`` bytes as sent or
    as decoded (read no further than that, so a client cannot make the server hold more); 408
    if it takes more than ``timeout`` seconds to come (a client cannot hold a slot forever)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 19 or int(declared) > limit):
        raise PayloadTooLarge(f"body of {declared[:30]} bytes: the limit is {limit} "
                              "(--max-body-bytes)")  # fmt: skip
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(f"body over {limit} bytes (--max-body-bytes)")
    except TimeoutError:
        raise RequestTimeout(
            f"the request's body took more than {timeout:g} s to come (--request-timeout)"
        ) from None
    return _decoded(bytes(body), request.headers.get("content-encoding", ""), limit)


# Content codings a client may compress a body with (RFC 9110 8.4.1), as zlib's window bits.
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def _decoded(body: bytes, coding: str, limit: int) -> bytes:
    """``body`` inflated per its Content-Encoding, never past ``limit`` bytes (a zip bomb is
    a 413 after ``limit + 1`` bytes of work, not an exhausted server)."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in _WBITS:
        raise RequestError(
            "Content-Encoding", f"{coding!r} is not supported: send gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(_WBITS[coding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError("body", f"not valid {coding} data ({exc})") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes once decompressed (--max-body-bytes)")
    if not inflater.eof or inflater.unused_data:
        raise RequestError("body", f"{coding} data is truncated or followed by other bytes")
    return out


def parse_json(data: bytes, field: str = "body", *, constants: bool = False) -> dict[str, Any]:
    """``data`` as a JSON object; RequestError naming ``field`` otherwise. NaN and Infinity,
    which JSON lacks, are refused unless ``constants`` (Triton's client writes them)."""
    if not data.strip():
        raise RequestError(field, "empty: expected a JSON object")
    try:
        value = _DECODERS[constants].decode(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(field, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(field, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise RequestError(field, "nested too deeply") from None
    except _NoConstant as exc:
        raise RequestError(field, f"{exc} is not a JSON number") from None
    except ValueError:  # Python's limit on the digits of an integer (sys.get_int_max_str_digits)
        raise RequestError(
            field, "holds an integer of more than 4300 digits: no number of a model has them"
        ) from None
    if not isinstance(value, dict):
        raise RequestError(field, f"expected a JSON object, got {type(value).__name__}")
    return value


async def read_json(
    request: Request, limit: int, timeout: float | None = None
) -> tuple[dict[str, Any], int]:
    """The body as a JSON object, and its size in bytes; 413 past ``limit`` bytes. A large body
    is parsed in a thread: the event loop goes on answering others meanwhile."""
    data = await read_body(request, limit, timeout)
    return await off_loop(parse_json, data), len(data)


async def off_loop(call: Callable[[bytes], T], data: bytes) -> T:
    """``call(data)`` on the event loop for a small body, else in a thread (the loop goes on
    answering others meanwhile)."""
    if len(data) > INLINE_BYTES:
        return await asyncio.to_thread(call, data)
    return call(data)


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
