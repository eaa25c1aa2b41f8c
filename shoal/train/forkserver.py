"""The fork server that local workers are forked from: shoal's own, small and restartable.

The server is a fresh interpreter (a child of the coordinator) that imports shoal and loads the
compiled kernels once (``_warm``), then forks a worker for every request, so a worker, or the
replacement of a dead one, is ready in milliseconds and inherits no threads or locks. The
``shoal`` command starts it right after parsing its arguments (``launch``): its start passes
while the coordinator imports and plans. This module imports nothing of shoal's at import time.

It replaces multiprocessing's fork server, whose death (or its resource tracker's) while a
worker was being started killed the run with ``EOFError``. Here every process may die:

- **A worker** is watched through its connection and a *pidfd* (a handle on the process that
  the server opens before it can be reaped and passes on, so a recycled process id is never
  signalled); the coordinator replaces it (``local``).
- **The server**: its socket reaches end of file, the coordinator starts a new one and asks it
  again for the workers the dead one had not confirmed. Workers already running keep running.
- **The coordinator**: the server and idle workers see end of file and exit; a busy worker exits
  when it tries to send its result. None prints a traceback.

There is no resource tracker: shoal's workers use no multiprocessing semaphores or shared
memory. Requests and replies are packets on a Unix socket pair (``SOCK_SEQPACKET``); the
descriptors (a worker's end of its connection, the worker's pidfd) travel as ``SCM_RIGHTS``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import traceback

_PID = struct.Struct("<q")
_HAS_PIDFD = hasattr(os, "pidfd_open")
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
    "from shoal.train.forkserver import serve; serve(int(sys.argv[1]))"
)


class ForkServer:
    """The coordinator's handle on one fork server process.

    ``request(fd)`` asks for a worker that will run on the connection ``fd`` (sent to the
    server; close your copy); ``reply()`` returns the ``(pid, pidfd)`` of the oldest request
    once ``fileno()`` is readable. Replies come in the order of the requests.

    >>> server = ForkServer()
    >>> server.alive()
    True
    >>> server.close()
    >>> server.alive()
    False
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), json.dumps(sys.path)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # never holds the coordinator's stdout (a pipe) open
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.forked = 0  # workers this server has confirmed
        self.early: list[int] = []  # our ends of workers asked for before an executor took it

    @property
    def pid(self) -> int:
        return self.process.pid

    def fileno(self) -> int:
        return self.sock.fileno()

    def alive(self) -> bool:
        return self.sock.fileno() >= 0 and self.process.poll() is None

    def request(self, fd: int) -> None:
        """Ask for a worker on connection ``fd``; raises ``OSError`` if the server is gone."""
        socket.send_fds(self.sock, [b"w"], [fd])

    def prefork(self, n: int) -> None:
        """Ask now for ``n`` workers, forked as soon as the server is warm, for the executor
        that takes this server (``adopt``)."""
        for _ in range(n):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.request(theirs.fileno())
            except OSError:
                ours.close()
                return
            finally:
                theirs.close()
            self.early.append(ours.detach())

    def adopt(self) -> list[int]:
        """The connections of the pre-forked workers, in the order of their replies (which
        come before any other)."""
        early, self.early = self.early, []
        return early

    def reply(self) -> tuple[int, int | None]:
        """The next worker's process id and pidfd; ``EOFError`` if the server is gone."""
        try:
            msg, fds, _, _ = socket.recv_fds(self.sock, _PID.size, 1)
        except OSError as exc:
            raise EOFError(str(exc)) from None
        if len(msg) != _PID.size:
            for fd in fds:
                os.close(fd)
            raise EOFError("the fork server went away")
        self.forked += 1
        return _PID.unpack(msg)[0], (fds[0] if fds else None)

    def close(self) -> None:
        """Stop the server (it exits on end of file; killed if it does not) and reap it."""
        for fd in self.adopt():
            os.close(fd)
        self.sock.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_idle: list[ForkServer] = []


@atexit.register
def _close_idle() -> None:
    while _idle:
        _idle.pop().close()


def launch(workers: int = 0) -> None:
    """Start a fork server for a later run of this process, without waiting for its imports,
    and ask it for ``workers`` workers: they are forked, warm, while the run imports and plans."""
    if not any(s.alive() for s in _idle):
        _idle.append(ForkServer())
    server = next(s for s in reversed(_idle) if s.alive())
    server.prefork(workers - len(server.early))


def take() -> ForkServer:
    """A running fork server for one executor: an idle one, or a new one."""
    while _idle:
        server = _idle.pop()
        if server.alive():
            return server
        server.close()
    return ForkServer()


def give_back(server: ForkServer) -> None:
    """Keep ``server`` for the next run of this process (its workers have all stopped)."""
    if server.alive() and not server.early:
        _idle.append(server)
    else:
        server.close()


# -- the server process ----------------------------------------------------------------------


def serve(fd: int) -> None:
    """The server's life: load shoal, then fork a worker per request until end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    sock = socket.socket(fileno=fd)
    import shoal.train._warm  # noqa: F401  (imports shoal and loads the kernels)
    from shoal.train.local import worker_main

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # a dead child wakes select() below, to be reaped at once
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)
        _reap()
        if sock.fileno() not in ready:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1, 1)
        except OSError:
            os._exit(0)
        if not msg:
            # the coordinator closed its end, or exited: leave at once, without the
            # interpreter's teardown of numba's objects (~0.15 s the coordinator would wait)
            os._exit(0)
        pid = os.fork()
        if pid == 0:  # the worker
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            sock.close()
            code = 0
            try:
                worker_main(fds[0])
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        for f in fds:
            os.close(f)
        # opened before this loop reaps the child: the pidfd is always that process's
        pidfd = [os.pidfd_open(pid)] if _HAS_PIDFD else []
        try:
            socket.send_fds(sock, [_PID.pack(pid)], pidfd)
        except OSError:
            os._exit(0)
        finally:
            for f in pidfd:
                os.close(f)


def _reap() -> None:
    """Collect the exit status of every child that has exited (no zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
