"""Durability the tests can see. kill -9 leaves the page cache intact, so a server that
acknowledged events before they were on disk passed every crash test: here the system calls of
a real ``shoal serve`` are traced (strace), and each acknowledgement must come after the fsync
of the event log's WAL and of ``DIR/seq`` that made its event durable; a snapshot's reply after
the fsync of its file and of its folder. The settings themselves are checked as well."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shoal.serve.state.eventlog import EventLog
from tests.serve.helpers import Clock, event

STRACE = shutil.which("strace")


def test_the_event_log_syncs_every_commit(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.sqlite", ttl=60, clock=Clock())
    log.open()
    try:
        assert log._db is not None
        assert log._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert log._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: every commit
    finally:
        log.close()


_SYNC = re.compile(r"^(\d+) +f(?:data)?sync\((\d+)<([^>]*)>(.*)$")
_RESUMED = re.compile(r"^(\d+) +<\.\.\. f(?:data)?sync resumed>.*= 0")


def _events(trace: str) -> list[tuple[str, str]]:
    """The trace as ("sync", path) once an fsync completes and ("reply", text) per write."""
    out: list[tuple[str, str]] = []
    pending: dict[str, str] = {}  # pid -> path of its fsync in progress
    for line in trace.splitlines():
        if m := _SYNC.match(line):
            pid, path, rest = m[1], m[3], m[4]
            if "unfinished" in rest:
                pending[pid] = path
            elif rest.rstrip().endswith("= 0"):
                out.append(("sync", path))
        elif m := _RESUMED.match(line):
            out.append(("sync", pending.pop(m[1], "?")))
        elif re.match(r"^\d+ +(write|writev|sendto|sendmsg)\(\d+<(?:TCP|socket)", line):
            out.append(("reply", line))
    return out


@pytest.mark.skipif(STRACE is None, reason="needs strace")
@pytest.mark.parametrize("processes", ["0", "2"])  # one process; a learner and 2 front ends
def test_every_acknowledgement_comes_after_the_fsync_that_made_it_durable(
    base_model: Path, tmp_path: Path, processes: str
) -> None:
    state, trace = tmp_path / "state", tmp_path / "trace"
    cmd = [str(STRACE), "-f", "-qq", "-y", "-s", "256", "-o", str(trace),
           "-e", "trace=fsync,fdatasync,write,writev,sendto,sendmsg",
           sys.executable, "-m", "shoal.cli", "serve", str(base_model), "--state-dir", str(state),
           "--http", "127.0.0.1:0", "--snapshot-every-events", "100000",
           "--processes", processes]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = ""
        for line in proc.stderr:
            if m := re.search(r" on (http://\S+)", line):
                url = m.group(1)
                break
        assert url, "shoal serve did not start"
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(6):
                r = client.post("/v1/models/ctr/learn", json={"records": [event(i)]})
                assert r.json()["seqs"] == [i + 1]
            assert client.post("/v1/models/ctr/snapshot").json()["version"] == 2
    finally:  # the server (strace's child), not strace
        server = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        subprocess.run(["kill", "-TERM", *server], check=False)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
    wal, mark = str(state / "events.sqlite-wal"), str(state / "seq")
    acks, synced = 0, set[str]()
    snapshot_reply = False
    for kind, what in _events(trace.read_text()):
        if kind == "sync":
            synced.add(what)
        elif re.search(r'seqs\\":\[\d+\]', what):
            assert {wal, mark} <= synced, f"acknowledged before the fsync of {synced}: {what}"
            acks += 1
            synced = set()
        elif r"\"reason\":\"manual\"" in what:
            tmp = [p for p in synced if re.search(r"/snapshots/\.v00000002\.shoal\..*\.tmp$", p)]
            assert tmp and str(state / "snapshots") in synced, synced
            snapshot_reply = True
    assert acks == 6 and snapshot_reply
