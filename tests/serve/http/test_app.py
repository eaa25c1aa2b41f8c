"""The JSON API over HTTP, against the real server on a loopback port."""

from __future__ import annotations

import gzip
import json
import select
import socket
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shoal import FeatureSpec, LearnerConfig, Model, TextReader
from shoal.serve.http.openapi import document
from tests.serve.conftest import Running
from tests.serve.helpers import event, offline, wait_until

Start = Callable[..., Running]


def test_predict_learn_and_info(start: Start, base_model: Path, tmp_path: Path) -> None:
    r = start()
    lines = ["|u id3 d1 |v x:0.5", "1 'tag |u id9"]
    out = r.post("/predict", {"records": [*lines, {"u": {"id3": 1, "d1": 1}, "v": {"x": 0.5}}]})
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["model"] == "ctr" and body["version"] == 1
    assert len(set(body["event_ids"])) == 3
    data = tmp_path / "p.vw"
    data.write_text("\n".join(lines) + "\n")
    model = Model.load(base_model)  # parity with `shoal predict` on the same records
    expected = np.concatenate([model.predict(b) for b in TextReader(spec=model.spec).read(data)])
    assert body["predictions"][:2] == expected.tolist()
    assert body["predictions"][2] == body["predictions"][0]  # the object is the first line

    records = [event(i) for i in range(6)]
    learned = r.post("/learn?wait=true", {"records": records[:4]})
    assert learned.json() == {"seqs": [1, 2, 3, 4], "applied": True}
    feedback_style = {"label": -1, "features": {"u": {"id5": 1, "e5": 1}, "v": {"x": 0.625}}}
    assert r.post("/learn?wait=true", {"records": [records[4], feedback_style]}).json()["seqs"] == [
        5,
        6,
    ]
    # a prediction made after the acknowledgement (with wait=true) reflects the events
    ref = offline(base_model, [*records[:5], "-1 |u id5 e5 |v x:0.625"], tmp_path)
    after = r.post("/predict", {"records": lines}).json()["predictions"]
    reader = TextReader(spec=ref.spec)
    assert after == np.concatenate([ref.predict(b) for b in reader.read(data)]).tolist()
    info = r.get().json()
    assert info["applied_seq"] == info["logged_seq"] == 6
    assert info["examples_learned"] == ref.examples_learned
    assert info["spec"]["bits"] == 10 and info["config"]["loss"] == "logistic"
    assert r.client.get("/v1/models").json()["models"][0]["name"] == "ctr"


def test_feedback_learns_exactly_as_the_labeled_record(start: Start) -> None:
    a, b = start("a"), start("b")
    features = ["'t1 |u id2 d0 |v x:0.75", {"u": {"id4": 1}, "hour": 7, "city": "paris"}]
    ids = a.post("/predict", {"records": features}).json()["event_ids"]
    assert a.post("/feedback", {"event_id": ids[1], "label": -1}).json()["seq"] == 1
    done = a.post("/feedback?wait=true", {"event_id": ids[0], "label": 1, "weight": 2.5})
    assert done.json() == {"seq": 2, "applied": True}
    labeled = [
        {"label": -1, "features": features[1]},
        "1 2.5 'other-tag |u id2 d0 |v x:0.75",
    ]
    b.post("/learn?wait=true", {"records": labeled})
    assert a.live_model().to_bytes() == b.live_model().to_bytes()


def test_unknown_expired_and_repeated_feedback(start: Start) -> None:
    r = start(feedback_ttl=60.0)
    ids = r.post("/predict", {"records": ["| a", "| b", "| c"]}).json()["event_ids"]
    unknown = r.post("/feedback", {"event_id": "f" * 28, "label": 1})
    assert unknown.status_code == 404 and "no prediction" in unknown.json()["error"]
    assert r.post("/feedback", {"event_id": ids[0], "label": 1}).status_code == 200
    again = r.post("/feedback", {"event_id": ids[0], "label": -1})
    assert again.status_code == 409 and "already has its feedback" in again.json()["error"]
    r.clock.now += 61
    expired = r.post("/feedback", {"event_id": ids[1], "label": 1})
    assert expired.status_code == 410 and "expired" in expired.json()["error"]
    r.post("/predict", {"records": ["| d"]})  # its commit purges the expired rows
    assert r.post("/feedback", {"event_id": ids[2], "label": 1}).status_code == 410
    assert r.get().json()["logged_seq"] == 1


def test_versions_snapshot_rollback_and_load(
    start: Start, base_model: Path, tmp_path: Path
) -> None:
    r = start()
    r.post("/learn", {"records": [event(i) for i in range(5)]})
    snap = r.post("/snapshot").json()
    assert (snap["version"], snap["applied_seq"], snap["reason"]) == (2, 5, "manual")
    path = r.state_dir / "snapshots" / "v00000002.shoal"
    expected = offline(base_model, [event(i) for i in range(5)], tmp_path)
    assert Model.load(path).to_bytes() == expected.to_bytes()

    back = r.post("/rollback", {"version": 1}).json()
    assert (back["version"], back["source"], back["applied_seq"]) == (3, "v1", 5)
    assert r.live_model().to_bytes() == Model.load(base_model).to_bytes()
    versions = r.get("/versions").json()
    assert versions["current"] == 3
    assert [v["reason"] for v in versions["versions"]] == ["initial", "manual", "rollback"]

    other = tmp_path / "other.shoal"
    Model(FeatureSpec(bits=8), LearnerConfig(optimizer="sgd")).save(other)
    loaded = r.post("/load", {"path": str(other)}).json()
    assert loaded["reason"] == "load" and r.get().json()["version"] == 4
    assert r.live_model().to_bytes() == Model.load(other).to_bytes()

    missing = r.post("/rollback", {"version": 99})
    assert missing.status_code == 404 and "kept versions: 1..4" in missing.json()["error"]
    bad = r.post("/load", {"path": str(tmp_path / "nope.shoal")})
    assert bad.status_code == 400 and "no model file of that name" in bad.json()["error"]


def test_hot_swap_drops_no_prediction(start: Start, tmp_path: Path) -> None:
    r = start()
    models = []
    for i in range(3):
        models.append(tmp_path / f"m{i}.shoal")
        Model(FeatureSpec(bits=6 + i)).save(models[-1])
    statuses: list[int] = []
    stop = threading.Event()

    def predict() -> None:
        with httpx.Client(base_url=str(r.client.base_url)) as c:
            while not stop.is_set() and len(statuses) < 5000:
                statuses.append(
                    c.post("/v1/models/ctr/predict", json={"records": ["| a"]}).status_code
                )

    clients = [threading.Thread(target=predict) for _ in range(3)]
    for c in clients:
        c.start()
    for m in models:
        wait_for = len(statuses) + 20
        while len(statuses) < wait_for and all(c.is_alive() for c in clients):
            stop.wait(0.001)
        assert r.post("/load", {"path": str(m)}).status_code == 200
    stop.set()
    for c in clients:
        c.join()
    assert len(statuses) > 60 and set(statuses) == {200}
    assert r.get().json()["version"] == 4


def test_token_guards_learning_and_admin(start: Start) -> None:
    r = start(token="s3cret")
    guarded = [
        ("/learn", {"records": ["1 | a"]}),
        ("/feedback", {"event_id": "x", "label": 1}),
        ("/snapshot", None),
        ("/rollback", {"version": 1}),
        ("/load", {"path": "x"}),
    ]
    for path, body in guarded:
        for auth in ("", "Bearer wrong", "Basic s3cret"):
            headers = {"Authorization": auth}
            resp = r.client.post(f"/v1/models/ctr{path}", json=body, headers=headers)
            assert resp.status_code == 401, (path, headers)
            assert resp.headers["www-authenticate"] == "Bearer"
    assert r.client.post("/v1/models/ctr/predict", json={"records": ["| a"]}).status_code == 200
    assert r.post("/learn", {"records": ["1 | a"]}).status_code == 200
    closed = start("closed", token="t0k", token_for_predict=True)
    assert (
        closed.client.post("/v1/models/ctr/predict", json={"records": ["| a"]}).status_code == 401
    )
    assert closed.post("/predict", {"records": ["| a"]}).status_code == 200


def test_limits_answer_413(start: Start) -> None:
    r = start(max_body_bytes=2000, max_records=5)
    big = {"records": ["| " + "a" * 3000]}
    assert r.post("/predict", big).status_code == 413
    chunks = (
        b'{"records": ["| ' + b"a" * 1000 + b'"]' if i == 0 else b" " * 1000 for i in range(3)
    )
    streamed = r.client.post("/v1/models/ctr/predict", content=chunks, headers=r.auth)
    assert streamed.status_code == 413 and "--max-body-bytes" in streamed.json()["error"]
    many = r.post("/learn", {"records": ["1 | a"] * 6})
    assert many.status_code == 413 and "--max-records" in many.json()["error"]
    assert r.post("/learn", {"records": ["1 | a"] * 5}).status_code == 200


def test_compressed_bodies(start: Start) -> None:
    r = start()
    body = json.dumps({"records": ["| a", "| b"]}).encode()
    for coding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        headers = {"Content-Encoding": coding}
        resp = r.client.post("/v1/models/ctr/predict", content=compress(body), headers=headers)
        assert resp.status_code == 200 and len(resp.json()["predictions"]) == 2
    for coding, sent, field in (("br", body, "Content-Encoding"), ("gzip", body, "body")):
        headers = {"Content-Encoding": coding}
        resp = r.client.post("/v1/models/ctr/predict", content=sent, headers=headers)
        assert resp.status_code == 400 and resp.json()["error"].startswith(f"{field}: ")


MALFORMED = [
    ("/predict", b"", "body"),
    ("/predict", b"{", "body"),
    ("/predict", b"[1, 2]", "body"),
    ("/predict", b'{"records": NaN}', "body"),
    ("/predict", b'{"record": ["| a"]}', "records"),
    ("/predict", b'{"records": []}', "records"),
    ("/predict", b'{"records": "| a"}', "records"),
    ("/predict", b'{"records": ["| a", "x:y"]}', "records[1]"),
    ("/predict", b'{"records": ["| a", 3]}', "records[1]"),
    ("/predict", b'{"records": [{"u": {"a b": 1}}]}', "records[0].u.a b"),
    ("/predict", b'{"records": ["| a\\n| b"]}', "records[0]"),
    ("/predict", b'\xff\xfe{"records": 1}', "body"),
    ("/predict", b"[" * 100_000, "body"),
    ("/predict", b'{"records": ["| a", "| \\ud800"]}', "records[1]"),  # a lone surrogate
    ("/predict", b'{"records": [{"x": "\\udfff"}]}', "records[0]"),
    ("/predict", b'{"records": ["{\\"a\\": 1}"]}', "records[0]"),  # a JSON line, not a record
    ("/learn", b'{"records": [{"label": 1, "features": {"\\ud800": 1}}]}', "records[0]"),
    ("/learn", b'{"records": ["| a"]}', "records[0]"),
    ("/learn", b'{"records": ["1 | a", "2 | b"]}', "records[1]"),
    ("/learn", b'{"records": [{"label": "1", "features": {}}]}', "records[0].label"),
    ("/learn", b'{"records": [{"features": {}}]}', "records[0].label"),
    ("/learn?wait=maybe", b'{"records": ["1 | a"]}', "wait"),
    ("/feedback", b'{"label": 1}', "event_id"),
    ("/feedback", b'{"event_id": "x"}', "label"),
    ("/feedback", b'{"event_id": 5, "label": 1}', "event_id"),
    ("/feedback", b'{"event_id": "x", "label": true}', "label"),
    ("/feedback", b'{"event_id": "x", "label": 7}', "label"),
    ("/feedback", b'{"event_id": "x", "label": 1, "weight": -2}', "weight"),
    ("/feedback", b'{"event_id": "x", "label": 1, "lable": 1}', "body"),
    ("/rollback", b'{"version": "2"}', "version"),
    ("/rollback", b"{}", "version"),
    ("/load", b'{"path": 3}', "path"),
]


@pytest.mark.parametrize(("path", "body", "field"), MALFORMED)
def test_malformed_input_is_a_400_naming_the_field(
    start: Start, path: str, body: bytes, field: str
) -> None:
    r = start()
    resp = r.client.post(f"/v1/models/ctr{path}", content=body, headers=r.auth)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"{field}: ")


def test_random_bodies_never_get_a_5xx(start: Start) -> None:
    r = start()
    rng = np.random.default_rng(7)
    parts = b"""{"records": [ ;"1 |a b:2";{;};];,;"label";:;1e400;"|";null;true;"event_id";-0;[]
        ;"version";"\\u0000";"path";{"u": {"a": "b"}};"wait";"features";{"label": 1, "features":
    """.replace(b"\n", b"").split(b";")
    for i in range(150):
        body = b"".join(parts[j] for j in rng.integers(0, len(parts), rng.integers(1, 12)))
        path = ["/predict", "/learn", "/feedback", "/rollback", "/load"][i % 5]
        resp = r.client.post(f"/v1/models/ctr{path}", content=body, headers=r.auth)
        assert resp.status_code < 500, (path, body, resp.text)
        assert "error" in resp.json() or resp.status_code == 200


def test_unknown_models_routes_and_methods(start: Start) -> None:
    r = start()
    resp = r.client.post("/v1/models/nope/predict", json={"records": ["| a"]})
    assert resp.status_code == 404 and "served: 'ctr'" in resp.json()["error"]
    assert r.client.get("/v1/nothing").status_code == 404
    assert r.client.get("/v1/models/ctr/predict").status_code == 405


def test_health_metrics_and_openapi(start: Start) -> None:
    r = start()
    assert r.client.get("/v2/health/live").json() == {"live": True}
    assert r.client.get("/v2/health/ready").json() == {"ready": True}
    ids = r.post("/predict", {"records": ["| a", "| b"]}).json()["event_ids"]
    r.post("/feedback?wait=true", {"event_id": ids[0], "label": 1})
    r.post("/learn", {"records": ["x | a"]})
    text = r.client.get("/metrics").text
    requests = (
        'shoal_http_requests_total{endpoint="/v1/models/{name}/%s",method="POST",status="%d"}'
    )
    for line in [
        requests % ("predict", 200) + " 1.0",
        requests % ("learn", 400) + " 1.0",
        'shoal_events_logged_total{model="ctr"} 1.0',
        'shoal_events_learned_total{model="ctr"} 1.0',
        'shoal_predictions_total{model="ctr"} 2.0',
        'shoal_learner_lag_events{model="ctr"} 0.0',
        'shoal_model_version{model="ctr"} 1.0',
        'shoal_progressive_examples{model="ctr"} 1.0',
        'shoal_predict_batch_records_bucket{le="1",model="ctr"} 0.0',
        'shoal_predict_batch_records_bucket{le="2",model="ctr"} 1.0',
        'shoal_predict_batch_records_sum{model="ctr"} 2.0',
        'shoal_learn_visible_seconds_count{model="ctr"} 1.0',
    ]:
        assert line in text, line
    assert "shoal_progressive_loss{" in text and "shoal_http_request_seconds_bucket{" in text

    spec = r.client.get("/openapi.json").json()
    assert spec == document()
    served = {
        (route.path, method.lower())
        for route in r.server._server.config.app.routes
        for method in route.methods - {"HEAD"}
    }
    documented = {(path, m) for path, ops in spec["paths"].items() for m in ops}
    assert served == documented


def test_a_closing_service_is_unavailable_not_an_error(start: Start) -> None:
    r = start()
    r.service.close()
    assert r.client.get("/v2/health/ready").status_code == 503
    resp = r.post("/predict", {"records": ["| a"]})
    assert resp.status_code == 503 and "shutting down" in resp.json()["error"]
    r.client.close()
    r.server.stop()
    r.stopped = True


def test_a_wait_that_runs_out_still_acknowledges_the_durable_event(start: Start) -> None:
    r = start(wait_timeout=0.2)
    gate = threading.Event()
    busy = r.service.learner.submit(gate.wait)  # the learner is held up
    resp = r.post("/learn?wait=true", {"records": ["1 | a"]})
    assert resp.status_code == 200 and resp.json() == {"seqs": [1], "applied": False}
    gate.set()
    busy.result(timeout=20)
    assert r.post("/learn?wait=true", {"records": ["1 | b"]}).json()["applied"] is True


def _post_again(r: Any) -> httpx.Response | None:
    """A prediction; None when the server closed the client's idle keep-alive connection under
    it (it closes idle connections, oldest first, while more are open than the limit)."""
    try:
        return r.post("/predict", {"records": ["|u a"]})
    except httpx.TransportError:
        return None


def test_requests_in_flight_beyond_the_limit_get_503_and_health_always_answers(
    start: Start,
) -> None:
    r = start(max_connections=2)
    slow = (b"POST /v1/models/ctr/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n{")  # fmt: skip
    host, port = r.server.sock.getsockname()[:2]  # type: ignore[union-attr]
    idle = [socket.create_connection((host, port), timeout=30) for _ in range(5)]
    held: list[socket.socket] = []
    try:  # idle connections take no slot; two requests waiting for their bodies take both
        assert r.post("/predict", {"records": ["|u a"]}).status_code == 200

        def hold_two_then_post() -> httpx.Response | None:
            # a held connection the server saw before its head came was idle, and may have been
            # closed to make room: open it again
            for conn in [c for c in held if select.select([c], [], [], 0)[0]]:
                held.remove(conn)
                conn.close()
            while len(held) < 2:
                held.append(conn := socket.create_connection((host, port), timeout=30))
                conn.sendall(slow)
            x = _post_again(r)
            return x if x is not None and x.status_code == 503 else None

        busy = wait_until(hold_two_then_post)
        assert "requests in flight" in busy.json()["error"]
        assert r.client.get("/v2/health/live").status_code == 200
        assert r.client.get("/v2/health/ready").status_code == 200
    finally:
        for conn in held + idle:
            conn.close()
    # the slots are free again once the server has seen the connections close
    wait_until(lambda: r.post("/predict", {"records": ["|u a"]}).status_code == 200)
