"""The TCP line server: Vowpal Wabbit's daemon protocol (``lines.py``) on asyncio.

A connection is an asyncio ``Protocol``: what arrives is cut at its last line end and its whole
lines are answered as one block (``lines.answer_block``: one kernel call parses, hashes and
predicts them all) -- a small block at once on the event loop, in the callback that received
it, so a lone line waits for nothing; a large one in a worker thread (the model's work must not
stall the event loop, which also serves HTTP). Answers are written in order, each once its
learned lines are durable; an answer with nothing to wait for, and nothing before it, is
written at once. A connection holds ``_IN_FLIGHT`` answers at most: beyond, it is no longer
read, and TCP's flow control slows the client down; so does a client that does not read its
replies (the transport's write buffer is full). A connection holds at most ``max_line_bytes``
bytes of an unfinished line and a few blocks of replies.

Limits close connections with a last ``error:`` line: a line over ``max_line_bytes``, or a
connection over ``max_connections`` (refused at once: a client that waited unseen in a queue
would look like a hung server). A connection silent for ``idle_timeout`` seconds gets the
replies it is owed and is closed; one that does not read its replies for that long is dropped.

>>> import socket, tempfile, pathlib
>>> from shoal import FeatureSpec, Model
>>> from shoal.serve import Background, ServiceConfig
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> Model(FeatureSpec(bits=8)).save(d / "m.shoal")
>>> with ModelService(ServiceConfig(model_path=str(d / "m.shoal"), state_dir=str(d / "s"))) as s:
...     server = LineServer(s, TcpConfig(port=0), Metrics({s.name: s}))
...     with Background([server]):
...         with socket.create_connection(server.address) as client:
...             client.sendall(b"1 'first | a\\n| a\\n")
...             client.shutdown(socket.SHUT_WR)
...             replies = client.makefile().read()
>>> replies
'0.5 first\\n0.5\\n'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter, deque

from shoal.errors import ShoalError
from shoal.serve import sockets
from shoal.serve.config import TcpConfig
from shoal.serve.errors import RequestError
from shoal.serve.learning.offload import INLINE_RECORDS
from shoal.serve.learning.service import ModelService
from shoal.serve.metrics import Metrics, Tally
from shoal.serve.tcp import lines

log = logging.getLogger(__name__)

_IN_FLIGHT = 4  # answers a connection may hold before it stops reading
_LINGER = 2.0  # seconds a closing connection drops input so that its replies arrive (_linger)


class LineServer:
    """Answers VW lines on TCP for one service, until ``should_exit`` (then drains)."""

    def __init__(self, service: ModelService, config: TcpConfig, metrics: Metrics) -> None:
        self.service = service
        self.config = config
        self.metrics = metrics
        self.sock: socket.socket | None = None
        self.started = False
        self._exit = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[_Connection] = set()
        self.counted = {
            k: Tally(metrics.tcp_lines.labels(k)) for k in ("predicted", "learned", "error")
        }

    def bind(self) -> tuple[str, int]:
        """Listen (not yet accepting), the kernels of the lines' path loaded first."""
        with contextlib.suppress(ShoalError):  # no model yet (a front end before the learner
            lines.warm_up(self.service._live_model())  # publishes): its first block loads them
        self.sock = sockets.listen(self.config.host, self.config.port, "--tcp")
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None, "bind() first"
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        assert self.sock is not None, "bind() first"
        return f"tcp://{sockets.address(self.sock)}"

    @property
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set to stop (from any thread, or a signal handler): ``serve()`` drains and returns."""
        self._exit = value
        loop, stop = self._loop, self._stop
        if value and loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(stop.set)

    async def serve(self) -> None:
        """Answer until ``should_exit``; then stop accepting, let each connection finish the
        lines it has read (for ``graceful_timeout`` seconds at most), and close them."""
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # after _stop: the setter needs both
        server = await self._loop.create_server(lambda: _Connection(self), sock=self.sock)
        self.started = True
        try:
            if not self._exit:  # else it was set before the setter could see the loop
                await self._stop.wait()
        finally:
            server.close()
            await self._drain()
            self._loop = None

    async def _drain(self) -> None:
        """Read no more, let each connection send the replies it owes, drop the late ones."""
        connections = list(self.connections)
        for conn in connections:
            conn.stop_reading()
        if not connections:
            return
        done = [conn.done for conn in connections]
        await asyncio.wait(done, timeout=self.config.graceful_timeout)
        for conn in connections:
            if not conn.done.done():
                conn.transport.abort()
        await asyncio.wait(done)

    def accept(self, conn: _Connection) -> str:
        """Register a new connection; the problem that refuses it, or ""."""
        limit = self.config.max_connections
        if self._exit or len(self.connections) >= limit:
            self.metrics.tcp_connections.labels("refused").inc()
            if self._exit:
                return "the server is shutting down"
            return f"too many connections (--max-connections {limit}); try again later"
        self.connections.add(conn)
        self.metrics.tcp_connections.labels("accepted").inc()
        self.metrics.tcp_open.inc()
        return ""

    def forget(self, conn: _Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.metrics.tcp_open.dec()


class _Connection(asyncio.Protocol):
    """One client: blocks of lines in, their answers out in order."""

    transport: asyncio.Transport

    def __init__(self, server: LineServer) -> None:
        self.server = server
        self.config = server.config
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()  # resolved once closed
        self.buffer = bytearray()  # an unfinished line
        self.pending: deque[lines.Answer | asyncio.Future[lines.Answer]] = deque()
        self.lines_read = 0
        self.closing = False  # read no more: shutting down, idle, or a line was too long
        self.linger = False  # input may be left unread: close gently (_linger)
        self.ended = False  # the client ended its input
        self.writable = True  # the transport's buffer has room (pause_writing/resume_writing)
        self.reading = True
        self.last_input = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None

    # -- the protocol's callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        problem = self.server.accept(self)
        if problem:
            self.transport.write(f"error: {problem}\n".encode())
            self.transport.close()
            return
        self.timer = self.loop.call_later(self.config.idle_timeout, self._idle)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # dropped: the connection is closing (_linger)
        self.last_input = self.loop.time()
        self._guard(self._received, data)

    def eof_received(self) -> bool:
        self.ended = True
        if not self.closing:  # at the end of the input a last line needs no line end
            self.closing = True
            block, self.buffer = bytes(self.buffer), bytearray()
            self._guard(self._answer, block)
        self._guard(self._flush)
        return True  # keep the transport: the replies still go out

    def pause_writing(self) -> None:
        """The client does not read its replies: read no more of it; drop it after
        ``idle_timeout`` seconds of this."""
        self.writable = False
        self._read(False)
        self.timer = self._reset(self.timer, self.config.idle_timeout, self._stuck)

    def resume_writing(self) -> None:
        self.writable = True
        self.timer = self._reset(self.timer, self.config.idle_timeout, self._idle)
        self._guard(self._flush)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.server.forget(self)
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()
        if not self.done.done():
            self.done.set_result(None)

    # -- reading ---------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        """Answer the whole lines received; keep an unfinished one for later."""
        if not (self.buffer or self.pending) and self._at_once(data):
            return
        if self.buffer:
            self.buffer += data
            end = self.buffer.rfind(b"\n") + 1
            block = bytes(self.buffer[:end])
            del self.buffer[:end]
        else:  # the usual case: whole lines arrive, and no copy is needed
            end = data.rfind(b"\n") + 1
            block = data[:end]
            if end < len(data):
                self.buffer = bytearray(data[end:])
        limit = self.config.max_line_bytes
        fits = len(block) if len(block) <= limit else _fitting(block, limit)
        if fits < len(block) or len(self.buffer) > limit:
            self._answer(block[:fits])
            self._push(self._too_long())
            self.stop_reading()
            return
        self._answer(block)

    def _at_once(self, data: bytes) -> bool:
        """Whether ``data`` was answered here and now: a small block of whole lines that only ask
        for predictions (``lines.predicted_only``), with nothing before it to wait for -- the
        usual case of a client sending a line at a time, in one call, without an ``Answer``."""
        if not data.endswith(b"\n") or len(data) > self.config.max_line_bytes:
            return False
        n = data.count(b"\n")
        if n > INLINE_RECORDS:  # (a worker thread's, as in _answer)
            return False
        replies = lines.predicted_only(self.server.service, data)
        if replies is None:
            return False
        self.lines_read += n
        self.server.counted["predicted"].inc(len(replies))
        if replies.text:
            self.transport.write(replies.text)
        return True

    def _answer(self, block: bytes) -> None:
        """Answer a block of whole lines (the last one's line end may be missing at the end of
        the input), in order with the others."""
        if not block:
            return
        n = block.count(b"\n") + (not block.endswith(b"\n"))
        first = self.lines_read + 1
        self.lines_read += n
        service = self.server.service
        if n <= INLINE_RECORDS:
            self._push(lines.answer_block(service, block, first))
        else:
            later = self.loop.run_in_executor(None, lines.answer_block, service, block, first)
            later.add_done_callback(lambda _: self._guard(self._flush))
            self._push(later)

    def _push(self, item: lines.Answer | asyncio.Future[lines.Answer]) -> None:
        self.pending.append(item)
        if isinstance(item, lines.Answer):
            for _, future in item.durable:  # a learned line's reply waits for its commit
                future.add_done_callback(self._on_durable)
        if len(self.pending) >= _IN_FLIGHT:
            self._read(False)
        self._flush()

    def _on_durable(self, _: object) -> None:  # the event log's thread
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self._guard, self._flush)

    def _read(self, on: bool) -> None:
        if on != self.reading and not self.transport.is_closing():
            self.reading = on
            (self.transport.resume_reading if on else self.transport.pause_reading)()

    def stop_reading(self) -> None:
        """Shutting down (or a line too long): read no more lines, but answer those read."""
        if not self.closing:
            self.closing = True
            self.linger = True
            self.buffer = bytearray()  # an unfinished line is dropped, never guessed complete
        self._guard(self._flush)

    def _idle(self) -> None:
        """Silent for ``idle_timeout`` seconds: answer what was read, then close."""
        self.timer = None
        waited = self.loop.time() - self.last_input
        if self.pending or waited < self.config.idle_timeout:  # busy, or not silent that long
            self.timer = self.loop.call_later(
                max(0.0, self.config.idle_timeout - waited), self._idle
            )
            return
        self.closing = True
        self.buffer = bytearray()
        self._flush()

    def _stuck(self) -> None:
        """The client has not taken its replies for ``idle_timeout`` seconds: drop it."""
        self.timer = None
        if not self.writable:
            self.transport.abort()

    # -- writing ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write each settled answer, in order; then read again, or close once all is done."""
        while self.pending and self.writable:
            head = self.pending[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    return
                answer = head.result()  # a bug in answering: _guard drops the connection
                self.pending[0] = answer
                for _, future in answer.durable:
                    future.add_done_callback(self._on_durable)
                continue
            if not all(future.done() for _, future in head.durable):
                return
            self.pending.popleft()
            self._send(head.settled_now(), head.kinds)
        if self.pending or not self.writable:
            return
        if self.closing:
            self._close()
        elif not self.reading:
            self._read(True)

    def _send(self, replies: list[str], kinds: list[str]) -> None:
        counted = self.server.counted
        if len(set(kinds)) == 1:
            counted[kinds[0]].inc(len(kinds))
        else:
            for kind, count in Counter(kinds).items():
                counted[kind].inc(count)
        if replies:
            self.transport.write(("\n".join(replies) + "\n").encode())

    def _close(self) -> None:
        """All replies are written: close. Closing a socket with unread input makes the kernel
        reset the connection, which throws away the replies still on their way; so when input
        may be left unread, end the replies first (FIN), then drop what the client still sends
        until it closes too, for ``_LINGER`` seconds at most."""
        if self.transport.is_closing():
            return
        if not self.linger or self.ended:
            self.transport.close()
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._read(True)  # data_received drops it
        self.timer = self._reset(self.timer, _LINGER, self.transport.close)
        self.linger = False  # eof_received closes it from now on

    def _reset(
        self, timer: asyncio.TimerHandle | None, delay: float, callback: object
    ) -> asyncio.TimerHandle:
        if timer is not None:
            timer.cancel()
        return self.loop.call_later(delay, callback)  # type: ignore[arg-type]

    def _guard(self, call: object, *args: object) -> None:
        """Run a step of the connection; a bug in it drops this connection, never the server."""
        try:
            call(*args)  # type: ignore[operator]
        except Exception:
            log.exception("a TCP connection failed; the server goes on")
            self.transport.abort()

    def _too_long(self) -> lines.Answer:
        out = lines.Answer()
        limit = self.config.max_line_bytes
        problem = f"is longer than {limit} bytes (--max-line-bytes); closing the connection"
        out.fail(out.add(self.lines_read + 1), RequestError("line", problem))
        return out


def _fitting(block: bytes, limit: int) -> int:
    """How many bytes of ``block`` hold the whole lines before the first one over ``limit``."""
    pos = 0
    for line in block.split(b"\n"):
        if len(line) > limit:
            return pos
        pos += len(line) + 1
    return len(block)
