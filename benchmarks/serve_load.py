"""The load generator of bench_serve.py, run as its own process (never in a server's).

    python benchmarks/serve_load.py JOB.json      # prints one JSON object: the cell's result
    python benchmarks/serve_load.py --echo HOST HTTP_PORT TCP_PORT   # the trivial server

One asyncio loop holds ``connections`` keep-alive connections, each a protocol object that
writes raw bytes from its callbacks: HTTP/1.1 requests encoded once before the clock starts, one
at a time per connection, or VW text lines, one at a time or ``pipeline`` deep. Each connection
runs ``warmup`` seconds unrecorded, then ``duration`` seconds recorded; a request counts if it
started in the recorded window. Every reply is checked: an HTTP status other than 200, a body
without the expected number of predictions in [0, 1], a line whose tag is not the one sent, a
dropped connection, or no reply by the end of the cell is an error, never a fast request.
Several processes can share a cell (``start_at``: a common wall-clock start); bench_serve.py
merges their raw latencies.

``--echo`` answers every HTTP request with one prediction and every line with ``0.5 TAG``: with
it, bench_serve.py measures what this client can do when the server costs (almost) nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import resource
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

GRACE = 5.0  # seconds after the window that a request already sent may still take
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


@dataclass
class Tally:
    """What one cell saw: recorded requests, their records and latencies, and the errors."""

    requests: int = 0
    records: int = 0
    errors: int = 0
    latencies_us: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # the first few errors, in words

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(what[:300])


def dig(doc: Any, path: list[Any]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def check_body(body: bytes, check: dict[str, Any]) -> str:
    """'' when ``body`` holds what ``check`` asks for, else what is wrong.

    ``check``: ``path`` to a value that is either the int ``count`` or a list of ``count``
    items, which must be numbers in [0, 1] when ``prob`` is set.
    """
    try:
        value = dig(json.loads(body), check["path"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"body without {check['path']}: {body[:200]!r}"
    count = check["count"]
    if isinstance(value, int) and not isinstance(value, bool):
        return "" if value == count else f"{value} at {check['path']}, expected {count}"
    if not isinstance(value, list) or len(value) != count:
        return f"expected {count} values at {check['path']}, got {str(value)[:200]}"
    if check.get("prob"):
        for x in value:
            if isinstance(x, list) and len(x) == 1:  # an OIP tensor of shape [N, 1]
                x = x[0]
            if isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= 1:
                return f"{x!r} is not a probability"
    return ""


def check_line(reply: bytes, tag: str, prob: bool) -> str:
    """'' when ``reply`` is ``prediction tag``, else what is wrong."""
    words = reply.split()
    if not words or words[-1].decode("utf-8", "replace") != tag:
        return f"reply {reply[:100]!r} to the line tagged {tag!r}"
    if prob:
        try:
            x = float(words[0])
        except ValueError:
            return f"reply {reply[:100]!r} holds no prediction"
        if not (math.isfinite(x) and 0 <= x <= 1):
            return f"reply {reply[:100]!r}: not a probability"
    return ""


class Clock:
    """The cell's phases on ``time.perf_counter``: warm-up, recorded window, grace."""

    def __init__(self, start: float, warmup: float, duration: float) -> None:
        self.begin = start + warmup
        self.end = self.begin + duration
        self.deadline = self.end + GRACE

    def recorded(self, t: float) -> bool:
        return self.begin <= t < self.end


class Connection(asyncio.Protocol):
    """One connection of a cell, driven by callbacks: a reply is checked and the next request
    written in the same ``data_received`` call, with no coroutine to wake in between.

    ``done`` resolves when the connection stops: ``finished`` once the window is over and every
    reply is in, else the connection was lost (the driver opens a new one).
    """

    def __init__(self, clock: Clock, tally: Tally, first: int) -> None:
        self.clock, self.tally, self.next = clock, tally, first
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished = False
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.abandon(f"connection lost: {exc or 'closed by the server'}")
            self.done.set_result(None)

    def finish(self) -> None:
        self.finished = True
        self.done.set_result(None)
        self.transport.close()

    def send(self) -> None:
        raise NotImplementedError

    def abandon(self, why: str) -> None:
        """Count the recorded requests still waiting for a reply as errors."""
        raise NotImplementedError


class HttpConnection(Connection):
    """Keep-alive HTTP/1.1: one request at a time, the next as soon as the reply is in."""

    def __init__(self, reqs: list[tuple[bytes, int, dict]], *args: Any) -> None:
        super().__init__(*args)
        self.reqs = reqs
        self.current: tuple[bytes, int, dict] | None = None
        self.t0 = 0.0

    def send(self) -> None:
        if time.perf_counter() >= self.clock.end:
            self.current = None
            self.finish()
            return
        self.current = self.reqs[self.next % len(self.reqs)]
        self.next += 1
        self.t0 = time.perf_counter()
        self.transport.write(self.current[0])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.current is None:
            return
        m = _LENGTH.search(self.buf, 0, end + 2)
        if m is None:
            self.abandon(f"reply without content-length: {self.buf[:200]!r}")
            self.transport.abort()
            return
        total = end + 4 + int(m.group(1))
        if len(self.buf) < total:
            return
        t1 = time.perf_counter()
        head, body, self.buf = self.buf[:end], self.buf[end + 4 : total], self.buf[total:]
        _, records, check = self.current
        self.current = None
        if self.clock.recorded(self.t0):
            tally = self.tally
            tally.requests += 1
            status = int(head[9:12])
            wrong = f"status {status}: {body[:200]!r}" if status != 200 else check_body(body, check)
            if wrong:
                tally.error(wrong)
            else:
                tally.records += records
                tally.latencies_us.append(int((t1 - self.t0) * 1e6))
        self.send()

    def abandon(self, why: str) -> None:
        if self.current is not None and self.clock.recorded(self.t0):
            self.tally.requests += 1
            self.tally.error(why)
        self.current = None


class LineConnection(Connection):
    """VW lines: up to ``depth`` of them wait for their reply; once half of the window is
    answered it is refilled in one write (one system call per half window, not per line)."""

    def __init__(self, lines: list[tuple[bytes, str, bool]], depth: int, *args: Any) -> None:
        super().__init__(*args)
        self.lines, self.depth = lines, depth
        self.sent: deque[tuple[float, str, bool]] = deque()

    def send(self) -> None:
        if time.perf_counter() >= self.clock.end:
            if not self.sent:
                self.finish()
            return
        n = self.depth - len(self.sent)
        chunk = [self.lines[(self.next + k) % len(self.lines)] for k in range(n)]
        self.next += n
        t0 = time.perf_counter()
        self.sent.extend((t0, tag, prob) for _, tag, prob in chunk)
        self.transport.write(b"".join(line for line, _, _ in chunk))

    def data_received(self, data: bytes) -> None:
        *replies, self.buf = (self.buf + data).split(b"\n")
        t1 = time.perf_counter()
        tally, sent = self.tally, self.sent
        for reply in replies:
            if not sent:
                tally.error(f"reply {reply[:100]!r} to no line")
                continue
            t0, tag, prob = sent.popleft()
            if not self.clock.recorded(t0):
                continue
            tally.requests += 1
            wrong = check_line(reply, tag, prob)
            if wrong:
                tally.error(wrong)
            else:
                tally.records += 1
                tally.latencies_us.append(int((t1 - t0) * 1e6))
        if len(sent) <= self.depth // 2:
            self.send()

    def abandon(self, why: str) -> None:
        lost = sum(1 for t0, _, _ in self.sent if self.clock.recorded(t0))
        self.tally.requests += lost
        for _ in range(lost):
            self.tally.error(why)
        self.sent.clear()


async def drive(job: dict[str, Any], make: Any, clock: Clock, tally: Tally, first: int) -> None:
    """Keep one connection going for the cell: open it again if the server drops it."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < clock.end:
        try:
            transport, conn = await loop.create_connection(
                partial(make, clock, tally, first), job["host"], job["port"]
            )
        except OSError as exc:
            if clock.recorded(time.perf_counter()):
                tally.requests += 1
                tally.error(f"connect: {exc}")
            await asyncio.sleep(0.01)  # a refused connection must not spin
            continue
        try:
            await asyncio.wait_for(asyncio.shield(conn.done), clock.deadline - time.perf_counter())
        except TimeoutError:
            conn.abandon(f"no reply {GRACE:g} s after the end of the cell")
            transport.abort()
            return
        if conn.finished:
            return
        first = conn.next


def http_requests(job: dict[str, Any]) -> list[tuple[bytes, int, dict]]:
    """Each request of the job as the bytes to write (encoded once, before the clock starts)."""
    host = f"{job['host']}:{job['port']}"
    out = []
    for r in job["requests"]:
        body = r["body"].encode("utf-8")
        head = (f"POST {r['path']} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        out.append((head.encode("ascii") + body, r["records"], r["check"]))
    return out


async def run(job: dict[str, Any]) -> dict[str, Any]:
    conns = job["connections"]
    tally = Tally()
    make: Any
    if job["protocol"] == "http":
        reqs = http_requests(job)
        step = max(1, len(reqs) // conns)
        make = partial(HttpConnection, reqs)
    else:
        lines = [(x["line"].encode("utf-8") + b"\n", x["tag"], x["prob"]) for x in job["lines"]]
        step = max(1, len(lines) // conns)
        make = partial(LineConnection, lines, job["pipeline"])
    # Every process of the cell starts its clock at the same wall-clock instant.
    await asyncio.sleep(max(0.0, job.get("start_at", 0.0) - time.time()))
    clock = Clock(time.perf_counter(), job["warmup"], job["duration"])
    running = [
        asyncio.ensure_future(drive(job, make, clock, tally, c * step)) for c in range(conns)
    ]
    await asyncio.sleep(max(0.0, clock.begin - time.perf_counter()))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(max(0.0, clock.end - time.perf_counter()))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for task in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(task, BaseException):
            tally.error(f"client: {task!r}")
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        "requests": tally.requests,
        "records": tally.records,
        "errors": tally.errors,
        "error_samples": tally.samples,
        "seconds": job["duration"],
        "client_cpu_seconds": cpu,
        "latencies_us": tally.latencies_us,
    }


# -- the trivial server ----------------------------------------------------------------------


_ECHO_BODY = b'{"predictions":[0.5]}'
_ECHO_REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
               + str(len(_ECHO_BODY)).encode() + b"\r\n\r\n" + _ECHO_BODY)  # fmt: skip


class EchoHttp(asyncio.Protocol):
    """Answers each request (head and Content-Length body) with a fixed one-prediction body."""

    def connection_made(self, transport: Any) -> None:
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = _LENGTH.search(self.buf, 0, end + 2)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < total:
                break
            self.buf = self.buf[total:]
            out.append(_ECHO_REPLY)
        if out:
            self.transport.write(b"".join(out))


class EchoLines(asyncio.Protocol):
    """Answers each line with ``0.5 TAG`` (its ``'tag``), as a VW daemon would."""

    def connection_made(self, transport: Any) -> None:
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        *lines, self.buf = (self.buf + data).split(b"\n")
        out = []
        for line in lines:
            head = line.split(b"|", 1)[0].split()
            tags = [w[1:] for w in head if w.startswith(b"'")]
            out.append(b"0.5 " + (tags[0] if tags else b"") + b"\n")
        if out:
            self.transport.write(b"".join(out))


async def echo(host: str, http_port: int, tcp_port: int) -> None:
    loop = asyncio.get_running_loop()
    http = await loop.create_server(EchoHttp, host, http_port, backlog=1024)
    tcp = await loop.create_server(EchoLines, host, tcp_port, backlog=1024)
    async with http, tcp:
        await asyncio.gather(http.serve_forever(), tcp.serve_forever())


def main() -> None:
    if sys.argv[1] == "--echo":
        asyncio.run(echo(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        return
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    print(json.dumps(asyncio.run(run(job))))


if __name__ == "__main__":
    main()
