"""``LocalExecutor``: worker processes on this machine.

Each worker is a process forked from a fork server (``forkserver``: no inherited threads or
locks) that has imported shoal and loaded its compiled kernels once, so workers and their
replacements start in milliseconds. A worker reads its shard itself and loads the round's model
from a file the coordinator writes once per round. A worker that dies (SIGKILL, out of memory)
is noticed through its process sentinel and replaced; its in-flight attempt is reported as
``died``. A worker is handed attempts only once it has said it is ready, so an attempt's time
never includes a worker's start-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError
from shoal.model.modelfile import write_atomic
from shoal.train import forkserver
from shoal.train.executor import Event, failure
from shoal.train.task import Task, run_task


def _worker_main(conn: Connection, workdir: str) -> None:
    """A worker's life: take an attempt, learn, send the result back; until told to stop."""
    from shoal.model.model import Model

    cached_step, model = -1, None
    conn.send(None)  # ready: started and imported, so an attempt is timed from here on
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        attempt, task = msg
        try:
            if task.step != cached_step or model is None:
                model = Model.load(Path(workdir) / f"step-{task.step}.shoal")
                cached_step = task.step
            conn.send(Event(attempt, "done", run_task(task, model)))
        except Exception as exc:  # reported to the coordinator, which retries or stops
            conn.send(failure(attempt, exc))


@dataclass
class _Worker:
    process: Any  # a ForkServerProcess
    conn: Connection
    attempt: int | None = None
    ready: bool = False  # a worker takes no attempt before it said it is ready


class LocalExecutor:
    """``workers`` processes on this machine.

    >>> ex = LocalExecutor(2)
    >>> ex.workers
    2
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ctx = forkserver.context()
        self._pool: list[_Worker] = []
        self._dir = ""
        self._last_step: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the fork server, without waiting for it to import shoal and load the kernels
        (``start`` waits: forking a worker blocks until the server is ready)."""
        forkserver.launch()

    def start(self, deadline: float = 120.0) -> None:
        """Start the workers and wait (at most ``deadline`` seconds) until all are ready."""
        self._dir = tempfile.mkdtemp(prefix="shoal-workers-")
        try:
            for _ in range(self.workers):
                self._pool.append(self._spawn())
            limit = time.monotonic() + deadline
            while not all(w.ready for w in self._pool):
                if time.monotonic() > limit:
                    raise ShoalError(f"local workers not ready after {deadline:g} s")
                if any(not w.ready and not w.process.is_alive() for w in self._pool):
                    raise ShoalError(
                        "a worker process died while starting; in a script, start training "
                        'under `if __name__ == "__main__":` (worker processes import it)'
                    )
                self.poll(timeout=0.1)
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self._dir), daemon=True, name="shoal-worker"
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def close(self) -> None:
        for w in self._pool:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        for w in self._pool:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=2)
            w.conn.close()
        self._pool.clear()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    # -- the Executor interface -----------------------------------------------------------

    def broadcast(self, step: int, model: bytes) -> None:
        write_atomic(Path(self._dir) / f"step-{step}.shoal", model)
        if self._last_step is not None and self._last_step != step:
            # the coordinator has collected or cancelled every attempt of the last round
            with contextlib.suppress(OSError):
                os.unlink(Path(self._dir) / f"step-{self._last_step}.shoal")
        self._last_step = step

    def idle(self) -> int:
        # A starting worker is not idle: an attempt handed to it would wait out its start-up
        # (a second or more), look like a straggler, and get it killed and replaced for good.
        return sum(1 for w in self._pool if w.ready and w.attempt is None)

    def alive(self) -> int:
        return sum(1 for w in self._pool if w.process.is_alive())

    def pids(self) -> list[int]:
        """Process ids of the workers (tests kill them)."""
        return [w.process.pid for w in self._pool]

    def attempts(self) -> dict[int, int | None]:
        """Each worker's process id and the attempt it runs (None: idle)."""
        return {w.process.pid: w.attempt for w in self._pool}

    def busy_pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.attempt is not None]

    def submit(self, attempt: int, task: Task) -> None:
        worker = next(w for w in self._pool if w.ready and w.attempt is None)
        worker.attempt = attempt
        with contextlib.suppress(OSError):  # a dead worker: poll() reports it via its sentinel
            worker.conn.send((attempt, task))

    def poll(self, timeout: float) -> list[Event]:
        handles: dict[Any, _Worker] = {}
        for w in self._pool:
            handles[w.conn] = w
            handles[w.process.sentinel] = w
        ready = wait(list(handles), timeout=timeout)
        events: list[Event] = []
        dead: list[_Worker] = []
        for h in ready:
            w = handles[h]
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
            if w.process.is_alive():
                continue
            if w.attempt is not None:
                events.append(Event(w.attempt, "died", error=f"worker {w.process.pid} died"))
            self._replace(w)
        return events

    def cancel(self, attempt: int) -> None:
        for w in self._pool:
            if w.attempt == attempt:
                w.process.kill()
                w.process.join(timeout=5)
                self._replace(w)

    def _replace(self, w: _Worker) -> None:
        w.conn.close()
        w.process.join(timeout=1)
        idx = self._pool.index(w)
        self._pool[idx] = self._spawn()
