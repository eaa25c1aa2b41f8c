"""The findings of an independent probe of ``shoal serve``, replayed against the real server
process: each test sends the payload or makes the fault that once gave a 5xx, held memory
without bound, starved the server or lost acknowledged events silently, and checks what the
server does now. Memory is read from /proc (VmRSS)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from shoal import FeatureSpec, LearnerConfig, Model
from tests.serve.helpers import event, newest_snapshot, offline, wait_until
from tests.serve.test_server import ServeProcess

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
M = "/v1/models/ctr"


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Server:
    """A running ``shoal serve`` with a client that carries the token."""

    def __init__(self, process: ServeProcess) -> None:
        self.process = process
        self.client = httpx.Client(base_url=process.url, timeout=60, headers=AUTH)

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def kill(self) -> None:
        self.client.close()
        self.process.proc.kill()
        self.process.proc.wait(timeout=30)

    def stop(self) -> int:
        self.client.close()
        return self.process.stop(signal.SIGTERM)


@pytest.fixture
def serve(base_model: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(*flags, state="state")``: ``shoal serve`` on the base model, a token, port 0."""
    started: list[ServeProcess] = []

    def _start(*flags: str, state: str = "state", model: Path | None = None) -> Server:
        args = [str(model or base_model), "--state-dir", str(tmp_path / state),
                "--http", "127.0.0.1:0", "--token", TOKEN, *flags]  # fmt: skip
        started.append(ServeProcess(*args))
        started[-1].wait_ready()
        return Server(started[-1])

    yield _start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=30)


@pytest.fixture
def plain_model(tmp_path: Path) -> Path:
    """A model without interactions (``ctr``): huge records parse in linear time."""
    path = tmp_path / "plain" / "ctr.shoal"
    path.parent.mkdir()
    Model(FeatureSpec(bits=10), LearnerConfig(loss="logistic")).save(path)
    return path


def shoal_serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``shoal serve`` that is expected to exit at start-up."""
    cmd = [sys.executable, "-m", "shoal.cli", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def assert_4xx(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    return str(response.json()["error"])


# -- 1. load takes model files only ----------------------------------------------------------------


def test_load_takes_model_files_under_the_models_dir_only(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    models = base_model.parent
    offline(base_model, [event(1)], tmp_path).save(models / "next.shoal")
    (models / "notes.txt").write_text("not a model\n")
    (models / "sub").mkdir()
    os.mkfifo(models / "pipe.shoal")
    with open(models / "huge.shoal", "wb") as f:  # a sparse file the header does not describe
        f.write(base_model.read_bytes()[:64])
        f.truncate(20 << 30)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.shoal"
    shutil.copy(base_model, outside)
    server = serve()
    before = rss_mb(server.pid)

    def load(path: object) -> httpx.Response:  # JSON escapes what UTF-8 cannot hold
        return server.client.post(f"{M}/load", content=json.dumps({"path": path}).encode())

    refused = ["/dev/zero", "/etc/passwd", "/nonexistent/x.shoal", str(models / "sub"),
               str(models / "notes.txt"), str(outside), "../" + outside.name,
               str(models / "missing.shoal"), "/proc/self/environ"]  # fmt: skip
    errors = {p: assert_4xx(load(p)) for p in refused}
    assert len(set(errors.values())) == 1, errors  # nothing to tell one path from another
    assert "/etc" not in next(iter(errors.values()))
    assert_4xx(load(str(models / "huge.shoal")))
    threads = [threading.Thread(target=load, args=("pipe.shoal",)) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for bad in ["a\x00b.shoal", "\ud800.shoal", "x" * 5000 + ".shoal", "a/" * 3000 + "b", ""]:
        assert_4xx(load(bad))
    ok = load("next.shoal")  # relative to --models-dir: the served model's directory
    assert ok.status_code == 200, ok.text
    assert ok.json()["reason"] == "load"
    assert rss_mb(server.pid) - before < 100
    assert server.stop() == 0


def test_models_dir_flag_names_where_load_looks(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    offline(base_model, [event(2)], tmp_path).save(store / "b.shoal")
    server = serve("--models-dir", str(store))
    assert_4xx(server.client.post(f"{M}/load", json={"path": str(base_model)}))
    ok = server.client.post(f"{M}/load", json={"path": str(store / "b.shoal")})
    assert ok.status_code == 200, ok.text
    assert server.stop() == 0


# -- 2. what a client can make the server hold ---------------------------------------------------


def test_features_kept_for_feedback_are_written_while_idle_and_survive_kill_9(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    ids = [
        server.client.post(f"{M}/predict", json={"records": [f"|u id{i} |v x:0.5"]}).json()[
            "event_ids"
        ][0]
        for i in range(20)
    ]

    def kept() -> int:
        with sqlite3.connect(tmp_path / "state" / "events.sqlite") as db:
            return int(db.execute("SELECT count(*) FROM predictions").fetchone()[0])

    wait_until(lambda: kept() == 20, what="the features of 20 predictions in the event log")
    server.kill()
    server = serve()
    for i in ids:
        r = server.client.post(f"{M}/feedback", json={"event_id": i, "label": 1})
        assert r.status_code == 200, r.text
    assert server.stop() == 0


def test_features_over_the_buffer_are_dropped_counted_and_their_feedback_is_410(
    serve: Callable[..., Server], plain_model: Path
) -> None:
    server = serve("--feedback-buffer-bytes", str(1 << 20), model=plain_model)
    big = "|u " + " ".join(f"f{i}" for i in range(300_000))  # ~2 MB of features
    r = server.client.post(f"{M}/predict", json={"records": [big]})
    assert r.status_code == 200, r.text
    dropped = r.json()["event_ids"][0]
    small = server.client.post(f"{M}/predict", json={"records": ["|u a"]}).json()["event_ids"][0]
    feedback = server.client.post(f"{M}/feedback", json={"event_id": dropped, "label": 1})
    assert feedback.status_code == 410, feedback.text
    assert "not kept" in feedback.json()["error"]
    ok = server.client.post(f"{M}/feedback", json={"event_id": small, "label": 1})
    assert ok.status_code == 200, ok.text
    metrics = server.client.get("/metrics").text
    assert 'shoal_feedback_features_dropped_total{model="ctr"} 1.0' in metrics
    assert server.stop() == 0


def test_large_predictions_hold_bounded_memory(
    serve: Callable[..., Server], plain_model: Path
) -> None:
    """The features of 7 MB predictions are written within moments, idle or not: what the
    server holds does not grow with the predictions made (it held every one until a learn)."""
    server = serve(model=plain_model)
    record = "|u " + " ".join(f"feature{i}" for i in range(500_000))  # ~7 MB
    body = json.dumps({"records": [record]}).encode()

    def predict(n: int) -> float:
        for _ in range(n):
            r = server.client.post(f"{M}/predict", content=body)
            assert r.status_code == 200, r.text
        return rss_mb(server.pid)

    warm = predict(5)  # the allocator's arenas reach their size
    after = predict(25)  # 175 MB of features, were they held
    assert after - warm < 60, (warm, after)
    assert server.stop() == 0


def test_a_large_record_does_not_hold_up_other_clients(serve: Callable[..., Server]) -> None:
    """Parsed on the event loop, a 7 MB record held every other request up for its parse: now
    it is parsed in a thread, so a small prediction is answered while the large one runs."""
    server = serve()  # -q uv: the row is kept for interactions
    record = "|u " + " ".join(f"feature{i}" for i in range(500_000))
    body = json.dumps({"records": [record]}).encode()
    done = threading.Event()
    small_answered: list[bool] = []

    def large() -> None:
        with httpx.Client(base_url=server.process.url, timeout=120) as client:
            while not done.is_set():
                client.post(f"{M}/predict", content=body)

    senders = [threading.Thread(target=large) for _ in range(2)]
    for t in senders:
        t.start()
    try:
        for _ in range(20):
            r = server.client.post(f"{M}/predict", json={"records": ["|u a"]})
            small_answered.append(r.status_code == 200)
    finally:
        done.set()
        for t in senders:
            t.join()
    assert all(small_answered)
    assert server.stop() == 0


def test_a_record_whose_interactions_explode_is_refused(serve: Callable[..., Server]) -> None:
    """``-q uv`` on 3,000 features in u and 3,000 in v makes 9 million features (72 MB of
    arrays) from a 60 KB line; 50,000 of each made 20 GB."""
    server = serve()
    before = rss_mb(server.pid)
    u, v = (" ".join(f"{ns}{i}" for i in range(3000)) for ns in "uv")
    for path, record in [("predict", f"|u {u} |v {v}"), ("learn", f"1 |u {u} |v {v}")]:
        r = server.client.post(f"{M}/{path}", json={"records": [record]})
        assert r.status_code == 413 and "interactions" in r.json()["error"], r.text
    ok = server.client.post(f"{M}/predict", json={"records": [f"|u {u} |v a b"]})
    assert ok.status_code == 200, ok.text  # 6,000 interaction features are fine
    assert rss_mb(server.pid) - before < 100
    assert server.stop() == 0


# -- 3. connections cannot starve the server -----------------------------------------------------


@contextmanager
def connections(url: str, n: int, send: bytes = b"") -> Iterator[list[socket.socket]]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((host, int(port)), timeout=30)
            if send:
                s.sendall(send)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


SLOW_HEAD = b"POST /v1/models/ctr/predict HTTP/1.1\r\nHost: x\r\nX-Slow: "


@pytest.mark.parametrize("send", [b"", SLOW_HEAD], ids=["idle", "slowloris"])
def test_idle_and_slow_connections_do_not_starve_the_server(
    serve: Callable[..., Server], send: bytes
) -> None:
    server = serve("--max-connections", "32")
    url = server.process.url
    with connections(url, 300, send), httpx.Client(base_url=url, timeout=30) as fresh:
        for path in ["/v2/health/live", "/v2/health/ready", f"{M}"]:
            assert fresh.get(path).status_code == 200, path
        r = fresh.post(f"{M}/predict", json={"records": ["|u a"]})
        assert r.status_code == 200, r.text
    assert server.stop() == 0


def test_a_request_head_or_body_that_never_ends_is_cut_at_the_deadline(
    serve: Callable[..., Server],
) -> None:
    server = serve("--request-timeout", "1")
    head = b"POST /v1/models/ctr/predict HTTP/1.1\r\nHost: x\r\n"
    body = head + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"rec'
    for partial in (head, body):
        with connections(server.process.url, 1, partial) as (s,):
            s.settimeout(60)  # the server answers (408) and closes long before
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
    assert server.stop() == 0


# -- 4. recovery is never silent -----------------------------------------------------------------


def learn(server: Server, first: int, n: int) -> list[int]:
    seqs: list[int] = []
    for i in range(first, first + n):
        r = server.client.post(f"{M}/learn", json={"records": [event(i)]})
        assert r.status_code == 200, r.text
        seqs += r.json()["seqs"]
    return seqs


def test_a_cut_event_log_stops_the_server_until_the_loss_is_accepted(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = serve("--snapshot-every-events", "1000000")
    seqs = learn(server, 0, 12)
    server.kill()
    (state / "events.sqlite-wal").write_bytes(b"")  # the WAL, and the 12 events in it, cut
    failed = shoal_serve(str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0")
    assert failed.returncode != 0
    assert "internal error" not in failed.stderr
    assert "events 1 to 12" in failed.stderr and "--accept-event-loss" in failed.stderr
    server = serve("--accept-event-loss")
    assert learn(server, 100, 1) == [max(seqs) + 1]  # a sequence number is never used twice
    info = server.client.get(M).json()
    assert info["logged_seq"] == max(seqs) + 1
    server.kill()
    server = serve()  # the loss was accepted once: no flag needed again
    assert server.stop() == 0


def test_a_gap_in_the_event_log_stops_the_server(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = serve("--snapshot-every-events", "1000000")
    learn(server, 0, 10)
    server.kill()
    with sqlite3.connect(state / "events.sqlite") as db:
        db.execute("DELETE FROM events WHERE seq IN (4, 5)")
    failed = shoal_serve(str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0")
    assert failed.returncode != 0 and "internal error" not in failed.stderr
    assert "events 4 to 5" in failed.stderr, failed.stderr
    server = serve("--accept-event-loss")
    assert server.client.get(M).json()["applied_seq"] == 10
    assert server.stop() == 0


def test_a_snapshot_with_altered_metadata_or_a_wrong_name_is_not_restored(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = serve("--snapshot-every-events", "1000000", "--keep-versions", "10")
    learn(server, 0, 6)
    assert server.client.post(f"{M}/snapshot").status_code == 200  # v2 at seq 6
    learn(server, 6, 6)
    assert server.client.post(f"{M}/snapshot").status_code == 200  # v3 at seq 12
    learn(server, 12, 3)
    server.kill()
    records = [event(i) for i in range(15)]
    expected = offline(base_model, records, tmp_path).examples_learned
    v3 = newest_snapshot(state)
    data = v3.read_bytes()
    altered = data.replace(b'"x-serve.applied_seq":"12"', b'"x-serve.applied_seq":"06"')
    assert altered != data
    v3.write_bytes(altered)  # would apply events 7..12 twice
    server = serve()
    info = server.client.get(M).json()
    assert (info["applied_seq"], info["examples_learned"]) == (15, expected)
    server.kill()
    for snap in (state / "snapshots").glob("v*.shoal"):
        if snap.name != "v00000001.shoal":
            snap.unlink()
    newest = state / "snapshots" / "v00000009.shoal"
    shutil.copy(state / "snapshots" / "v00000001.shoal", newest)  # v1 under a newer name
    server = serve()  # v1 itself, then the whole log (nothing was pruned)
    info = server.client.get(M).json()
    assert (info["applied_seq"], info["examples_learned"]) == (15, expected)
    assert server.stop() == 0


# -- 5. failures of storage are reported, not fatal ------------------------------------------------


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_answers_503_and_the_learner_goes_on(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    snapshots = tmp_path / "state" / "snapshots"
    server = serve("--snapshot-every-events", "1000000")
    kept = {p.name: p.read_bytes() for p in snapshots.iterdir()}
    with tmpfs(snapshots, "4m"):  # a small disk under the running server's snapshots
        for name, data in kept.items():
            (snapshots / name).write_bytes(data)
        filler = snapshots / "filler"
        with open(filler, "wb") as f:  # fill the disk to the last block
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        learn(server, 0, 3)
        for path, body in [("snapshot", None), ("rollback", {"version": 1})]:
            r = server.client.post(f"{M}/{path}", json=body)
            assert r.status_code == 503, r.text
            assert "No space left on device" in r.json()["error"]
        assert server.client.get("/v2/health/ready").status_code == 200
        r = server.client.post(f"{M}/learn?wait=true", json={"records": [event(9)]})
        assert r.json()["applied"] is True
        filler.unlink()  # space returns
        assert server.client.post(f"{M}/snapshot").status_code == 200
        subprocess.run(["mount", "-o", "remount,ro", str(snapshots)], check=True)
        r = server.client.post(f"{M}/rollback", json={"version": 1})
        assert r.status_code == 503 and "Read-only file system" in r.json()["error"], r.text
        assert server.client.get("/v2/health/ready").status_code == 200
        server.kill()


def test_a_read_only_state_dir_at_start_is_a_clear_error(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", "4m") as ro:
        assert serve(state="ro/state").stop() == 0  # a state directory, then made read-only
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        for state in (ro / "state", ro / "new"):
            failed = shoal_serve(str(base_model), "--state-dir", str(state), "--http",
                                 "127.0.0.1:0")  # fmt: skip
            assert failed.returncode == 2, failed.stderr
            assert "internal error" not in failed.stderr
            assert "Read-only file system" in failed.stderr, failed.stderr


# -- 7, 8. no 5xx; nothing said about the server's files without the token -------------------------


def test_requests_that_gave_500_get_4xx(serve: Callable[..., Server]) -> None:
    server = serve()
    c = server.client
    huge = b"9" * 5000
    for path, body in [
        ("predict", b'{"records": [{"a": ' + huge + b"}]}"),
        ("learn", b'{"records": [{"label": ' + huge + b', "features": {"a": 1}}]}'),
        ("feedback", b'{"event_id": "x", "label": ' + huge + b"}"),
        ("rollback", b'{"version": ' + huge + b"}"),
    ]:
        assert "digits" in assert_4xx(c.post(f"{M}/{path}", content=body))
    infer = "/v2/models/ctr/infer"
    tensor = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [%s]}]}'
    assert_4xx(c.post(infer, content=tensor % huge))
    assert_4xx(c.post(infer, content=tensor % (b"1" + b"0" * 400)))
    header = {"Inference-Header-Content-Length": "9" * 5000}
    assert_4xx(c.post(infer, content=b'{"inputs": []}', headers=header))
    assert server.stop() == 0


def test_open_routes_show_no_server_paths(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    server = serve()
    offline(base_model, [event(3)], tmp_path).save(base_model.parent / "next.shoal")
    assert server.client.post(f"{M}/load", json={"path": "next.shoal"}).status_code == 200
    with httpx.Client(base_url=server.process.url) as anonymous:
        for path in [M, f"{M}/versions", "/v1/models", "/v2/models/ctr"]:
            text = anonymous.get(path).text
            assert str(tmp_path) not in text, (path, text)
    assert str(tmp_path) in server.client.get(f"{M}/versions").text  # the token shows them
    assert server.stop() == 0


def test_new_does_not_write_the_model_when_the_state_dir_is_locked(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    fresh = tmp_path / "fresh.shoal"
    failed = shoal_serve(str(fresh), "--new", "--bits", "8", "--state-dir",
                         str(tmp_path / "state"), "--http", "127.0.0.1:0")  # fmt: skip
    assert failed.returncode == 2 and "in use by another shoal serve" in failed.stderr
    assert not fresh.exists()
    assert server.stop() == 0


def test_after_all_that_the_model_is_what_offline_training_makes(
    serve: Callable[..., Server], base_model: Path, tmp_path: Path
) -> None:
    server = serve()
    learn(server, 0, 5)
    snap = server.client.post(f"{M}/snapshot").json()
    served = Model.load(tmp_path / "state" / "snapshots" / f"v{snap['version']:08d}.shoal")
    expected = offline(base_model, [event(i) for i in range(5)], tmp_path)
    assert served.to_bytes() == expected.to_bytes()
    assert server.stop() == 0
