"""The local RPC between the front ends and the learner process: JSON frames on a Unix socket.

A frame is a 4-byte big-endian length and that many bytes of JSON. A call is
``{"id": N, "op": NAME, "args": {...}}`` and its reply ``{"id": N, "result": ...}`` or
``{"id": N, "error": {"kind": CLASS, "args": [...]}}``; a call with id 0 is a message that
wants no reply (the features kept for feedback). Errors travel as their class name and
constructor arguments -- the same ``__reduce__`` that pickles them -- and are raised again on
the other side as the same class, so a front end maps a learner's error to the status it would
have had in one process. Only the classes in ``ERRORS`` are rebuilt; anything else arrives as a
``ShoalError`` with the message.

A frame goes out at once from the thread that made it when nothing waits before it and the
socket takes it whole without blocking (the usual case: no thread to wake, in a busy process
whose threads wait for the GIL); else a writer thread sends it, and whatever frames wait when
it wakes go out in one ``sendall``. The thread that resolved a call never waits on the other
side (the event log's writer must not wait on a slow front end).

>>> import tempfile
>>> from concurrent.futures import Future
>>> path = Path(tempfile.mkdtemp()) / "rpc.sock"
>>> def double(x):
...     return 2 * x
>>> def later(x):
...     fut = Future()
...     fut.set_result(x + 1)
...     return fut
>>> server = RpcServer(path, {"double": double, "later": later})
>>> server.start()
>>> client = RpcClient(path)
>>> client.wait_connected(5)
True
>>> client.call("double", x=21).result(5), client.call_sync("later", 5, x=1)
(42, 2)
>>> client.close(); server.close()
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from shoal.errors import ConfigError, DataError, ModelFileError, ShoalError, StepTooLarge
from shoal.serve import errors

log = logging.getLogger("shoal.serve")
_LENGTH = struct.Struct(">I")
MAX_FRAME = 1 << 30
_RECONNECT = 0.05  # seconds between attempts to reach a learner that is not there
_BATCH_BYTES = 4 << 20  # most bytes a writer joins into one send
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)  # 0 where the OS has none: the thread sends all
_MAX_MESSAGES = 10_000  # messages (no reply wanted) waiting to be sent before more are dropped
CALL_DEADLINE = 60.0  # seconds a call waits for a learner that is there but does not answer

# every error a call may raise travels as its class name: shoal's own, and each of the server's
ERRORS: dict[str, type[ShoalError]] = {
    cls.__name__: cls
    for cls in (
        ShoalError, ConfigError, DataError, StepTooLarge, ModelFileError,
        *(c for c in vars(errors).values()
          if isinstance(c, type) and issubclass(c, ShoalError)),
    )
}  # fmt: skip


def encode_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ShoalError) and type(exc).__name__ in ERRORS:
        reduced = exc.__reduce__()  # (class, constructor arguments[, state]): as pickle does
        args = reduced[1] if isinstance(reduced, tuple) else exc.args
        return {"kind": type(exc).__name__, "args": list(args)}
    return {"kind": "ShoalError", "args": [f"the learner failed: {type(exc).__name__}: {exc}"]}


def decode_error(data: dict[str, Any]) -> ShoalError:
    cls = ERRORS.get(str(data.get("kind")), ShoalError)
    try:
        return cls(*data.get("args", []))
    except TypeError:
        return ShoalError(" ".join(map(str, data.get("args", []))))


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


class _Frames:
    """Reads frames from a socket; ``None`` at its end."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def __iter__(self) -> Any:
        while True:
            while len(self.buffer) >= 4:
                (n,) = _LENGTH.unpack_from(self.buffer)
                if n > MAX_FRAME:
                    raise ConnectionError(f"a frame of {n} bytes: not a shoal peer")
                if len(self.buffer) < 4 + n:
                    break
                body = bytes(self.buffer[4 : 4 + n])
                del self.buffer[: 4 + n]
                yield json.loads(body)
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            self.buffer += chunk


class _Writer:
    """Sends frames in order: at once from the caller's thread when nothing waits and the
    socket takes the whole frame without blocking, else by a thread that sends queued frames,
    as many at once as are waiting."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.broken = False
        self.lock = threading.Lock()  # over ``waiting`` and a send from the caller's thread
        self.waiting = 0  # frames queued or being sent by the thread
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def put(self, data: bytes) -> None:
        with self.lock:
            if not self.waiting and _DONTWAIT:  # (the thread is not sending: no frame overtaken)
                try:
                    sent = self.sock.send(data, _DONTWAIT)
                except OSError:  # full (BlockingIOError), or broken: the thread finds out
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
            self.waiting += 1
            self.queue.put(data)

    def stop(self) -> None:
        self.queue.put(None)

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            parts, size = [item], len(item)
            while size < _BATCH_BYTES:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                parts.append(more)
                size += len(more)
            try:
                self.sock.sendall(b"".join(parts))
                with self.lock:
                    self.waiting -= len(parts)
            except OSError:
                self.broken = True  # the reader sees the end of the connection too
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                return


Handler = Callable[..., Any]  # returns a JSON value, or a Future of one


class RpcServer:
    """The learner's side: runs ``handlers[op](**args)`` for each call, replies when done."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._sock: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead learner's socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        sock.bind(str(tmp))
        sock.listen(64)
        os.replace(tmp, self.path)  # clients never connect to a socket not yet listening
        self._sock = sock
        threading.Thread(target=self._accept, name="shoal-rpc-accept", daemon=True).start()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while (sock := self._sock) is not None:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:  # accepted while closing: close() did not see it
                    conn.close()
                    return
                self._connections.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name="shoal-rpc-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        writer = _Writer(conn, "shoal-rpc-reply")
        try:
            for message in _Frames(conn):
                self._call(message, writer)
        except Exception:
            log.exception("a front end's connection failed; it reconnects")
        finally:
            writer.stop()
            writer.thread.join()
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _call(self, message: dict[str, Any], writer: _Writer) -> None:
        call_id = message.get("id", 0)

        def reply(result: Any = None, error: BaseException | None = None) -> None:
            if not call_id:
                if error is not None:
                    log.warning("%s: %s", message.get("op"), error)
                return
            if error is None:
                writer.put(frame({"id": call_id, "result": result}))
            else:
                writer.put(frame({"id": call_id, "error": encode_error(error)}))

        def settled(fut: Future[Any]) -> None:
            exc = fut.exception()
            reply(None if exc is not None else fut.result(), exc)

        handler = self.handlers.get(str(message.get("op")))
        try:
            if handler is None:
                raise ShoalError(
                    f"unknown call {message.get('op')!r}: front end and learner differ"
                )
            out = handler(**message.get("args", {}))
        except Exception as exc:
            if not isinstance(exc, ShoalError):
                log.exception("%s failed", message.get("op"))
            reply(error=exc)
            return
        if isinstance(out, Future):
            out.add_done_callback(settled)
        else:
            reply(out)


class RpcClient:
    """A front end's side: one connection to the learner, made again whenever it is lost.

    While there is no connection (the learner is restarting) calls fail at once with
    ``Unavailable``, which a front end answers with 503 and ``Retry-After``; calls in flight
    when the connection breaks fail the same way -- never acknowledged, so never lost.
    """

    def __init__(
        self,
        path: Path,
        on_connect: Callable[[], None] = lambda: None,
        deadline: float = CALL_DEADLINE,
    ) -> None:
        self.path = path
        self.on_connect = on_connect
        self.deadline = deadline
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._due: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()
        self._writer: _Writer | None = None
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoal-rpc-client", daemon=True)
        self._thread.start()
        threading.Thread(target=self._expire, name="shoal-rpc-deadline", daemon=True).start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            writer = self._writer
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def call(self, op: str, **args: Any) -> Future[Any]:
        """Call ``op`` in the learner; the future gives its result or raises its error."""
        fut: Future[Any] = Future()
        data = None
        with self._lock:
            writer = self._writer
            if writer is not None:
                call_id = next(self._ids)
                self._pending[call_id] = fut
                self._due.append((time.monotonic() + self.deadline, call_id))
                data = frame({"id": call_id, "op": op, "args": args})
        if writer is None or data is None:
            fut.set_exception(_unavailable())
        else:
            writer.put(data)
        return fut

    def call_sync(self, op: str, timeout: float, **args: Any) -> Any:
        try:
            return self.call(op, **args).result(timeout)
        except FutureTimeout:
            raise errors.Unavailable(
                f"the learner did not answer {op} within {timeout:g} s; retry"
            ) from None

    def send(self, op: str, **args: Any) -> bool:
        """A message without reply; False (dropped) when there is no learner to take it, or
        when it is so far behind that ``_MAX_MESSAGES`` wait (memory stays bounded)."""
        with self._lock:
            writer = self._writer
        if writer is None or writer.queue.qsize() > _MAX_MESSAGES:
            return False
        writer.put(frame({"id": 0, "op": op, "args": args}))
        return True

    def _expire(self) -> None:
        """Fail the calls a hung learner (stopped, its disk stalled) has not answered in time:
        a client gets 503 rather than waiting forever. Not acknowledged, so never lost; the
        call may still be logged when the learner wakes."""
        while not self._closed.wait(min(1.0, self.deadline)):
            now, late = time.monotonic(), []
            with self._lock:
                while self._due and self._due[0][0] <= now:
                    fut = self._pending.pop(self._due.popleft()[1], None)
                    if fut is not None:
                        late.append(fut)
            for fut in late:
                fut.set_exception(errors.Unavailable(
                    f"the learner did not answer within {self.deadline:g} s; retry later"
                ))  # fmt: skip

    def _run(self) -> None:
        while not self._closed.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                self._closed.wait(_RECONNECT)
                continue
            writer = _Writer(sock, "shoal-rpc-send")
            with self._lock:
                self._writer = writer
            self._connected.set()
            self.on_connect()
            try:
                for message in _Frames(sock):
                    with self._lock:
                        fut = self._pending.pop(message.get("id", 0), None)
                    if fut is None:
                        continue
                    if "error" in message:
                        fut.set_exception(decode_error(message["error"]))
                    else:
                        fut.set_result(message.get("result"))
            except (ValueError, ConnectionError) as exc:
                log.error("the learner's connection broke: %s", exc)
            finally:
                self._connected.clear()
                with self._lock:
                    self._writer = None
                    pending, self._pending = self._pending, {}
                    self._due.clear()
                writer.stop()
                sock.close()
                for fut in pending.values():  # no answer: not acknowledged (it may be logged)
                    fut.set_exception(errors.Unavailable(
                        "the learner stopped before it answered (it restarts; predictions go "
                        "on): retry in a moment"
                    ))  # fmt: skip


def _unavailable() -> errors.Unavailable:
    return errors.Unavailable(
        "the learner is restarting (predictions go on); nothing was logged: retry in a moment"
    )
