"""``LocalExecutor``: worker processes on this machine.

Each worker is a process forked from shoal's fork server (``forkserver``: no inherited threads
or locks), which has imported shoal and loaded its compiled kernels once, so workers and their
replacements start in milliseconds. A worker reads its shard itself and loads the round's model
from a file the coordinator writes once per round. A worker that dies (SIGKILL, out of memory)
is noticed through its connection and its pidfd and replaced; its in-flight attempt is reported
as ``died``. A fork server that dies is replaced too, and asked again for the workers it had not
started. A worker is handed attempts only once it has said it is ready, so an attempt's time
never includes a worker's start-up.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError
from shoal.train import forkserver
from shoal.train.executor import Event, failure
from shoal.train.task import Task, run_task

# A fork server that exits by itself this many times in a row before starting a worker is not
# restarted again: something keeps it from starting (its error is on stderr). One killed by a
# signal is always restarted.
MAX_SERVER_FAILURES = 5


def worker_main(fd: int) -> None:
    """A worker's life: take an attempt, learn, send the result back; until told to stop.

    A coordinator that went away (end of file, a broken pipe) ends it quietly.
    """
    from shoal.model.model import Model

    conn = Connection(fd)
    cached: Path | None = None
    model = None
    try:
        conn.send(None)  # ready: forked and warm, so an attempt is timed from here on
        while True:
            msg = conn.recv()
            if msg is None:
                return
            attempt, task, path, cwd = msg
            try:
                if cwd != os.getcwd():  # relative inputs are the coordinator's, wherever it is
                    os.chdir(cwd)
                if path != cached or model is None:
                    model = Model.load(path)
                    cached = path
                event = Event(attempt, "done", run_task(task, model))
            except Exception as exc:  # reported to the coordinator, which retries or stops
                event = failure(attempt, exc)
            conn.send(event)
    except (EOFError, OSError):
        return  # the coordinator is gone (or closed this worker's connection)


@dataclass(eq=False)  # identity: the pool finds a worker by ``index``
class _Worker:
    conn: Connection
    pid: int | None = None  # None until the fork server replies
    pidfd: int | None = None
    attempt: int | None = None
    ready: bool = False  # it said it is ready

    @property
    def usable(self) -> bool:
        """Ready, and confirmed by the fork server (a worker whose server died before the
        reply is replaced, so it must hold no attempt)."""
        return self.ready and self.pid is not None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            elif self.pid is not None:
                os.kill(self.pid, signal.SIGKILL)

    def wait_exit(self, timeout: float) -> bool:
        """Whether the process has exited (waiting at most ``timeout`` seconds)."""
        if self.pidfd is None:
            return True  # not observable: its connection's end of file stands for it
        return bool(select.select([self.pidfd], [], [], timeout)[0])

    def release(self) -> None:
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class LocalExecutor:
    """``workers`` processes on this machine.

    >>> ex = LocalExecutor(2)
    >>> ex.workers
    2
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._server: forkserver.ForkServer | None = None
        # workers waiting for the server's reply, in the order asked (None: one given up)
        self._asked: deque[_Worker | None] = deque()
        self._server_failures = 0  # servers in a row that exited before starting a worker
        self.server_restarts = 0
        self._pool: list[_Worker] = []
        self._dir = ""
        self._last_step: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def launch(self) -> None:
        """Take a fork server (started by ``forkserver.launch``, or now) and ask it for the
        workers, without waiting: they are forked as soon as the server has imported shoal
        (``start`` waits for them). Workers the server was asked for early are adopted."""
        if self._server is not None:
            return
        self._server = forkserver.take()
        for fd in self._server.adopt():  # their replies come first, in this order
            if len(self._pool) < self.workers:
                worker = _Worker(Connection(fd))
                self._asked.append(worker)
                self._pool.append(worker)
            else:  # one too many: it exits when it finds its connection closed
                os.close(fd)
                self._asked.append(None)
        while len(self._pool) < self.workers:
            self._pool.append(self._spawn())

    def start(self, deadline: float = 120.0) -> None:
        """Start the workers and wait (at most ``deadline`` seconds) until all are ready."""
        self._dir = tempfile.mkdtemp(prefix="shoal-workers-")
        try:
            self.launch()
            limit = time.monotonic() + deadline
            while not all(w.usable for w in self._pool):
                if time.monotonic() > limit:
                    raise ShoalError(f"local workers not ready after {deadline:g} s")
                self.poll(timeout=0.1)
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> _Worker:
        """Ask the fork server for a worker; it joins the pool once the server replies."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker = _Worker(Connection(ours.detach()))
        try:
            self._ask(theirs.fileno())
        finally:
            theirs.close()
        self._asked.append(worker)
        return worker

    def _ask(self, fd: int) -> None:
        assert self._server is not None
        with contextlib.suppress(OSError):  # the server is gone: _server_died() asks again
            self._server.request(fd)

    def _server_died(self) -> None:
        """Start a new fork server; the workers the dead one had not confirmed are asked for
        again (a worker it forked without replying sees its connection closed and exits)."""
        assert self._server is not None
        self._server.close()
        if self._server.forked == 0 and self._server.process.returncode >= 0:
            self._server_failures += 1  # it exited by itself, before it could fork
        else:
            self._server_failures = 0
        if self._server_failures >= MAX_SERVER_FAILURES:
            raise ShoalError(
                f"the local workers' fork server exited {self._server_failures} times in a row "
                "before starting a worker (see its error above)"
            )
        self.server_restarts += 1
        self._server = forkserver.ForkServer()
        asked = [w for w in self._asked if w is not None]
        self._asked.clear()
        for w in asked:
            idx = self._pool.index(w)
            w.release()
            self._pool[idx] = self._spawn()

    def close(self) -> None:
        for w in self._pool:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        end = time.monotonic() + 2
        for w in self._pool:
            if not w.wait_exit(max(0.0, end - time.monotonic())):
                w.kill()
                w.wait_exit(2)
            w.release()
        self._pool.clear()
        if self._server is not None:
            if self._asked:  # replies still due: this server cannot serve another run
                self._server.close()
            else:
                forkserver.give_back(self._server)
            self._server = None
            self._asked.clear()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    # -- the Executor interface -----------------------------------------------------------

    def broadcast(self, step: int, model: bytes) -> None:
        # a scratch file, read only by attempts submitted after this returns: no fsync, no
        # rename (a crash loses the folder anyway; checkpoints are the coordinator's)
        (Path(self._dir) / f"step-{step}.shoal").write_bytes(model)
        if self._last_step is not None and self._last_step != step:
            # the coordinator has collected or cancelled every attempt of the last round
            with contextlib.suppress(OSError):
                os.unlink(Path(self._dir) / f"step-{self._last_step}.shoal")
        self._last_step = step

    def idle(self) -> int:
        # A starting worker is not idle: an attempt handed to it would wait out its start-up,
        # look like a straggler, and get it killed and replaced for good.
        return sum(1 for w in self._pool if w.usable and w.attempt is None)

    def alive(self) -> int:
        return len(self._pool)

    def pids(self) -> list[int]:
        """Process ids of the workers the fork server has started (tests kill them)."""
        return [w.pid for w in self._pool if w.pid is not None]

    def server_pid(self) -> int | None:
        """Process id of the fork server (tests kill it)."""
        return self._server.pid if self._server is not None else None

    def attempts(self) -> dict[int, int | None]:
        """Each worker's process id and the attempt it runs (None: idle)."""
        return {w.pid: w.attempt for w in self._pool if w.pid is not None}

    def busy_pids(self) -> list[int]:
        return [w.pid for w in self._pool if w.attempt is not None and w.pid is not None]

    def submit(self, attempt: int, task: Task) -> None:
        worker = next(w for w in self._pool if w.usable and w.attempt is None)
        worker.attempt = attempt
        path = Path(self._dir) / f"step-{task.step}.shoal"
        with contextlib.suppress(OSError):  # a dead worker: poll() reports it
            worker.conn.send((attempt, task, path, os.getcwd()))

    def poll(self, timeout: float) -> list[Event]:
        handles: dict[Any, _Worker | None] = {}
        if self._server is not None:
            handles[self._server.sock] = None
        for w in self._pool:
            handles[w.conn] = w
            if w.pidfd is not None:
                handles[w.pidfd] = w
        ready = wait(list(handles), timeout=timeout)
        events: list[Event] = []
        dead: list[_Worker] = []
        for h in ready:
            owner = handles[h]
            if owner is None:
                self._server_replied()
                continue
            w = owner
            if h is w.conn:
                try:
                    ev = w.conn.recv()
                except (EOFError, OSError):
                    if w not in dead:
                        dead.append(w)
                    continue
                if ev is None:
                    w.ready = True
                elif ev.attempt == w.attempt:
                    w.attempt = None
                    events.append(ev)
            elif w not in dead:
                dead.append(w)
        for w in dead:
            if w not in self._pool:
                continue  # replaced already (its server died before replying)
            if w.attempt is not None:
                events.append(Event(w.attempt, "died", error=f"worker {w.pid} died"))
            self._replace(w)
        return events

    def _server_replied(self) -> None:
        assert self._server is not None
        try:
            pid, pidfd = self._server.reply()
        except EOFError:
            self._server_died()
            return
        self._server_failures = 0
        w = self._asked.popleft()
        if w is None:  # given up: its connection is closed, so it exits by itself
            if pidfd is not None:
                os.close(pidfd)
            return
        w.pid, w.pidfd = pid, pidfd

    def cancel(self, attempt: int) -> None:
        for w in self._pool:
            if w.attempt == attempt:
                self._replace(w)

    def _replace(self, w: _Worker) -> None:
        """Kill ``w`` (if it still runs) and ask for a new worker in its place."""
        if w in self._asked:  # no reply yet: the server forks it, it sees end of file and exits
            self._asked[self._asked.index(w)] = None
        w.kill()
        w.wait_exit(5)
        w.release()
        idx = self._pool.index(w)
        self._pool[idx] = self._spawn()
