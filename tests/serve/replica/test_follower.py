"""Read replicas as real processes: a learner publishes to a directory, a replica follows it,
forwards learning to the learner, reports its lag, and skips a damaged snapshot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from shoal import Model
from shoal.serve.reading.records import parse_lines
from tests.serve.cluster.groups import Group
from tests.serve.helpers import LineClient, event, offline, wait_until

QUERIES = ["|u id1 d2 |v x:0.5", "|u id3", "|u e7 |v x:0.25"]
M = "/v1/models/ctr"


def predictions(model: Model) -> list[float]:
    return model.predict(parse_lines(model.spec, QUERIES)).tolist()


def info(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}{M}").json())


def test_a_replica_follows_the_learner_and_forwards_learning(
    base_model: Path, tmp_path: Path
) -> None:
    shelf = tmp_path / "published"
    learner = Group(str(base_model), "--state-dir", str(tmp_path / "state"), "--processes", "1",
                    "--http", "127.0.0.1:0", "--publish", str(shelf),
                    "--snapshot-every-events", "10")  # fmt: skip
    replica = Group("--follow", str(shelf), "--leader", learner.url,
                    "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0")  # fmt: skip
    lonely = Group("--follow", str(shelf), "--http", "127.0.0.1:0")  # no leader
    try:
        first = httpx.post(f"{replica.url}{M}/predict", json={"records": QUERIES}).json()
        assert first["predictions"] == predictions(Model.load(base_model))
        assert first["version"] == 1 and first["event_ids"] == []

        events = [event(i) for i in range(25)]
        r = httpx.post(f"{replica.url}{M}/learn", json={"records": events}, timeout=30)
        assert r.json()["seqs"] == list(range(1, 26))  # acknowledged by the learner
        snap = httpx.post(f"{replica.url}{M}/snapshot", timeout=30).json()  # forwarded too
        assert snap["applied_seq"] == 25
        # the snapshot named in the answer: an automatic one may have held the same events first
        wait_until(lambda: info(replica.url)["version"] == snap["version"], 30, "the replica")
        assert info(replica.url)["applied_seq"] == 25
        wait_until(lambda: info(replica.url)["replica"]["lag_events"] == 0, 30, "no lag")
        expected = predictions(offline(base_model, events, tmp_path))
        body = httpx.post(f"{replica.url}{M}/predict", json={"records": QUERIES}).json()
        assert body["predictions"] == expected and body["version"] == snap["version"]
        assert replica.tcp is not None
        with LineClient(replica.tcp) as client:
            assert [float(x) for x in client.ask(*QUERIES)] == expected

        more = httpx.post(f"{learner.url}{M}/learn", json={"records": [event(99)]}).json()
        assert more["seqs"] == [26]
        wait_until(lambda: info(replica.url)["replica"]["lag_events"] == 1, 30, "a lag of 1")
        assert (
            'shoal_replica_lag_events{model="ctr"} 1.0' in httpx.get(f"{replica.url}/metrics").text
        )

        manifest = json.loads((shelf / "LATEST.json").read_text())
        (shelf / "v99999999-damaged.shoal").write_bytes(b"\0" * manifest["bytes"])
        damaged = {**manifest, "file": "v99999999-damaged.shoal", "version": 99,
                   "published": time.time()}  # fmt: skip
        (shelf / "LATEST.json").write_text(json.dumps(damaged))
        wait_until(lambda: info(replica.url)["replica"]["snapshots_skipped"] == 1, 30, "a skip")
        body = httpx.post(f"{replica.url}{M}/predict", json={"records": QUERIES}).json()
        assert body["predictions"] == expected and body["version"] == snap["version"]

        refused = httpx.post(f"{lonely.url}{M}/learn", json={"records": events[:1]})
        assert refused.status_code == 403 and "without --leader" in refused.json()["error"]
        assert httpx.post(f"{lonely.url}{M}/predict", json={"records": QUERIES}).status_code == 200
    finally:
        for group in (lonely, replica, learner):
            assert group.stop() == 0, "".join(group.stderr)
