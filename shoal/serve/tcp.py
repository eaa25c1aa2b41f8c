"""The TCP line server: Vowpal Wabbit's daemon protocol (``lines.py``) on asyncio streams.

A connection is two tasks joined by a short queue. The reader takes whatever has arrived, and
answers its whole lines as one block (``lines.answer_block``: one kernel call parses, hashes
and predicts them all): a small block at once on the event loop -- a lone line waits for
nothing -- a large one in a worker thread (the model's work must not stall the event loop,
which also serves HTTP). The
writer sends the answers in order, each once its learned lines are durable. The queue holds
``_IN_FLIGHT`` answers: a client that writes faster than it reads is no longer read, and TCP's
flow control slows it down. A connection holds at most ``max_line_bytes`` + ``_CHUNK`` bytes of
input and a few batches of replies.

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
from collections import Counter

from shoal.serve import lines, sockets
from shoal.serve.config import TcpConfig
from shoal.serve.errors import RequestError
from shoal.serve.metrics import Metrics
from shoal.serve.offload import INLINE_RECORDS
from shoal.serve.service import ModelService

log = logging.getLogger(__name__)

_CHUNK = 64 << 10  # bytes read at once: the most that one batch of lines can come from
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
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self.counted = {k: metrics.tcp_lines.labels(k) for k in ("predicted", "learned", "error")}

    def bind(self) -> tuple[str, int]:
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
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # after _stop: the setter needs both
        server = await asyncio.start_server(self._connected, sock=self.sock)
        self.started = True
        try:
            if not self._exit:  # else it was set before the setter could see the loop
                await self._stop.wait()
        finally:
            server.close()
            await self._drain()
            self._loop = None

    async def _drain(self) -> None:
        """Read no more, let each connection send the replies it owes, cancel the late ones."""
        tasks = list(self._connections)
        for conn in self._connections.values():
            conn.stop_reading()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.config.graceful_timeout)
        for task in late:
            task.cancel()
        await asyncio.wait(tasks)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limit = self.config.max_connections
        if self._exit or len(self._connections) >= limit:
            self.metrics.tcp_connections.labels("refused").inc()
            full = f"too many connections (--max-connections {limit}); try again later"
            await _refuse(writer, "the server is shutting down" if self._exit else full)
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = _Connection(self, reader, writer)
        self.metrics.tcp_connections.labels("accepted").inc()
        self.metrics.tcp_open.inc()
        try:
            await self._connections[task].run()
        finally:
            del self._connections[task]
            self.metrics.tcp_open.dec()


async def _refuse(writer: asyncio.StreamWriter, problem: str) -> None:
    writer.write(f"error: {problem}\n".encode())
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class _Connection:
    """One client: the reader answers batches of lines, the writer sends the answers in order."""

    def __init__(
        self, server: LineServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.config = server.config
        self.reader = reader
        self.writer = writer
        self.answers: asyncio.Queue[lines.Answer | None] = asyncio.Queue(_IN_FLIGHT)
        self.lines_read = 0
        self.writing = False  # the writer holds an answer: the reader may not reply itself
        self.closing = False  # read no more: shutting down, or a line was too long
        self._deadline: asyncio.Timeout | None = None  # set while waiting for input

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read())
                group.create_task(self._write())
            if self.closing:
                await self._linger()
        except* (ConnectionError, TimeoutError):
            self.writer.transport.abort()  # gone, or not reading its replies: nothing to flush
        except* Exception:
            log.exception("a TCP connection failed; the server goes on")
            self.writer.transport.abort()
        finally:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    def stop_reading(self) -> None:
        """Shutting down: read no more lines, but answer those already read."""
        self.closing = True
        if self._deadline is not None:  # waiting for input: wake it now
            self._deadline.reschedule(asyncio.get_running_loop().time())

    async def _linger(self) -> None:
        """Close without a reset after input was left unread. Closing a socket with unread
        input makes the kernel reset the connection, which throws away the replies still on
        their way; so end the replies first (FIN), then read and drop what the client still
        sends until it closes too, for ``_LINGER`` seconds at most."""
        self.writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LINGER):
                while await self.reader.read(_CHUNK):
                    pass

    # -- the reader ----------------------------------------------------------------------------

    async def _read(self) -> None:
        """Cut the input into lines and answer them a batch at a time; ``None`` ends the queue.

        At the client's end of input a last line needs no line end (as in a file); when reading
        stops early (idle, shutdown) an unfinished line is dropped, never guessed complete.
        """
        buffer = bytearray()
        limit = self.config.max_line_bytes
        while (chunk := await self._chunk()) is not None:
            if buffer:
                buffer += chunk
                end = buffer.rfind(b"\n") + 1 if chunk else len(buffer)
                block = bytes(buffer[:end])
                del buffer[:end]
            else:  # the usual case: whole lines arrive, and no copy is needed
                end = chunk.rfind(b"\n") + 1
                block, buffer = chunk[:end], bytearray(chunk[end:])
                if not chunk:
                    block, buffer = bytes(buffer), bytearray()
            fits = len(block) if len(block) <= limit else _fitting(block, limit)
            if fits < len(block) or len(buffer) > limit:
                await self._answer(block[:fits])
                await self.answers.put(self._too_long())
                self.closing = True
                break
            await self._answer(block)
            if not chunk:
                break
        await self.answers.put(None)

    async def _chunk(self) -> bytes | None:
        """The next bytes from the client, ``b""`` at its end of input; ``None`` once the
        connection is closing or has been silent for ``idle_timeout`` seconds."""
        if self.closing:
            return None
        try:
            async with asyncio.timeout(self.config.idle_timeout) as self._deadline:
                return await self.reader.read(_CHUNK)
        except TimeoutError:
            return None
        finally:
            self._deadline = None

    async def _answer(self, block: bytes) -> None:
        """Answer a block of whole lines (the last one's line end may be missing at the end of
        the input) and queue the answer for the writer."""
        if not block:
            return
        n = block.count(b"\n") + (not block.endswith(b"\n"))
        first = self.lines_read + 1
        self.lines_read += n
        if n <= INLINE_RECORDS:
            answer = lines.answer_block(self.server.service, block, first)
            if not answer.durable and self.answers.empty() and not self.writing:
                self._send(answer.replies, answer.kinds)  # nothing to wait for: reply now
                if self.writer.transport.get_write_buffer_size():
                    await self.answers.put(lines.Answer())  # the writer waits for the client
                return
        else:
            answer = await asyncio.to_thread(lines.answer_block, self.server.service, block, first)
        await self.answers.put(answer)

    def _too_long(self) -> lines.Answer:
        out = lines.Answer()
        limit = self.config.max_line_bytes
        problem = f"is longer than {limit} bytes (--max-line-bytes); closing the connection"
        out.fail(out.add(self.lines_read + 1), RequestError("line", problem))
        return out

    # -- the writer ----------------------------------------------------------------------------

    async def _write(self) -> None:
        """Send each answer once it is settled, in order; a client that does not take its
        replies for ``idle_timeout`` seconds raises TimeoutError (the connection is dropped)."""
        while (answer := await self.answers.get()) is not None:
            self.writing = True
            self._send(await answer.settled(), answer.kinds)
            if self.writer.transport.get_write_buffer_size():  # the client is slow to read
                async with asyncio.timeout(self.config.idle_timeout):
                    await self.writer.drain()
            self.writing = False

    def _send(self, replies: list[str], kinds: list[str]) -> None:
        """Count the replies by kind, and send them (the reader does, when nothing waits)."""
        if len(set(kinds)) == 1:
            self.server.counted[kinds[0]].inc(len(kinds))
        else:
            for kind, count in Counter(kinds).items():
                self.server.counted[kind].inc(count)
        if replies:
            self.writer.write(("\n".join(replies) + "\n").encode())


def _fitting(block: bytes, limit: int) -> int:
    """How many bytes of ``block`` hold the whole lines before the first one over ``limit``."""
    pos = 0
    for line in block.split(b"\n"):
        if len(line) > limit:
            return pos
        pos += len(line) + 1
    return len(block)
