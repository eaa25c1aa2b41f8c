"""The supervisor: ``shoal serve --processes N`` starts one learner process and N front-end
processes, watches them, replaces the ones that die, and stops them all in order.

```
shoal serve (supervisor) -- holds the listening sockets, forks and reaps
 |-- learner       ModelService: event log, learner thread, snapshots; weights in shared memory
 |-- front end 0   HTTP + TCP on its own event loop, predicting from the shared weights
 |-- ...
 `-- front end N-1
```

- A front end that dies is forked again at once, on the same sockets (connections queued on
  them wait for it; those it had accepted are lost, and their clients reconnect). Nothing it
  acknowledged is lost: acknowledgements come from the learner, after the log's commit.
- A learner that dies is forked again: it restores the newest snapshot and replays the log. In
  between, front ends predict from the last published weights and refuse learning with 503.
- SIGTERM or SIGINT to the supervisor: front ends stop accepting and finish what is in flight,
  then the learner drains and writes its snapshot.
- No child outlives the supervisor: each asks the kernel for SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``), and watches its parent besides.

Children are forked from the supervisor, which has imported everything and started no thread:
a replacement answers within milliseconds, not after the seconds of a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.errors import ConfigError, ShoalError
from shoal.model.model import Model
from shoal.serve import sockets
from shoal.serve.cluster import frontend, learnerproc
from shoal.serve.cluster.shmweights import Control
from shoal.serve.config import HttpConfig, ServiceConfig, TcpConfig
from shoal.serve.reading.records import parse_lines
from shoal.serve.state.statedir import StateDir
from shoal.serve.tcp import lines

log = logging.getLogger("shoal.serve")
_QUICK_DEATH = 1.0  # seconds: a child that dies sooner after starting is restarted after a pause
_STOP_GRACE = 10.0  # seconds a front end gets beyond its graceful timeout before SIGKILL
_LEARNER_STOP = 300.0  # seconds the learner gets to drain and snapshot before SIGKILL
_PR_SET_PDEATHSIG = 1


def supported() -> bool:
    """Front-end processes are Linux's: ``fork`` from a process that imported numba, children
    that die with their parent (``PR_SET_PDEATHSIG``), and ``SO_REUSEPORT`` that spreads
    connections (elsewhere the last socket bound takes them all)."""
    return sys.platform.startswith("linux")


def default_processes() -> int:
    """One front end per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass
class _Child:
    role: str  # "learner" or "front end N"
    pid: int
    ready_fd: int  # the child's first line comes here; then it is closed
    started: float
    index: int = -1  # a front end's index
    message: dict[str, Any] | None = None  # what it said when ready (or its error)
    buffer: bytearray = field(default_factory=bytearray)

    @property
    def ready(self) -> bool:
        return self.message is not None and "error" not in self.message


def run_dir() -> Path:
    """A private directory for the shared weights, the learner's socket and the metrics files,
    in memory where the OS has ``/dev/shm``; those of supervisors that died are removed."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    for stale in base.glob("shoal-serve-*"):
        pid = stale.name.removeprefix("shoal-serve-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = base / f"shoal-serve-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    (path / "metrics").mkdir()
    Control.create(path / "control")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listeners(host: str, port: int, flag: str, n: int) -> list[socket.socket]:
    """``n`` sockets listening on one port, one per front end (``SO_REUSEPORT``), or one socket
    that all share where the OS lacks it. The port is first bound alone: a port that another
    server holds is refused, even one that also uses ``SO_REUSEPORT``."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return [sockets.listen(host, port, flag)] * n
    probe = sockets.listen(host, port, flag)  # a clear error if taken; the port, if 0
    port = probe.getsockname()[1]
    probe.close()
    return [sockets.listen(host, port, flag, reuse_port=True) for _ in range(n)]


class Supervisor:
    """Runs the group (see the module's doc) until SIGTERM or SIGINT."""

    def __init__(
        self,
        service: ServiceConfig,
        http: HttpConfig | None,
        tcp: TcpConfig | None,
        processes: int,
        publish: str | None = None,
    ) -> None:
        if http is None and tcp is None:
            raise ConfigError("--http", "nothing to serve: give --http, --tcp or both")
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ConfigError("--processes", f"must be at least 1, got {processes!r}")
        self.service = service
        self.http = http
        self.tcp = tcp
        self.processes = processes
        self.publish = publish  # where the learner publishes its snapshots (replica/)
        self.pid = os.getpid()
        self.stopping = False
        self.rundir: Path | None = None
        self.learner: _Child | None = None
        self.fronts: dict[int, _Child] = {}
        self._sockets: dict[str, list[socket.socket]] = {}
        self._bound: dict[str, tuple[str, int]] = {}  # protocol: (host, port) bound
        self._wake = (-1, -1)
        self._restart_at: dict[str, float] = {}

    # -- the whole run -------------------------------------------------------------------------

    def run(
        self,
        on_ready: Callable[[dict[str, Any], list[str]], None],
        prepare: Callable[[], None] = lambda: None,
    ) -> None:
        """Start the group, call ``on_ready(learner's state, urls)``, serve until a signal, stop
        the group. A learner that cannot start (its state directory) raises its error."""
        self._check_state_dir(prepare)
        _warm_up(self.service.model_path)
        previous = self._signals()
        try:
            self.rundir = run_dir()
            self._bind()
            self.learner = self._start_learner()
            message = self._wait_ready(lambda: [self.learner] if self.learner else [])
            if not self.stopping:
                for i in range(self.processes):
                    self.fronts[i] = self._start_front(i)
                self._wait_ready(lambda: list(self.fronts.values()))
            if not self.stopping:
                on_ready(message, self.urls())
            while not self.stopping:
                self._step(1.0)
        except BaseException:
            try:  # the error that stopped the run says more than how the learner then ended
                with contextlib.suppress(ShoalError):
                    self._stop_all()
            finally:
                self._release(previous)
            raise
        try:
            self._stop_all()
        finally:
            self._release(previous)

    def _release(self, previous: dict[int, Any]) -> None:
        """What the run held: signal handlers, sockets, the run directory."""
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(-1)
        for fd in self._wake:
            os.close(fd)
        for socks in self._sockets.values():
            for sock in set(socks):
                sock.close()
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)

    def urls(self) -> list[str]:
        out = []
        if "http" in self._sockets:
            out.append(f"http://{sockets.address(self._sockets['http'][0])}")
        if "tcp" in self._sockets:
            out.append(f"tcp://{sockets.address(self._sockets['tcp'][0])}")
        return out

    def _check_state_dir(self, prepare: Callable[[], None]) -> None:
        """Refuse a state directory in use or made for another model before forking anything
        (the learner opens it for good; a restart of the learner finds it as it left it)."""
        state = StateDir(self.service.state_dir)
        state.open(self.service.model_path, prepare)
        state.close()

    def _signals(self) -> dict[int, Any]:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake = (r, w)
        signal.set_wakeup_fd(w)

        def stop(signum: int, frame: object) -> None:
            self.stopping = True

        handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGCHLD: lambda s, f: None}
        return {sig: signal.signal(sig, h) for sig, h in handlers.items()}

    def _bind(self) -> None:
        for name, config in (("http", self.http), ("tcp", self.tcp)):
            if config is not None:
                socks = listeners(config.host, config.port, f"--{name}", self.processes)
                self._sockets[name] = socks
                self._bound[name] = (config.host, socks[0].getsockname()[1])

    # -- children ------------------------------------------------------------------------------

    def _fork(self, role: str, target: Callable[[int], int], keep: set[int]) -> _Child:
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(r)
                self._become_child({w, *keep})
                code = target(w)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        return _Child(role, pid, r, time.monotonic())

    def _become_child(self, keep: set[int]) -> None:
        """In a new child: die with the supervisor, drop the supervisor's signal handling and
        the file descriptors that are not its own."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self.pid:  # the supervisor died before the prctl
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        others = {*self._wake}
        others |= {c.ready_fd for c in [self.learner, *self.fronts.values()] if c is not None}
        others |= {s.fileno() for socks in self._sockets.values() for s in socks}
        for fd in others - keep:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _start_learner(self) -> _Child:
        rundir = self.rundir
        assert rundir is not None
        config, publish = self.service, self.publish
        return self._fork(
            "learner", lambda ready: learnerproc.run(config, rundir, ready, publish), set()
        )

    def _start_front(self, index: int) -> _Child:
        rundir = self.rundir
        assert rundir is not None
        for name, socks in self._sockets.items():
            if socks[index].fileno() < 0:  # closed when its predecessor died (_close_sockets)
                host, port = self._bound[name]
                socks[index] = sockets.listen(host, port, f"--{name}", reuse_port=True)
        mine = {name: socks[index] for name, socks in self._sockets.items()}

        def target(ready: int) -> int:
            return frontend.run(
                index, self.service, self.http, self.tcp, mine, rundir, ready, self.pid
            )

        child = self._fork(f"front end {index}", target, {s.fileno() for s in mine.values()})
        child.index = index
        return child

    def _close_sockets(self, index: int) -> None:
        """A front end that dies as soon as it starts may do so again: close its sockets, so
        that new connections go to the others instead of waiting in its queue for a second
        (those queued are refused and reconnect); its successor gets new ones."""
        for socks in self._sockets.values():
            if len(set(socks)) > 1:  # not the one socket that all share
                socks[index].close()

    # -- watching ------------------------------------------------------------------------------

    def _children(self) -> list[_Child]:
        return [c for c in [self.learner, *self.fronts.values()] if c is not None]

    def _wait_ready(self, group: Callable[[], list[_Child]]) -> dict[str, Any]:
        """Step until every child of ``group`` is ready; the first one's message. A learner
        that reports an error while the server starts stops it with that error."""
        while not self.stopping:
            children = group()
            if children and all(c.ready for c in children):
                return children[0].message or {}
            self._step(1.0)
        return {}

    def _step(self, timeout: float) -> None:
        """Wait for a signal or a child's message, then reap and replace dead children."""
        waiting = [c.ready_fd for c in self._children() if c.message is None and c.ready_fd >= 0]
        due = [t for t in self._restart_at.values()]
        if due:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        try:
            readable, _, _ = select.select([self._wake[0], *waiting], [], [], timeout)
        except InterruptedError:
            readable = []
        if self._wake[0] in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake[0], 4096)
        for child in self._children():
            if child.ready_fd in readable:
                self._read_message(child)
        self._reap()
        self._restart_due()

    def _read_message(self, child: _Child) -> None:
        try:
            data = os.read(child.ready_fd, 4096)
        except BlockingIOError:
            return
        child.buffer += data
        if b"\n" in child.buffer or not data:
            line = bytes(child.buffer).split(b"\n", 1)[0]
            try:
                child.message = json.loads(line) if line else {"error": "exited"}
            except ValueError:
                child.message = {"error": line.decode(errors="replace")}
            os.close(child.ready_fd)
            child.ready_fd = -1
            error = child.message.get("error")
            if error and child.role == "learner" and not self.fronts:
                raise ShoalError(str(error))  # the first start: the command's error

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._died(pid, status)

    def _died(self, pid: int, status: int) -> None:
        child = next((c for c in self._children() if c.pid == pid), None)
        if child is None:
            return
        if child.ready_fd >= 0:
            self._read_message(child)  # an error it wrote before dying
            if child.ready_fd >= 0:
                os.close(child.ready_fd)
                child.ready_fd = -1
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else (
            f"exit code {os.WEXITSTATUS(status)}")  # fmt: skip
        if self.stopping:
            return
        if child.role == "learner" and not self.fronts:
            error = (child.message or {}).get("error") or f"the learner stopped ({how})"
            raise ShoalError(str(error))
        log.error("%s (pid %d) stopped (%s); starting it again", child.role, pid, how)
        quick = time.monotonic() - child.started < _QUICK_DEATH
        if child.index >= 0:
            _metrics_dead(self.rundir, pid)
            if quick:
                self._close_sockets(child.index)
        self._restart_at[child.role] = time.monotonic() + (_QUICK_DEATH if quick else 0.0)
        if child.role == "learner":
            self.learner = None
        else:
            del self.fronts[child.index]
        self._restart_due()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for role, at in list(self._restart_at.items()):
            if at > now or self.stopping:
                continue
            del self._restart_at[role]
            if role == "learner":
                self.learner = self._start_learner()
            else:
                index = int(role.rsplit(" ", 1)[1])
                self.fronts[index] = self._start_front(index)

    # -- stopping ------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Front ends first (they drain their requests, whose acknowledgements come from the
        learner), then the learner (it drains and snapshots)."""
        self.stopping = True
        self._restart_at.clear()
        grace = max(
            self.http.graceful_timeout if self.http else 0.0,
            self.tcp.graceful_timeout if self.tcp else 0.0,
        )
        fronts = list(self.fronts.values())
        self._terminate(fronts, grace + _STOP_GRACE)
        self.fronts.clear()
        if self.learner is not None:
            self._terminate([self.learner], _LEARNER_STOP)
            status = self.learner.message
            self.learner = None
            if status is not None and "exit" in status and status["exit"] != 0:
                raise ShoalError("the learner did not stop cleanly; a restart replays the log")

    def _terminate(self, children: list[_Child], patience: float) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + patience
        left = {c.pid: c for c in children}
        while left:
            for pid, child in list(left.items()):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    del left[pid]
                    if child.role == "learner":
                        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
                        child.message = {**(child.message or {}), "exit": code}
                    if child.ready_fd >= 0:
                        os.close(child.ready_fd)
                        child.ready_fd = -1
            if not left:
                return
            if time.monotonic() > deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            with contextlib.suppress(InterruptedError):
                select.select([self._wake[0]], [], [], 0.05)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake[0], 4096)


def _warm_up(model_path: str) -> None:
    """Load the compiled kernels that children call -- prediction on read-only weights, learning
    -- once, here: every child forked later has them, so a replacement answers at once instead
    of after loading (or compiling) them itself. Best effort: a model it cannot use is the
    learner's error to report."""
    try:
        model = Model.load(model_path)
        batch = parse_lines(model.spec, ["1 | a"])
        reader = model.copy()
        reader.weights.flags.writeable = False
        reader.predict(batch)
        lines.warm_up(reader)  # the TCP path's own kernel
        model.copy().learn(batch)
    except Exception:  # only a head start: the learner reports what is wrong with the model
        pass


def _metrics_dead(rundir: Path | None, pid: int) -> None:
    """A dead front end's open-connection gauge no longer counts (its counters still do)."""
    if rundir is None:
        return
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, str(rundir / "metrics"))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def serve_cluster(
    service: ServiceConfig,
    http: HttpConfig | None,
    tcp: TcpConfig | None,
    processes: int,
    on_ready: Callable[[dict[str, Any], list[str]], None] = lambda state, urls: None,
    publish: str | None = None,
    prepare: Callable[[], None] = lambda: None,
) -> None:
    """``shoal serve --processes N``: serve with a learner and N front ends until SIGTERM;
    ``publish``: a URI where every snapshot is also published (``--publish``); ``prepare``
    runs once the state directory is locked, before anything is forked (``serve --new`` writes
    its model file then)."""
    logging.basicConfig(level=logging.WARNING, format="shoal: %(levelname)s: %(message)s")
    Supervisor(service, http, tcp, processes, publish).run(on_ready, prepare)
