"""A schema model served by ``shoal serve --processes 2``: every front end reads records as rows
of the model's table (the same rules as one process: ``scoring.py``), and learning by rows,
objects and feedback across front ends equals ``shoal train`` on the same rows."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from shoal import Model, TrainOptions, train
from shoal.serve.cluster.supervisor import supported
from tests.serve.cluster.groups import Group
from tests.serve.cluster.test_supervisor import on_front
from tests.serve.helpers import LineClient, newest_snapshot
from tests.serve.reading.test_rows import as_object, clicks, table, unlabeled  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not supported(), reason="front-end processes need Linux")


def test_every_front_end_reads_rows_and_learns_as_shoal_train(
    clicks: tuple,  # noqa: F811 -- the fixture imported above
    tmp_path: Path,
) -> None:
    model, rows, expected = clicks
    state = tmp_path / "state"
    g = Group("--processes", "2", str(model), "--state-dir", str(state),
              "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0")  # fmt: skip
    try:
        m = "/v1/models/clicks"
        for i in (0, 1):
            body = on_front(g.url, i, f"{m}/predict", {"records": [as_object(r) for r in rows]})
            assert body.status_code == 200, body.text
            assert body.json()["predictions"] == [float(x) for x in expected]
            unknown = on_front(g.url, i, f"{m}/predict", {"records": [{"c1": "05db9164"}]})
            assert unknown.status_code == 400 and "did you mean 'C1'" in unknown.text
        assert g.tcp is not None
        with LineClient(g.tcp) as client:
            assert client.ask(*map(unlabeled, rows)) == expected

        events = table(30, 3)
        with LineClient(g.tcp) as client:
            assert len(client.ask(*events[:10])) == 10  # each reply once its row is durable
        labeled = [{"label": int(r[0]), **as_object(r)} for r in events[10:20]]
        r = on_front(g.url, 0, f"{m}/learn", {"records": labeled})
        assert r.status_code == 200, r.text
        asked = on_front(g.url, 0, f"{m}/predict", {"records": [as_object(r) for r in events[20:]]})
        for event_id, row in zip(asked.json()["event_ids"], events[20:], strict=True):
            r = on_front(g.url, 1, f"{m}/feedback", {"event_id": event_id, "label": int(row[0])})
            assert r.status_code == 200, r.text  # kept by front end 0, learned via front end 1
        assert g.stop() == 0
    finally:
        if g.proc.poll() is None:
            os.killpg(g.proc.pid, signal.SIGKILL)
    reference = Model.load(model)
    data = tmp_path / "events"  # no extension: the model's format says TSV
    data.write_text("".join(r + "\n" for r in events))
    train(reference, [data], TrainOptions(parse_threads=1))
    served = Model.load(newest_snapshot(state))
    assert np.array_equal(served.weights, reference.weights)
    for name, tensor in reference.state.items():
        assert np.array_equal(served.state[name], tensor), name
    assert np.array_equal(served.counters, reference.counters)
