"""Servers as process groups in tests: ``shoal serve`` in a session of its own, the pids of its
processes, and the check that none outlives it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from shoal.serve.cluster.shmweights import Reader
from tests.serve.helpers import tcp_address, wait_until


def alive(pid: int) -> bool:
    """Running (a zombie no parent reaps is dead too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


class Group:
    """``shoal serve ARGS`` in a session of its own; its processes' pids."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-X", "faulthandler", "-m", "shoal.cli", "serve", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # fmt: skip
        self.stderr: list[str] = []
        self.url = ""
        self.tcp: tuple[str, int] | None = None
        self.replayed = -1
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        assert ready.wait(120), "shoal serve did not start:\n" + "".join(self.stderr)
        assert self.replayed >= 0, "shoal serve exited:\n" + "".join(self.stderr)
        self.seen = {self.proc.pid} | children(self.proc.pid)  # every pid of the group
        rundir = Path(f"/dev/shm/shoal-serve-{self.proc.pid}")  # a supervisor's (not a replica's)
        self.rundir = rundir if children(self.proc.pid) else None

    def _read(self, ready: threading.Event) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr.append(line)
                if m := re.search(r", (\d+) replayed\) on (.+)$", line):
                    for url in m.group(2).split(" and "):
                        if url.startswith("http://"):
                            self.url = url
                        else:
                            self.tcp = tcp_address(url)
                    self.replayed = int(m.group(1))
                    ready.set()
        ready.set()

    @property
    def learner(self) -> int:
        """The pid of the learner process that published last."""
        return Reader(Path(f"/dev/shm/shoal-serve-{self.proc.pid}")).pid

    def note_children(self) -> set[int]:
        now = children(self.proc.pid)
        self.seen |= now
        return now

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.note_children()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        self.no_orphans()
        return code

    def kill_supervisor(self) -> None:
        """SIGKILL to the supervisor alone: its children must die with it."""
        self.note_children()
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.no_orphans()

    def no_orphans(self) -> None:
        wait_until(lambda: not any(alive(p) for p in self.seen), 60, "every process to exit")
        killed = self.proc.returncode < 0  # then the next server's run_dir() sweeps it
        if self.rundir is not None and not killed:
            assert not self.rundir.exists(), f"{self.rundir} is left"
