"""``shoal serve --processes 2`` as real processes on loopback ports: the front ends share one
model and one learner; a front end, the learner, or the whole group killed with SIGKILL loses no
acknowledged event; nothing outlives the server."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shoal import Model
from shoal.serve.cluster.supervisor import run_dir
from shoal.serve.reading.records import parse_lines
from tests.serve.cluster.groups import Group, alive
from tests.serve.helpers import LineClient, event, log_contents, offline, wait_until

QUERIES = ["|u id1 d2 |v x:0.5", "|u id3", "|u e7 |v x:0.25"]


@pytest.fixture
def group() -> Iterator[Callable[..., Group]]:
    started: list[Group] = []

    def _start(*args: str) -> Group:
        started.append(Group("--processes", "2", *args))
        return started[-1]

    yield _start
    for g in started:
        if g.proc.poll() is None:
            os.killpg(g.proc.pid, signal.SIGKILL)
            g.proc.wait(timeout=30)


def on_front(url: str, index: int, path: str, body: Any = None) -> httpx.Response:
    """A request that front end ``index`` answers: new connections until one is that one's
    (asked on the connection first: a learn request must be sent once)."""
    for _ in range(500):
        with httpx.Client(base_url=url, timeout=30) as client:
            if client.get("/v2/health/live").headers["shoal-front-end"] != str(index):
                continue
            r = client.post(path, json=body) if body is not None else client.get(path)
            assert r.headers["shoal-front-end"] == str(index)  # one connection, kept alive
            return r
    raise AssertionError(f"front end {index} answered none of 500 connections")


def expected_predictions(model: Model) -> list[float]:
    return model.predict(parse_lines(model.spec, QUERIES)).tolist()


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))  # fmt: skip


def test_front_ends_share_one_model_and_one_learner(
    base_model: Path, tmp_path: Path, group: Callable[..., Group]
) -> None:
    g = group(str(base_model), "--state-dir", str(tmp_path / "state"),
              "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0")  # fmt: skip
    m = "/v1/models/ctr"
    base = expected_predictions(Model.load(base_model))
    infer = {"inputs": [{"name": "lines", "shape": [3], "datatype": "BYTES", "data": QUERIES}]}
    for i in (0, 1):  # every front end answers, with the model's predictions
        r = on_front(g.url, i, f"{m}/predict", {"records": QUERIES})
        assert r.json()["predictions"] == base and r.json()["version"] == 1
        oip = on_front(g.url, i, "/v2/models/ctr/infer", infer).json()["outputs"]
        assert oip[0]["data"] == pytest.approx(base, rel=1e-6)  # FP32
        assert on_front(g.url, i, "/v2/models/ctr").json()["versions"] == ["1"]

    events = [event(i) for i in range(20)]
    r = on_front(g.url, 0, f"{m}/learn?wait=true", {"records": events})
    assert r.json() == {"seqs": list(range(1, 21)), "applied": True}
    learned = expected_predictions(offline(base_model, events, tmp_path))
    for i in (0, 1):  # learned on one, visible on both at once
        body = on_front(g.url, i, f"{m}/predict", {"records": QUERIES}).json()
        assert body["predictions"] == learned and body["applied_seq"] == 20

    ids = on_front(g.url, 0, f"{m}/predict", {"records": QUERIES[:1]}).json()["event_ids"]
    r = on_front(g.url, 1, f"{m}/feedback?wait=true", {"event_id": ids[0], "label": 1})
    assert r.status_code == 200 and r.json()["seq"] == 21  # the features came from front end 0

    back = on_front(g.url, 1, f"{m}/rollback", {"version": 1}).json()
    assert back["version"] == 2 and back["source"] == "v1"
    for i in (0, 1):
        body = on_front(g.url, i, f"{m}/predict", {"records": QUERIES}).json()
        assert body["predictions"] == base and body["version"] == 2
        assert on_front(g.url, i, m).json()["version"] == 2
        assert [v["version"] for v in on_front(g.url, i, f"{m}/versions").json()["versions"]] == [
            1, 2,
        ]  # fmt: skip
    assert g.tcp is not None
    with LineClient(g.tcp) as client:
        assert [float(x) for x in client.ask(*QUERIES)] == pytest.approx(base, abs=1e-15)

    predicted = metric(g.url, "shoal_predictions_total")
    requests = metric(g.url, "shoal_http_requests_total")
    for i in (0, 1):  # any front end counts what every front end did
        assert on_front(g.url, i, f"{m}/predict", {"records": QUERIES}).status_code == 200
    assert metric(g.url, "shoal_predictions_total") == predicted + 2 * len(QUERIES)
    assert metric(g.url, "shoal_http_requests_total") >= requests + 2
    assert metric(g.url, "shoal_events_logged_total") == 21
    assert g.stop() == 0
    assert "every acknowledged event is in the last snapshot" in "".join(g.stderr)


class Load:
    """Threads sending learn requests (each on a new connection, so over every front end) and
    predictions, retrying when a connection breaks; the acknowledged events and every status."""

    def __init__(self, url: str, learners: int = 3, first: int = 0) -> None:
        self.acked: dict[int, str] = {}
        self.statuses: list[int] = []
        self.retry_after: list[str | None] = []
        self.predict_statuses: list[int] = []
        self.stop = threading.Event()
        self._next = iter(range(first, first + 1_000_000))
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._learn, args=(url,)) for _ in range(learners)]
        self.threads.append(threading.Thread(target=self._predict, args=(url,)))
        for t in self.threads:
            t.start()

    def _learn(self, url: str) -> None:
        while not self.stop.is_set():
            with self._lock:
                records = [event(next(self._next)) for _ in range(1 + len(self.acked) % 3)]
            try:
                with httpx.Client(base_url=url, timeout=30) as client:
                    r = client.post("/v1/models/ctr/learn", json={"records": records})
            except httpx.TransportError:
                continue  # its front end died: not acknowledged
            with self._lock:
                self.statuses.append(r.status_code)
                if r.status_code == 503:
                    self.retry_after.append(r.headers.get("retry-after"))
                if r.status_code == 200:
                    self.acked.update(zip(r.json()["seqs"], records, strict=True))

    def _predict(self, url: str) -> None:
        while not self.stop.is_set():
            try:
                with httpx.Client(base_url=url, timeout=30) as client:
                    r = client.post("/v1/models/ctr/predict", json={"records": QUERIES})
            except httpx.TransportError:
                continue
            self.predict_statuses.append(r.status_code)

    def wait_acks(self, n: int) -> None:
        wait_until(lambda: len(self.acked) >= n, 60, f"{n} acknowledged events")

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def check_log(base_model: Path, tmp_path: Path, state: Path, acked: dict[int, str]) -> list[str]:
    """Every acknowledged event is in the log, under its seq, once; the log's records."""
    log = log_contents(state)
    assert [s for s, _ in log] == list(range(1, len(log) + 1))
    assert all(dict(log)[s] == r for s, r in acked.items())
    assert len({r for _, r in log}) == len(log)
    return [r for _, r in log]


def test_a_killed_front_end_is_replaced_and_loses_nothing(
    base_model: Path, tmp_path: Path, group: Callable[..., Group]
) -> None:
    state = tmp_path / "state"
    g = group(str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0",
              "--snapshot-every-events", "50", "--keep-versions", "1000")  # fmt: skip
    load = Load(g.url)
    load.wait_acks(50)
    victim = int(on_front(g.url, 0, "/v1/models/ctr").headers["shoal-pid"])
    g.note_children()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim), what="the front end to die")
    acked = len(load.acked)
    load.wait_acks(acked + 50)  # the other front end answers; the new one too
    fresh = int(on_front(g.url, 0, "/v1/models/ctr").headers["shoal-pid"])
    assert fresh != victim
    load.join()
    assert set(load.statuses) == {200} and set(load.predict_statuses) == {200}
    assert g.stop() == 0
    log = check_log(base_model, tmp_path, state, load.acked)
    snapshot = sorted((state / "snapshots").glob("v*.shoal"))[-1]
    assert Model.load(snapshot).to_bytes() == offline(base_model, log, tmp_path).to_bytes()


def test_a_killed_learner_or_group_loses_nothing(
    base_model: Path, tmp_path: Path, group: Callable[..., Group]
) -> None:
    state = tmp_path / "state"
    args = (str(base_model), "--state-dir", str(state), "--http", "127.0.0.1:0",
            "--snapshot-every-events", "50", "--keep-versions", "1000")  # fmt: skip
    g = group(*args)
    load = Load(g.url)
    load.wait_acks(50)
    learner = g.learner
    os.kill(learner, signal.SIGKILL)  # under load
    wait_until(lambda: g.learner != learner, 60, "a new learner to publish the weights")
    acked = len(load.acked)
    load.wait_acks(acked + 50)  # the front ends found the new learner
    g.kill_supervisor()  # and now all of it, under load
    load.join()
    assert set(load.statuses) <= {200, 503} and set(load.retry_after) <= {"1"}
    assert set(load.predict_statuses) == {200}  # predictions went on while the learner was down

    restarted = group(*args)
    log = check_log(base_model, tmp_path, state, load.acked)
    assert restarted.replayed >= 0
    with httpx.Client(base_url=restarted.url, timeout=30) as client:
        snap = client.post("/v1/models/ctr/snapshot").json()
        served = client.post("/v1/models/ctr/predict", json={"records": QUERIES}).json()
    assert snap["applied_seq"] == len(log)
    expected = offline(base_model, log, tmp_path)
    served_model = Model.load(state / "snapshots" / f"v{snap['version']:08d}.shoal")
    assert served_model.to_bytes() == expected.to_bytes()
    assert np.array_equal(served["predictions"], expected_predictions(expected))
    assert restarted.stop() == 0


def test_run_dirs_of_dead_supervisors_are_swept() -> None:
    stale = Path("/dev/shm/shoal-serve-999999999")
    stale.mkdir(exist_ok=True)
    mine = run_dir()
    try:
        assert not stale.exists() and (mine / "control").exists()
    finally:
        import shutil

        shutil.rmtree(mine)
