"""``shoal serve`` of factorization machines as real processes (one process, and a learner with
front ends sharing the weights): a model that ``shoal train --model fm|ffm`` wrote predicts on
every protocol what ``shoal predict`` writes; it learns from learn and feedback requests exactly
as ``shoal train`` learns the logged events, after ``kill -9`` too; rollback restores its
factors; a hot swap may trade it for a linear model and back; a read replica serves it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shoal import Model
from shoal.cli import main
from tests.serve.cluster.groups import Group
from tests.serve.cluster.test_supervisor import on_front
from tests.serve.helpers import BASE, LineClient, event, log_contents, offline

QUERIES = ["|u id1 d2 |v x:0.5", "|u id3", "|u e7 |v x:0.25", "|v x:0.75"]
IDS, XS = ["id1", "id3", "e7", ""], [0.5, 1.0, 0.25, 0.75]  # features as OIP tensors ("":
OBJECTS = [
    {"u": {"id": "id1"}, "v": {"x": 0.5}},
    {"u": {"id": "id3"}, "v": {"x": 1}},  # none),
    {"u": {"id": "e7"}, "v": {"x": 0.25}},
    {"v": {"x": 0.75}},
]  # fmt: skip  (JSON, lines)
TENSOR_LINES = ["|u id=id1 |v x:0.5", "|u id=id3 |v x:1", "|u id=e7 |v x:0.25", "|v x:0.75"]
KIND_FLAGS = {"fm": ["--model", "fm", "--rank", "4"],
              "ffm": ["--model", "ffm", "--rank", "4", "--fields", "uv"]}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``shoal train`` of BASE as an FM, an FFM (fields u and v) and a linear model (-q uv),
    in one folder (the models directory of a server of any of them)."""
    folder = tmp_path_factory.mktemp("models")
    data = folder / "base.vw"
    data.write_text("".join(r + "\n" for r in BASE))
    out = {}
    for kind, flags in {**KIND_FLAGS, "linear": ["-q", "uv"]}.items():
        out[kind] = folder / f"{kind}.shoal"
        assert main(["train", str(data), "-o", str(out[kind]), "--bits", "10", *flags]) == 0
    return out


def shoal_predict(model: Path | Model, lines: list[str], tmp: Path) -> list[str]:
    """What ``shoal predict`` writes for ``lines``, one string a line."""
    if isinstance(model, Model):
        model.save(tmp / "expected.shoal")
        model = tmp / "expected.shoal"
    (tmp / "queries.vw").write_text("".join(x + "\n" for x in lines))
    assert main(["predict", str(model), str(tmp / "queries.vw"), "-o", str(tmp / "out")]) == 0
    return (tmp / "out").read_text().splitlines()


class Served:
    """A running ``shoal serve`` group of model ``name``; requests on front end ``front``
    (any when one process serves)."""

    def __init__(self, group: Group, name: str, processes: str) -> None:
        self.group, self.name, self.fronts = group, name, range(int(processes))

    def call(self, path: str, body: Any = None, front: int = 0) -> Any:
        if self.fronts:
            r = on_front(self.group.url, front, path, body)
        elif body is None:
            r = httpx.get(self.group.url + path, timeout=30)
        else:
            r = httpx.post(self.group.url + path, json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def v1(self, path: str, body: Any = None, front: int = 0) -> Any:
        return self.call(f"/v1/models/{self.name}{path}", body, front)

    def check_predictions(self, queries: list[str], tensors: list[str]) -> None:
        """Every protocol, on every front end, predicts what ``shoal predict`` wrote: the JSON
        API (VW lines, and objects), OIP v2 (``lines``, and a tensor per feature; FP32) and
        the TCP line protocol (its replies are ``shoal predict``'s lines)."""
        expected, by_feature = [float(x) for x in queries], [float(x) for x in tensors]
        lines = {"name": "lines", "shape": [4], "datatype": "BYTES", "data": QUERIES}
        ids = {"name": "u.id", "shape": [4], "datatype": "BYTES", "data": IDS}
        xs = {"name": "v.x", "shape": [4], "datatype": "FP32", "data": XS}
        for front in self.fronts or [0]:
            assert self.v1("/predict", {"records": QUERIES}, front)["predictions"] == expected
            assert self.v1("/predict", {"records": OBJECTS}, front)["predictions"] == by_feature
            infer = f"/v2/models/{self.name}/infer"
            out = self.call(infer, {"inputs": [lines]}, front)["outputs"][0]["data"]
            assert out == [float(np.float32(x)) for x in expected]
            out = self.call(infer, {"inputs": [ids, xs]}, front)["outputs"][0]["data"]
            assert out == [float(np.float32(x)) for x in by_feature]
        assert self.group.tcp is not None
        with LineClient(self.group.tcp) as client:
            assert client.ask(*QUERIES) == queries

    def check_kind(self, model: Model) -> None:
        """Metadata (OIP, the JSON API) and /metrics (the status page) name the live kind."""
        kind = model.config.model
        for front in self.fronts or [0]:
            meta = self.call(f"/v2/models/{self.name}", front=front)["parameters"]
            assert meta["model"] == kind and meta.get("rank", 0) == model.config.rank
            assert meta.get("fields", []) == list(model.spec.fields)
            assert self.v1("", front=front)["config"].get("model", "linear") == kind
        sample = f'shoal_model_info{{kind="{kind}",model="{self.name}",rank="{model.config.rank}"}}'
        assert sample + " 1.0" in httpx.get(f"{self.group.url}/metrics").text

    def snapshot(self, state: Path) -> Model:
        version = self.v1("/snapshot", {})["version"]
        return Model.load(state / "snapshots" / f"v{version:08d}.shoal")


@pytest.mark.parametrize(
    ("kind", "processes", "replica"),
    [("fm", "0", False), ("fm", "2", False), ("ffm", "2", True)],  # one process: FM's path
)
def test_a_factorization_machine_serves_learns_recovers_and_swaps(
    trained: dict[str, Path], tmp_path: Path, kind: str, processes: str, replica: bool
) -> None:
    model, state, shelf = trained[kind], tmp_path / "state", tmp_path / "shelf"
    args = [str(model), "--name", "ctr", "--state-dir", str(state), "--processes", processes,
            "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--snapshot-every-events", "100000",
            *(["--publish", str(shelf)] if replica else [])]  # fmt: skip
    base = Model.load(model)
    base_out = shoal_predict(model, QUERIES, tmp_path), shoal_predict(model, TENSOR_LINES, tmp_path)
    served = Served(Group(*args), "ctr", processes)
    try:
        served.check_predictions(*base_out)
        served.check_kind(base)
        early = served.v1("/predict", {"records": QUERIES[:1]})["event_ids"][0]
        events = [event(i) for i in range(6)]
        assert served.v1("/learn?wait=true", {"records": events})["applied"] is True
        assert served.v1("/snapshot", {})["applied_seq"] == 6  # factors and their AdaGrad state
        now = served.v1("/predict", {"records": QUERIES[1:2]}, front=1)  # the other one
        for event_id, label in ((now["event_ids"][0], 1), (early, -1)):  # at once; later
            assert served.v1("/feedback?wait=true", {"event_id": event_id, "label": label})
        os.killpg(served.group.proc.pid, signal.SIGKILL)  # every process, mid-life
        served.group.proc.wait(timeout=30)
    except BaseException:
        os.killpg(served.group.proc.pid, signal.SIGKILL)
        served.group.proc.wait(timeout=30)
        raise

    log = [record for _, record in log_contents(state)]
    assert log == [*events, f"1 {QUERIES[1]}", f"-1 {QUERIES[0]}"]  # feedback: its features
    served = Served(Group(*args), "ctr", processes)  # the same command line
    try:
        assert served.group.replayed == 2  # the feedback, on the snapshot of the 6 events
        expected = offline(model, log, tmp_path)  # shoal train of the logged events
        assert served.snapshot(state).to_bytes() == expected.to_bytes()
        learned_out = (shoal_predict(expected, QUERIES, tmp_path),
                       shoal_predict(expected, TENSOR_LINES, tmp_path))  # fmt: skip
        assert learned_out != base_out
        served.check_predictions(*learned_out)

        if replica:  # a read replica of the published snapshots serves the same FFM
            follower = Group("--follow", str(shelf), "--http", "127.0.0.1:0",
                             "--tcp", "127.0.0.1:0")  # fmt: skip
            try:
                Served(follower, "ctr", "0").check_predictions(*learned_out)
            finally:
                assert follower.stop() == 0, "".join(follower.stderr)

        assert served.v1("/rollback", {"version": 1})["source"] == "v1"
        back = served.snapshot(state)
        assert np.array_equal(back.weights, base.weights)  # the factors too
        served.check_predictions(*base_out)

        linear = Model.load(trained["linear"])  # a swap may change the kind: same labels
        assert served.v1("/load", {"path": str(trained["linear"])})["reason"] == "load"
        served.check_kind(linear)
        served.check_predictions(shoal_predict(linear, QUERIES, tmp_path),
                                 shoal_predict(linear, TENSOR_LINES, tmp_path))  # fmt: skip
        assert served.v1("/load", {"path": model.name})["reason"] == "load"
        served.check_kind(base)
        served.check_predictions(*base_out)
    finally:
        assert served.group.stop() == 0, "".join(served.group.stderr)
