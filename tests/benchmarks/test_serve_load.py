"""The serving benchmark's load generator (benchmarks/serve_load.py): every reply is checked,
a wrong one is an error and not a fast request. No timing is asserted: speed belongs in
benchmarks/, this only runs a cell of a fraction of a second against the trivial server."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

# The benchmark scripts are not a package: their folder goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
serve_load = importlib.import_module("serve_load")
check_body, check_line = serve_load.check_body, serve_load.check_line

PREDICTIONS = {"path": ["predictions"], "count": 2, "prob": True}


def test_a_body_needs_as_many_probabilities_as_records() -> None:
    assert check_body(b'{"predictions": [0.1, 1]}', PREDICTIONS) == ""
    assert "expected 2 values" in check_body(b'{"predictions": [0.1]}', PREDICTIONS)
    assert "not a probability" in check_body(b'{"predictions": [0.1, 1.5]}', PREDICTIONS)
    assert "not a probability" in check_body(b'{"predictions": [0.1, "x"]}', PREDICTIONS)
    assert "body without" in check_body(b"Internal Server Error", PREDICTIONS)
    oip = {"path": ["outputs", 0, "data"], "count": 1, "prob": True}
    assert check_body(b'{"outputs": [{"data": [[0.3]]}]}', oip) == ""
    assert "body without" in check_body(b'{"outputs": []}', oip)
    seqs = {"path": ["seqs"], "count": 2}
    assert check_body(b'{"seqs": [7, 8]}', seqs) == ""
    assert check_body(b'{"learned": 2}', {"path": ["learned"], "count": 2}) == ""
    assert "expected 3" in check_body(b'{"learned": 2}', {"path": ["learned"], "count": 3})


def test_a_line_reply_needs_the_tag_sent_and_a_probability() -> None:
    assert check_line(b"0.25 r7\n", "r7", True) == ""
    assert "tagged 'r7'" in check_line(b"0.25 r8\n", "r7", True)
    assert "tagged 'r7'" in check_line(b"\n", "r7", True)
    assert "not a probability" in check_line(b"1.5 r7\n", "r7", True)
    assert check_line(b"1.5 r7\n", "r7", False) == ""  # a labeled line: only its tag is checked


async def cell(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` run against the trivial servers, in this process, on ephemeral ports."""
    loop = asyncio.get_running_loop()
    http = await loop.create_server(serve_load.EchoHttp, "127.0.0.1", 0)
    tcp = await loop.create_server(serve_load.EchoLines, "127.0.0.1", 0)
    async with http, tcp:
        server = tcp if job["protocol"] == "tcp" else http
        port = server.sockets[0].getsockname()[1]
        return await serve_load.run(job | {"host": "127.0.0.1", "port": port, "warmup": 0.05,
                                "duration": 0.3, "connections": 2})  # fmt: skip


def test_an_http_cell_counts_wrong_replies_as_errors() -> None:
    body = json.dumps({"records": ["| a"]})
    right = {"path": "/predict", "body": body, "records": 1,
             "check": {"path": ["predictions"], "count": 1, "prob": True}}  # fmt: skip
    wrong = right | {"check": PREDICTIONS}  # the echo server answers one prediction, not two
    res = asyncio.run(cell({"protocol": "http", "requests": [right, wrong]}))
    assert res["requests"] > res["errors"] > 0
    assert res["records"] == len(res["latencies_us"]) == res["requests"] - res["errors"]
    assert "expected 2 values" in res["error_samples"][0]


@pytest.mark.parametrize("depth", [1, 8])
def test_a_tcp_cell_matches_each_reply_to_its_line(depth: int) -> None:
    lines = [{"line": f"'r{i} | a", "tag": f"r{i}", "prob": True} for i in range(5)]
    res = asyncio.run(cell({"protocol": "tcp", "lines": lines, "pipeline": depth}))
    assert res["errors"] == 0, res["error_samples"]
    assert res["requests"] == res["records"] == len(res["latencies_us"]) > 0


def test_the_river_server_reads_vw_lines_as_vw_does() -> None:
    pytest.importorskip("fastapi")  # the bench extra
    serve_river = importlib.import_module("serve_river")
    features, label = serve_river.features, serve_river.label

    line = "-1 'r3 |c a=0 b=x |n i0:0.5 |  d"
    assert features(line) == {"c^a=0": 1.0, "c^b=x": 1.0, "n^i0": 0.5, "^d": 1.0}
    assert label(line) is False and label("1 | a") is True
