"""A model with a column schema, served: every form of a record is a row of its table and
predicts what ``shoal predict`` writes for that row of a file; learning on rows, on objects and
by feedback equals ``shoal train`` on the same rows; fields that name no column are errors."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal import Model, TrainOptions, train
from shoal.cli import main
from shoal.serve import ModelService, ServiceConfig
from shoal.serve.errors import RequestError
from tests.serve.conftest import Both
from tests.serve.helpers import live_model

Start = Callable[..., Both]
SCHEMA = "label,I1..I3:num:log1p,C1..C3:cat"


def table(n: int, seed: int, *, missing: bool = True) -> list[str]:
    """Criteo-like rows: a label, counts (some missing), hexadecimal categories."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        y = rng.random() < 0.3
        counts = [
            "" if missing and rng.random() < 0.2 else str(rng.randrange(60 + 40 * y))
            for _ in range(3)
        ]
        cats = [f"{rng.randrange(6 + 3 * y):08x}" for _ in range(3)]
        rows.append("\t".join([str(int(y)), *counts, *cats]))
    return rows


def as_object(row: str) -> dict[str, Any]:
    """A row as the JSON API's object: counts as numbers, a missing one null or left out."""
    fields = row.split("\t")
    record: dict[str, Any] = {f"C{j}": fields[3 + j] for j in (1, 2, 3)}
    for j in (1, 2, 3):
        if fields[j]:
            record[f"I{j}"] = int(fields[j])
        elif j % 2:
            record[f"I{j}"] = None
    return record


@pytest.fixture
def clicks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str], list[str]]:
    """``shoal train --schema --format tsv`` on a file without an extension, and what ``shoal
    predict`` (no --format: the model knows it) writes for some rows: (model, rows,
    predictions). The schema's delimiter is the default comma: the format says tab."""
    data = tmp_path / "clicks"
    data.write_text("".join(r + "\n" for r in table(400, 1)))
    model = tmp_path / "clicks.shoal"
    assert main(["train", str(data), "--schema", SCHEMA, "--format", "tsv", "-o", str(model)]) == 0
    rows = table(12, 2)
    queries = tmp_path / "queries"
    queries.write_text("".join(r + "\n" for r in rows))
    capsys.readouterr()
    assert main(["predict", str(model), str(queries)]) == 0
    expected = capsys.readouterr().out.splitlines()
    assert len(expected) == len(rows) and len(set(expected)) > 3
    return model, rows, expected


def infer(server: Both, inputs: list[dict[str, Any]], **parameters: Any) -> Any:
    body: dict[str, Any] = {"inputs": inputs, "outputs": [{"name": "probability"}]}
    if parameters:
        body["parameters"] = parameters
    headers = {"Content-Type": "application/json"}  # NaN is an element tritonclient sends
    return server.http.post("/v2/models/clicks/infer", content=json.dumps(body), headers=headers)


def probabilities(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def as_fp32(lines: list[str]) -> list[float]:
    return np.array([float(x) for x in lines], dtype=np.float32).tolist()


def unlabeled(row: str) -> str:
    return "\t" + row.partition("\t")[2]


def test_a_tcp_line_is_a_row_of_the_table(start_both: Start, clicks: tuple) -> None:
    model, rows, expected = clicks
    server = start_both(model)
    with server.connect() as client:
        assert client.ask(*map(unlabeled, rows)) == expected  # (a labeled row would be learned)
        vw = "1 | I1:3 C1=0000abcd"
        [reply] = client.ask(vw)
        assert reply.startswith("error: line 13: is not a row of the model's table but looks ")
        assert "like a VW line" in reply and "separated by '\\t'" in reply
        assert client.ask(unlabeled(rows[0])) == expected[:1]  # the connection goes on


def test_oip_lines_are_rows_of_the_table(start_both: Start, clicks: tuple) -> None:
    model, rows, expected = clicks
    server = start_both(model)
    lines = {"name": "lines", "shape": [len(rows)], "datatype": "BYTES", "data": rows}
    assert probabilities(infer(server, [lines])) == as_fp32(expected)


def test_oip_column_tensors_are_rows_of_the_table(start_both: Start, clicks: tuple) -> None:
    model, rows, expected = clicks
    server = start_both(model)
    fields = [r.split("\t") for r in rows]

    def column(j: int, datatype: str, values: list[Any]) -> dict[str, Any]:
        name = f"I{j}" if j <= 3 else f"C{j - 3}"
        return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values}

    counts = [
        column(j, "FP64", [float(f[j]) if f[j] else math.nan for f in fields]) for j in (1, 2, 3)
    ]
    cats = [column(j, "BYTES", [f[j] for f in fields]) for j in (4, 5, 6)]
    assert probabilities(infer(server, [*cats, *counts])) == as_fp32(expected)  # NaN: missing
    full = [k for k, f in enumerate(fields) if all(f[1:4])]  # whole columns of integers
    assert len(full) > 3
    counts = [column(j, "INT64", [int(fields[k][j]) for k in full]) for j in (1, 2, 3)]
    cats = [column(j, "BYTES", [fields[k][j] for k in full]) for j in (4, 5, 6)]
    assert probabilities(infer(server, counts + cats)) == as_fp32([expected[k] for k in full])


def test_json_objects_are_rows_of_the_table(start_both: Start, clicks: tuple) -> None:
    model, rows, expected = clicks
    server = start_both(model)
    got = server.http.post(
        "/v1/models/clicks/predict", json={"records": [as_object(r) for r in rows]}
    )
    assert got.status_code == 200, got.text
    assert got.json()["predictions"] == [float(x) for x in expected]
    text = server.http.post("/v1/models/clicks/predict", json={"records": rows})
    assert text.json()["predictions"] == [float(x) for x in expected]  # strings are rows too


def test_learning_rows_objects_and_feedback_equals_shoal_train(
    start_both: Start, clicks: tuple, tmp_path: Path
) -> None:
    """Rows over TCP, labeled objects and feedback learn on the schema's scale (log1p), as
    ``shoal train`` continued on the same rows does, to the bit."""
    model, _, _ = clicks
    events = table(30, 3)
    server = start_both(model)
    with server.connect() as client:
        replies = client.ask(*events[:10])  # each reply once its row is durable
    assert len(replies) == 10
    labeled = [{"label": int(r[0]), **as_object(r)} for r in events[10:20]]
    learned = server.http.post("/v1/models/clicks/learn", json={"records": labeled})
    assert learned.status_code == 200, learned.text
    asked = server.http.post(
        "/v1/models/clicks/predict", json={"records": [as_object(r) for r in events[20:]]}
    ).json()
    for event_id, row in zip(asked["event_ids"], events[20:], strict=True):
        answer = server.http.post(
            "/v1/models/clicks/feedback", json={"event_id": event_id, "label": int(row[0])}
        )
        assert answer.status_code == 200, answer.text
    reference = Model.load(model)
    data = tmp_path / "events"  # no extension: the model's format says TSV
    data.write_text("".join(r + "\n" for r in events))
    train(reference, [data], TrainOptions(parse_threads=1))
    assert live_model(server.service).to_bytes() == reference.to_bytes()


def test_unknown_fields_and_inputs_are_400_naming_them(start_both: Start, clicks: tuple) -> None:
    model, rows, expected = clicks
    server = start_both(model)
    wrong = {"c1": "05db9164", "i1": 3}
    got = server.http.post("/v1/models/clicks/predict", json={"records": [wrong]})
    assert got.status_code == 400
    message = got.json()["error"]
    assert message.startswith("records[0]: unknown fields 'c1' (did you mean 'C1'?), 'i1' (did")
    learn = server.http.post("/v1/models/clicks/learn", json={"records": [{"label": 1, **wrong}]})
    assert learn.status_code == 400 and "unknown fields 'c1'" in learn.json()["error"]
    i99 = {"name": "I99", "shape": [1], "datatype": "FP32", "data": [3.0]}
    c1 = {"name": "C1", "shape": [1], "datatype": "BYTES", "data": [rows[0].split("\t")[4]]}
    refused = infer(server, [c1, i99])
    assert refused.status_code == 400
    assert refused.json()["error"].startswith(
        "inputs[1].name: unknown input 'I99'; the model's columns are label, I1"
    )
    # asked for, unknown fields and inputs are dropped
    one = as_object(rows[0])
    kept = server.http.post(
        "/v1/models/clicks/predict", json={"records": [{**one, "c9": 1}], "ignore_unknown": True}
    )
    assert kept.json()["predictions"] == [float(expected[0])]
    assert probabilities(infer(server, [c1, i99], ignore_unknown=True)) == probabilities(
        infer(server, [c1])
    )


def test_the_server_may_ignore_unknown_fields(clicks: tuple, tmp_path: Path) -> None:
    model, rows, expected = clicks
    config = ServiceConfig(model_path=str(model), state_dir=str(tmp_path / "s"))
    with ModelService(config) as strict, pytest.raises(RequestError, match="unknown field 'Z'"):
        strict.predict([{**as_object(rows[0]), "Z": 1}])
    lenient = ServiceConfig(
        model_path=str(model), state_dir=str(tmp_path / "t"), ignore_unknown=True
    )
    with ModelService(lenient) as service:
        got = service.predict([{**as_object(rows[0]), "Z": 1}, {"C1": "x", "u": {"a": 1}}])
        assert got.values[0] == float(expected[0])


def test_objects_a_row_cannot_hold_predict_as_their_columns(clicks: tuple, tmp_path: Path) -> None:
    """A string with a quote, a tab or a line break cannot be a field of a TSV row: such a
    record still predicts as its columns say (the same features as a row of a file)."""
    model, _, _ = clicks
    config = ServiceConfig(model_path=str(model), state_dir=str(tmp_path / "s"))
    with ModelService(config) as service:
        odd = [{"C1": 'say "hi"', "I1": 3}, {"C1": "a\tb", "I1": 3}, {"C1": "x\ny"}]
        lines = service.lines(odd)
        assert lines[1] == '\t3\t\t\t"a\tb"\t\t' and lines[0].startswith('{"features"')
        expected = Model.load(model).predict_one(odd[0])
        assert service.predict(odd).values[0] == pytest.approx(expected, rel=1e-12)
