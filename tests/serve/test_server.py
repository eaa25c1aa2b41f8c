"""``shoal serve`` as a real process: kill -9 under load loses no acknowledged event, over HTTP or
TCP; SIGTERM drains and snapshots; and the command line refuses what it should."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shoal import Model
from shoal.cli import main
from shoal.serve.reading.records import parse_lines
from tests.serve.helpers import (
    LineClient,
    event,
    log_contents,
    newest_snapshot,
    offline,
    tcp_address,
    wait_until,
)


class ServeProcess:
    """``shoal serve`` in a subprocess; ``url`` (HTTP) and ``tcp`` once it says it serves."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-X", "faulthandler", "-m", "shoal.cli", "serve", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = ""
        self.tcp: tuple[str, int] | None = None
        self.replayed = -1

    def wait_ready(self) -> None:
        while self.replayed < 0:
            line = self.lines.get(timeout=60)  # the line, or the end of the stream ("")
            if m := re.search(r", (\d+) replayed\) on (.+)$", line):
                self.replayed = int(m.group(1))
                for url in m.group(2).split(" and "):
                    if url.startswith("http://"):
                        self.url = url
                    else:
                        self.tcp = tcp_address(url)
            assert line, f"shoal serve exited: {''.join(self.stderr)}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr.append(line)
                self.lines.put(line)
        self.lines.put("")

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # show where it hangs (faulthandler dumps threads)
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=30)
            wait_until(lambda: not self.lines.empty() and self.lines.queue[-1] == "", 10)
            raise AssertionError("shoal serve did not stop:\n" + "".join(self.stderr)) from None


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Start ``shoal serve`` processes; any left running when the test ends is killed."""
    started: list[ServeProcess] = []

    def _start(*args: str) -> ServeProcess:
        started.append(ServeProcess(*args))
        started[-1].wait_ready()
        return started[-1]

    yield _start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=30)


class Load:
    """Client threads sending learn requests of 1 to 3 unique records, noting each ack."""

    def __init__(self, url: str, threads: int = 4, first: int = 0) -> None:
        self.acked: dict[int, str] = {}
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self._next = iter(range(first, first + 1_000_000))
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(url,)) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self.stop.is_set() and len(self.acked) < 5000:
                with self._lock:
                    records = [event(next(self._next)) for _ in range(1 + len(self.acked) % 3)]
                try:
                    resp = client.post("/v1/models/ctr/learn", json={"records": records})
                except httpx.TransportError:
                    return  # the server is gone (killed, or stopped accepting)
                self.statuses.append(resp.status_code)
                if resp.status_code == 200:
                    with self._lock:
                        self.acked.update(zip(resp.json()["seqs"], records, strict=True))

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


class LineLoad:
    """Client threads sending 1 to 3 unique labeled lines at a time over TCP, noting each line
    whose reply came: its acknowledgement."""

    def __init__(self, address: tuple[str, int], threads: int = 4) -> None:
        self.acked: set[str] = set()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._next = iter(range(1_000_000))
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(address,)) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, address: tuple[str, int]) -> None:
        try:
            with LineClient(address) as client:
                while not self.stop.is_set() and len(self.acked) < 5000:
                    with self._lock:
                        records = [event(next(self._next)) for _ in range(1 + len(self.acked) % 3)]
                    client.send(*records)
                    for record in records:  # one by one: a reply is an ack even if no more come
                        reply = client.read(1)[0]
                        with self._lock:
                            if reply.startswith("error"):
                                self.errors.append(reply)
                            else:
                                self.acked.add(record)
        except OSError:
            return  # the server is gone (killed, or closed the connection)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_kill_9_under_load_loses_no_acknowledged_event(
    base_model: Path, tmp_path: Path, serve_process: Callable[..., ServeProcess]
) -> None:
    state = tmp_path / "state"
    args = (str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0",
            "--snapshot-every-events", "50", "--keep-versions", "1000")  # fmt: skip
    server = serve_process(*args)
    load = Load(server.url)
    wait_until(lambda: len(load.acked) >= 150, what="150 acknowledged events")
    server.proc.kill()  # SIGKILL, mid-load
    server.proc.wait(timeout=30)
    load.join()
    assert set(load.statuses) == {200}

    restarted = serve_process(*args)  # the same command line
    log = log_contents(state)
    seqs = [s for s, _ in log]
    assert seqs == list(range(1, len(log) + 1))
    assert all(dict(log)[s] == r for s, r in load.acked.items())  # every ack is in the log
    assert len({r for _, r in log}) == len(log)  # and every event is there once
    with httpx.Client(base_url=restarted.url, timeout=30) as client:
        info = client.get("/v1/models/ctr").json()
        assert info["applied_seq"] == len(log)  # the replay is done before it serves
        snap = client.post("/v1/models/ctr/snapshot").json()
    assert snap["applied_seq"] == len(log)
    served = Model.load(state / "snapshots" / f"v{snap['version']:08d}.shoal")
    expected = offline(base_model, [r for _, r in log], tmp_path)
    assert served.to_bytes() == expected.to_bytes()
    assert restarted.stop(signal.SIGTERM) == 0


def test_sigterm_drains_in_flight_requests_and_snapshots(
    base_model: Path, tmp_path: Path, serve_process: Callable[..., ServeProcess]
) -> None:
    state = tmp_path / "state"
    server = serve_process(str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0",
                          "--snapshot-every-events", "100000")  # fmt: skip
    load = Load(server.url, threads=3)
    wait_until(lambda: len(load.acked) >= 60, what="60 acknowledged events")
    assert server.stop(signal.SIGTERM) == 0
    load.join()
    assert set(load.statuses) <= {200, 503}  # no request failed midway: 503 once closing
    assert "stopped; every acknowledged event is in the last snapshot" in "".join(server.stderr)
    snapshot = newest_snapshot(state)
    log = log_contents(state)
    assert load.acked and max(load.acked) <= len(log)
    expected = offline(base_model, [r for _, r in log], tmp_path)
    assert Model.load(snapshot).to_bytes() == expected.to_bytes()  # all of them, no replay
    restarted = serve_process(str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0")
    assert restarted.replayed == 0
    assert restarted.stop(signal.SIGINT) == 0


def test_command_line_refusals(
    base_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    serve_process: Callable[..., ServeProcess],
) -> None:
    state = str(tmp_path / "state")
    assert main(["serve", str(base_model), "--state-dir", state, "--http", "0.0.0.0:0"]) == 2
    assert "0.0.0.0 is not a loopback address" in capsys.readouterr().err
    assert main(["serve", str(base_model), "--state-dir", state, "--http", "8080"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert main(["serve", str(base_model), "--state-dir", state, "--tcp", "26542"]) == 2
    assert "--tcp: expected HOST:PORT" in capsys.readouterr().err
    tcp_anywhere = ["--tcp", "0.0.0.0:0", "--token", "s3cret"]  # a token does not guard TCP
    assert main(["serve", str(base_model), "--state-dir", state, *tcp_anywhere]) == 2
    assert "0.0.0.0 is not a loopback address, and the line protocol has no authentication" in (
        capsys.readouterr().err
    )
    assert main(["serve", str(base_model), "--state-dir", state, "--name", "a/b"]) == 2
    assert "cannot name a model in a URL" in capsys.readouterr().err
    other = tmp_path / "other.shoal"
    offline(base_model, [event(1)], tmp_path).save(other)
    server = serve_process(str(base_model), "--state-dir", state, "--http", "127.0.0.1:0")
    assert main(["serve", str(base_model), "--state-dir", state, "--http", "127.0.0.1:0"]) == 2
    assert "in use by another shoal serve" in capsys.readouterr().err
    assert server.stop(signal.SIGTERM) == 0
    assert main(["serve", str(other), "--state-dir", state, "--http", "127.0.0.1:0"]) == 2
    assert "was made for model file" in capsys.readouterr().err


@pytest.mark.parametrize("kind", [[], ["--model", "fm", "--rank", "4"]], ids=["linear", "fm"])
def test_a_new_model_from_flags_serves_learns_and_restarts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    serve_process: Callable[..., ServeProcess],
    kind: list[str],
) -> None:
    model, state = tmp_path / "fresh.shoal", str(tmp_path / "state")
    args = [str(model), "--new", "--loss", "squared", "--bits", "12", "-q", "uv",
            "--state-dir", state, "--http", "127.0.0.1:0", *kind]  # fmt: skip
    server = serve_process(*args)
    made = Model.load(model)
    assert (made.config.loss, made.spec.bits, made.config.model) == (
        "squared", 12, kind[1] if kind else "linear",
    )  # fmt: skip
    assert made.config.rank == (4 if kind else 0)
    r = httpx.post(f"{server.url}/v1/models/fresh/learn?wait=true",
                   json={"records": ["2.5 |u a |v b", "-1 |u c"]})  # fmt: skip
    assert r.json()["applied"] is True
    assert server.stop(signal.SIGTERM) == 0
    restarted = serve_process(*args)  # the same command line: the file made first is kept
    info = httpx.get(f"{restarted.url}/v1/models/fresh").json()
    assert info["applied_seq"] == 2 and info["config"]["loss"] == "squared"
    assert restarted.stop(signal.SIGTERM) == 0
    expected = Model.load(model)
    expected.learn(parse_lines(expected.spec, ["2.5 |u a |v b", "-1 |u c"]))
    assert Model.load(newest_snapshot(Path(state))).to_bytes() == expected.to_bytes()
    assert main(["serve", *args[:2], "--bits", "14", *args[6:]]) == 2
    assert "fresh.shoal exists and is not the model these flags make" in capsys.readouterr().err
    assert main(["serve", args[0], "--bits", "14", *args[6:]]) == 2
    assert "--bits: makes a new model: add --new" in capsys.readouterr().err


def test_kill_9_under_tcp_load_loses_no_acknowledged_line(
    base_model: Path, tmp_path: Path, serve_process: Callable[..., ServeProcess]
) -> None:
    state = tmp_path / "state"
    args = (str(base_model), "--state-dir", str(state), "--tcp", "127.0.0.1:0",
            "--snapshot-every-events", "50")  # fmt: skip
    server = serve_process(*args)
    assert server.tcp is not None and server.url == ""  # --tcp alone: no HTTP
    load = LineLoad(server.tcp)
    wait_until(lambda: len(load.acked) >= 150, what="150 acknowledged lines")
    server.proc.kill()  # SIGKILL, mid-load
    server.proc.wait(timeout=30)
    load.join()
    assert load.errors == []

    restarted = serve_process(*args)  # the same command line
    log = [record for _, record in log_contents(state)]
    assert load.acked <= set(log) and len(set(log)) == len(log)  # every ack, each once
    assert restarted.stop(signal.SIGTERM) == 0  # the shutdown snapshot holds the whole log
    expected = offline(base_model, log, tmp_path)
    assert Model.load(newest_snapshot(state)).to_bytes() == expected.to_bytes()


def test_sigterm_with_tcp_and_http_clients_connected_drains_both(
    base_model: Path, tmp_path: Path, serve_process: Callable[..., ServeProcess]
) -> None:
    state = tmp_path / "state"
    server = serve_process(str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0",
                          "--tcp", "127.0.0.1:0", "--snapshot-every-events", "100000")  # fmt: skip
    assert server.tcp is not None and server.url
    lines, requests = LineLoad(server.tcp, threads=2), Load(server.url, threads=2, first=10**6)
    wait_until(lambda: len(lines.acked) >= 60 and len(requests.acked) >= 30, what="60 + 30 acks")
    assert server.stop(signal.SIGTERM) == 0
    lines.join()
    requests.join()
    assert set(lines.errors) <= {"error: the server is shutting down"}  # a late connection
    assert set(requests.statuses) <= {200, 503}
    assert "stopped; every acknowledged event is in the last snapshot" in "".join(server.stderr)
    log = [record for _, record in log_contents(state)]
    assert lines.acked <= set(log) and set(requests.acked.values()) <= set(log)
    expected = offline(base_model, log, tmp_path)
    assert Model.load(newest_snapshot(state)).to_bytes() == expected.to_bytes()
