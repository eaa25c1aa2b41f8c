"""Every process shoal starts may die: the fork server and the workers, killed with SIGKILL at
start-up, in a round and between rounds (the merge), repeatedly; the run ends with the bytes of
an undisturbed run, and nothing prints a traceback.

Every wait here waits on a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.data.synthetic import generate_clicks
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from shoal.train import forkserver
from shoal.train.coordinator import ClusterOptions, Coordinator, RoundStatus
from shoal.train.executor import Event
from shoal.train.local import LocalExecutor
from shoal.train.single import TrainOptions
from shoal.train.task import Task

ROWS = 6_000
OPTIONS = TrainOptions(passes=2)
CLUSTER = ClusterOptions(workers=2, shards=6, tasks_per_round=2, max_attempts=20)  # 8 rounds
DEADLINE = 120.0


def new_model() -> Model:
    return Model(FeatureSpec(bits=16), LearnerConfig())


def wait_for(condition: Callable[[], object], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"gave up after {DEADLINE:.0f}s waiting for {what}")
        time.sleep(0.005)  # a polling interval, not a synchronisation


def kill(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clicks") / "clicks.vw"
    generate_clicks(path, ROWS)
    return path


@pytest.fixture(scope="module")
def reference(clicks: Path) -> bytes:
    model, report = Coordinator(new_model(), [clicks], OPTIONS, CLUSTER).run()
    # a pass: 3 rounds, then a step that judges its model on the held-out rows
    assert (report.rounds, report.worker_deaths, report.retries) == (8, 0, 0)
    return model.to_bytes()


# -- the server on its own -------------------------------------------------------------------


def test_a_server_forks_workers_and_a_dead_server_says_so() -> None:
    server = forkserver.ForkServer()
    try:
        ours, theirs = socket.socketpair()
        server.request(theirs.fileno())
        theirs.close()
        pid, pidfd = server.reply()  # blocks until the server is warm and has forked
        assert ours.recv(64)  # the worker's "ready" (a pickled None)
        assert pidfd is not None
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert ours.recv(64) == b""  # its connection ends with it
        os.close(pidfd)
        ours.close()
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the server to reap its worker")
        kill(server.pid)
        with pytest.raises(EOFError):
            server.reply()
    finally:
        server.close()
    assert not server.alive()


def test_workers_asked_for_early_are_the_runs_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shoal train`` asks for its workers right after parsing its arguments; the executor
    adopts them instead of asking again."""
    monkeypatch.setattr(forkserver, "_idle", [])
    forkserver.launch(2)
    [server] = forkserver._idle
    assert len(server.early) == 2
    executor = LocalExecutor(2)
    try:
        executor.start()
        assert (server.early, server.forked, executor.idle()) == ([], 2, 2)
    finally:
        executor.close()
        server.close()


# -- helpers killed during a run -------------------------------------------------------------


class Killer(LocalExecutor):
    """Kills its own fork server and workers at chosen moments of the run.

    ``at_start``: the server right after it is asked for the first workers (before it has
    imported shoal), and each worker as soon as its process id is known (before it is ready).
    ``at_submit``: on attempts ``doomed``, the worker that just took it, then the server while
    the replacement is asked for. ``at_merge`` (called from ``on_round``): both.
    """

    def __init__(self, kinds: set[str], points: set[str], doomed: set[int]) -> None:
        super().__init__(2)
        self.kinds, self.points, self.doomed = kinds, points, doomed
        self.kills: list[str] = []
        self.stash: list[Event] = []  # events seen by a poll of our own, for the coordinator
        self.starting = False

    def _kill(self, kind: str, pid: int | None) -> None:
        if kind in self.kinds and kill(pid):
            self.kills.append(kind)

    def start(self, deadline: float = 120.0) -> None:
        self.launch()
        if "start" in self.points:
            self._kill("server", self.server_pid())  # asked for workers, still importing
        self.starting = "start" in self.points
        super().start(deadline)
        self.starting = False

    def _server_replied(self) -> None:
        before = set(self.pids())
        super()._server_replied()
        if self.starting and self.kills.count("worker") < 3:
            for pid in set(self.pids()) - before:
                self._kill("worker", pid)  # forked, not ready yet

    def submit(self, attempt: int, task: Task) -> None:
        super().submit(attempt, task)
        if "round" in self.points and attempt in self.doomed:
            self._kill("worker", next(p for p, a in self.attempts().items() if a == attempt))
            # the death is noticed and a replacement asked for, then its server is killed
            self.stash += super().poll(timeout=0.2)
            self._kill("server", self.server_pid())

    def poll(self, timeout: float) -> list[Event]:
        events, self.stash = self.stash + super().poll(timeout), []
        return events

    def at_merge(self, status: RoundStatus) -> None:
        if "merge" in self.points and status.step in (1, 3):
            self._kill("server", self.server_pid())
            self._kill("worker", (self.pids() or [None])[0])


@pytest.mark.parametrize(
    ("kinds", "points"),
    [
        ({"server"}, {"start"}),
        ({"worker"}, {"start"}),
        ({"server"}, {"round", "merge"}),
        ({"worker"}, {"round", "merge"}),
        ({"server", "worker"}, {"start", "round", "merge"}),
    ],
    ids=["server-start", "worker-start", "server-run", "worker-run", "all"],
)
def test_killed_helpers_change_nothing(
    clicks: Path,
    reference: bytes,
    kinds: set[str],
    points: set[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    executor = Killer(kinds, points, doomed={1, 6})
    coord = Coordinator(
        new_model(), [clicks], OPTIONS, CLUSTER, executor, on_round=executor.at_merge
    )
    model, report = coord.run()
    assert model.to_bytes() == reference
    assert executor.kills, "nothing was killed"
    if "worker" in kinds and "round" in points:
        assert report.worker_deaths >= 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "Error" not in err


def test_a_server_that_cannot_start_stops_the_run(
    clicks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restarted a few times, then an error: not a run that waits forever (a server killed by
    a signal, as in the tests above, is restarted however often it happens)."""
    monkeypatch.setattr(forkserver, "_idle", [])  # no server left over from another test
    monkeypatch.setattr(forkserver, "_BOOT", "import sys; sys.exit(3)")
    executor = LocalExecutor(2)
    with pytest.raises(Exception, match="fork server exited 5 times in a row"):
        Coordinator(new_model(), [clicks], OPTIONS, CLUSTER, executor).run()


# -- the shoal command, its helpers killed from outside -----------------------------------------


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_the_command_survives_its_helpers_killed_again_and_again(
    clicks: Path, tmp_path: Path
) -> None:
    """``shoal train --workers 2``: the fork server and every worker it has are killed, again
    and again while the run goes on; the model is that of a run left alone, and stderr has no
    traceback (workers do not complain about a coordinator that went away either)."""
    args = ["train", str(clicks), "--workers", "2", "--shards", "6", "--tasks-per-round", "2",
            "--passes", "2", "--bits", "16", "--max-attempts", "20"]  # fmt: skip
    quiet = subprocess.run(
        [sys.executable, "-m", "shoal.cli", *args, "-o", str(tmp_path / "quiet.shoal")],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    cmd = [sys.executable, "-m", "shoal.cli", *args, "-o", str(tmp_path / "killed.shoal")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    killed: list[int] = []
    helpers: set[str] = set()  # the command lines of the coordinator's own children

    def killer() -> None:
        # twice: wait for the server to have workers, then kill it and all of them
        while len(killed) < 6 and proc.poll() is None:
            for server in children(proc.pid):
                with contextlib.suppress(OSError):
                    helpers.add(Path(f"/proc/{server}/cmdline").read_text())
                workers = children(server)
                if workers:
                    for pid in [server, *workers]:
                        if kill(pid):
                            killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    thread.join(DEADLINE)
    assert proc.returncode == 0, err
    assert killed
    # the fork server is the only helper: no multiprocessing resource tracker to die
    helpers.discard("")  # a killed server not reaped yet has no command line
    assert helpers and all("shoal.train.forkserver" in c for c in helpers), helpers
    assert "Traceback" not in err and "Error" not in err, err
    assert (tmp_path / "killed.shoal").read_bytes() == (tmp_path / "quiet.shoal").read_bytes()


def test_helpers_of_a_killed_coordinator_exit_quietly(clicks: Path, tmp_path: Path) -> None:
    """SIGKILL the ``shoal train`` process alone, mid-run: its fork server and workers see
    their connections end and exit (stderr, which they share, reaches end of file) without a
    traceback, busy workers included."""
    cmd = [sys.executable, "-m", "shoal.cli", "train", str(clicks), "--workers", "2",
           "--passes", "5000", "--bits", "16", "-o", str(tmp_path / "never.shoal")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first round's line: the workers are busy
        assert line.startswith("shoal: round 1/"), line
        os.kill(proc.pid, signal.SIGKILL)
        rest: list[str] = []
        reader = threading.Thread(target=lambda: rest.append(proc.stderr.read()), daemon=True)
        reader.start()
        reader.join(DEADLINE)  # end of file: every process holding stderr has exited
        assert not reader.is_alive(), "a helper outlived its coordinator"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(DEADLINE)
        if proc.stderr is not None:
            proc.stderr.close()
    assert "Traceback" not in rest[0] and "Error" not in rest[0], rest[0]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_run_in_one_line_and_leaves_no_process(
    clicks: Path, tmp_path: Path
) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the fork server and the
    workers ignore it, the coordinator stops them and says so in one line."""
    cmd = [sys.executable, "-m", "shoal.cli", "train", str(clicks), "--workers", "2",
           "--passes", "5000", "--bits", "16", "-o", str(tmp_path / "never.shoal")]  # fmt: skip
    # as from a terminal: a runner started in the background (nohup, `cmd &`) hands its
    # children SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("shoal: round 1/")  # mid-run
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(DEADLINE)

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert proc.returncode == 130
    assert err == "shoal: interrupted\n"
    wait_for(group_gone, "the fork server and the workers to exit")
