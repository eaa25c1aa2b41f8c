"""The Open Inference Protocol routes against the real server on a loopback port, driven by
Triton's own client (``tritonclient.http``) with its defaults, and by hand for bad requests."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from shoal import FeatureSpec, LearnerConfig, Model, TextReader, TrainOptions, train
from shoal.data.frames import batch_from_dicts
from shoal.features.schema import ColumnSchema
from shoal.serve.http.tensors import DATATYPES
from tests.serve.conftest import Running

Start = Callable[..., Running]
LINES = ["|u id3 d1 |v x:0.5", "1 'tag |u id9", "|v x:0.25 |u d2"]


@pytest.fixture
def served(start: Start) -> Iterator[tuple[Running, triton.InferenceServerClient]]:
    """The server (its token guards admin routes only) and a Triton client of it."""
    r = start()
    client = triton.InferenceServerClient(r.server.url.removeprefix("http://"))
    yield r, client
    client.close()


def offline_predict(model: Path, lines: list[str], tmp_path: Path) -> list[float]:
    """``Model.predict`` on ``lines`` read from a file, as float32 (the protocol's FP32)."""
    data = tmp_path / "offline.vw"
    data.write_text("".join(x + "\n" for x in lines))
    m = Model.load(model)
    out = np.concatenate([m.predict(b) for b in TextReader(spec=m.spec).read(data)])
    return out.astype(np.float32 if m.config.loss != "multiclass" else np.int64).tolist()


def tensor(name: str, values: list[Any], datatype: str, binary: bool = True) -> triton.InferInput:
    array = np.array(values, dtype=object if datatype == "BYTES" else None)
    if datatype != "BYTES":
        array = array.astype({"FP32": np.float32, "INT32": np.int32, "BOOL": np.bool_}[datatype])
    t = triton.InferInput(name, list(array.shape), datatype)
    return t.set_data_from_numpy(array, binary_data=binary)


def texts(array: np.ndarray) -> list[str]:
    """BYTES elements as text: binary outputs come as bytes, JSON ones as str."""
    return [e.decode() if isinstance(e, bytes) else e for e in array.tolist()]


def test_server_and_model_metadata(served: tuple[Running, triton.InferenceServerClient]) -> None:
    _, client = served
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "shoal" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("ctr")
    assert meta == {
        "name": "ctr",
        "versions": ["1"],
        "platform": "shoal",
        "inputs": [{"name": "lines", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "probability", "datatype": "FP32", "shape": [-1]},
            {"name": "event_id", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"model": "linear"},
    }
    assert client.get_model_metadata("ctr", "1") == meta
    assert client.is_model_ready("ctr") and client.is_model_ready("ctr", "1")
    assert not client.is_model_ready("ctr", "2") and not client.is_model_ready("nope")
    with pytest.raises(InferenceServerException, match="no model named 'nope'"):
        client.get_model_metadata("nope")
    config = client.get_model_config("ctr")  # Triton's tools ask for it
    assert (config["name"], config["max_batch_size"]) == ("ctr", 10_000)
    assert config["input"] == [{"name": "lines", "data_type": "TYPE_STRING", "dims": [1]}]
    assert [o["data_type"] for o in config["output"]] == ["TYPE_FP32", "TYPE_STRING"]
    assert client.get_model_config("ctr", "1") == config


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_vw_lines_predict_as_offline_and_as_the_json_api(
    served: tuple[Running, triton.InferenceServerClient],
    base_model: Path,
    tmp_path: Path,
    binary: bool,
) -> None:
    r, client = served
    outputs = None  # tritonclient's default: every output, in binary
    if not binary:
        names = ("probability", "event_id")
        outputs = [triton.InferRequestedOutput(n, binary_data=False) for n in names]
    result = client.infer("ctr", [tensor("lines", LINES, "BYTES", binary)], outputs=outputs)
    expected = offline_predict(base_model, LINES, tmp_path)
    assert result.as_numpy("probability").tolist() == expected
    json_api = r.post("/predict", {"records": LINES}).json()["predictions"]
    assert np.float32(json_api).tolist() == expected
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == ("ctr", "1")
    sent = {o["name"]: "data" not in o for o in response["outputs"]}
    assert sent == {"probability": binary, "event_id": binary}
    ids = texts(result.as_numpy("event_id"))
    assert len(set(ids)) == 3  # each one names its prediction for the JSON API's feedback
    assert r.post("/feedback?wait=true", {"event_id": ids[1], "label": 1}).status_code == 200


def test_feature_tensors_predict_as_the_same_records(
    served: tuple[Running, triton.InferenceServerClient], base_model: Path, tmp_path: Path
) -> None:
    r, client = served
    inputs = [
        tensor("u.id", ["3", "9", "é"], "BYTES"),
        tensor("u.d", ["1", "", "2"], "BYTES"),  # an empty string is a missing value
        tensor("v.x", [0.1, np.nan, 0.25], "FP32", binary=False),  # so is NaN, even in JSON
        tensor("hour", [14, 2, 0], "INT32", binary=False),  # JSON and binary inputs mix
        tensor("flag", [[True], [False], [True]], "BOOL"),  # shape [N, 1] too
    ]
    result = client.infer("ctr", inputs)
    lines = [
        "| hour:14 flag:1 |u id=3 d=1 |v x:0.1",
        "| hour:2 flag:0 |u id=9",
        "| hour:0 flag:1 |u id=é d=2 |v x:0.25",
    ]
    expected = offline_predict(base_model, lines, tmp_path)
    assert result.as_numpy("probability").tolist() == expected
    records = [
        {"hour": 14, "flag": 1, "u": {"id": "3", "d": "1"}, "v": {"x": 0.1}},
        {"hour": 2, "flag": 0, "u": {"id": "9", "d": None}, "v": {"x": None}},
        {"hour": 0, "flag": 1, "u": {"id": "é", "d": "2"}, "v": {"x": 0.25}},
    ]
    json_api = r.post("/predict", {"records": records}).json()["predictions"]
    assert np.float32(json_api).tolist() == expected


def test_multiclass_answers_the_class(start: Start, tmp_path: Path) -> None:
    model = Model(FeatureSpec(bits=8), LearnerConfig(loss="multiclass", classes=3))
    data = tmp_path / "iris.vw"
    data.write_text("1 | a\n2 | b\n3 | c\n" * 20)
    train(model, [data], TrainOptions(parse_threads=1))
    model.save(tmp_path / "iris.shoal")
    r = start("iris", model=tmp_path / "iris.shoal")
    client = triton.InferenceServerClient(r.server.url.removeprefix("http://"))
    lines = ["| b", "| c", "| a"]
    assert client.get_model_metadata("iris")["outputs"][0] == {
        "name": "class", "datatype": "INT64", "shape": [-1],
    }  # fmt: skip
    expected = offline_predict(tmp_path / "iris.shoal", lines, tmp_path)
    assert expected == [2, 3, 1]
    for binary in (True, False):
        out = triton.InferRequestedOutput("class", binary_data=binary)
        classes = client.infer("iris", [tensor("lines", lines, "BYTES")], outputs=[out])
        assert classes.as_numpy("class").dtype == np.int64
        assert classes.as_numpy("class").tolist() == expected
    client.close()


def test_requested_outputs_and_the_request_id(
    served: tuple[Running, triton.InferenceServerClient],
) -> None:
    _, client = served
    lines = [tensor("lines", LINES[:1], "BYTES")]
    only = [triton.InferRequestedOutput("event_id")]
    result = client.infer("ctr", lines, outputs=only, request_id="req-9")
    assert [o["name"] for o in result.get_response()["outputs"]] == ["event_id"]
    assert result.get_response()["id"] == "req-9" and result.as_numpy("probability") is None
    score = [triton.InferRequestedOutput("score")]
    with pytest.raises(InferenceServerException, match=r"outputs\[0\].name: 'score' is not"):
        client.infer("ctr", lines, outputs=score)


def test_only_the_live_version_answers(
    served: tuple[Running, triton.InferenceServerClient],
) -> None:
    r, client = served
    lines = [tensor("lines", LINES, "BYTES")]
    assert client.infer("ctr", lines, model_version="1").get_response()["model_version"] == "1"
    assert r.post("/snapshot").json()["version"] == 2  # the live model is version 2 now
    with pytest.raises(InferenceServerException, match="kept but not live") as kept:
        client.infer("ctr", lines, model_version="1")
    assert kept.value.status() == "404"
    with pytest.raises(InferenceServerException, match="has no version '7'"):
        client.get_model_metadata("ctr", "7")
    assert client.get_model_metadata("ctr")["versions"] == ["2"]
    assert client.is_model_ready("ctr", "2") and not client.is_model_ready("ctr", "1")


def test_a_schema_model_lists_its_columns(start: Start, tmp_path: Path) -> None:
    schema = ColumnSchema.parse("label,I1..I2:num:log1p,C1:cat,id:tag,skip:ignore")
    Model(FeatureSpec(bits=8, schema=schema)).save(tmp_path / "crit.shoal")
    r = start("crit", model=tmp_path / "crit.shoal")
    inputs = r.client.get("/v2/models/crit").json()["inputs"]
    assert [(i["name"], i["datatype"]) for i in inputs] == [
        ("lines", "BYTES"), ("I1", "FP32"), ("I2", "FP32"), ("C1", "BYTES"),
    ]  # fmt: skip


def test_column_tensors_of_a_schema_model_hash_as_rows_of_its_table(
    start: Start, tmp_path: Path
) -> None:
    schema = ColumnSchema.parse("label,I1..I2:num:log1p,C1:cat")
    model = Model(FeatureSpec(bits=10, schema=schema))
    rows = [{"I1": i % 7, "I2": i % 3, "C1": f"city {i % 5}"} for i in range(60)]
    model.learn(batch_from_dicts(rows, model.spec, labels=[i % 2 for i in range(60)]))
    model.save(tmp_path / "crit.shoal")
    r = start("crit", model=tmp_path / "crit.shoal")
    client = triton.InferenceServerClient(r.server.url.removeprefix("http://"))
    asked = [
        {"I1": 3.0, "I2": 1.0, "C1": "city 2"},
        {"I1": 0.5, "I2": None, "C1": "New York"},  # NaN: missing
    ]
    inputs = [
        tensor("I1", [a["I1"] for a in asked], "FP32"),
        tensor("I2", [np.nan if a["I2"] is None else a["I2"] for a in asked], "FP32"),
        tensor("C1", [a["C1"] for a in asked], "BYTES"),
    ]
    got = client.infer("crit", inputs).as_numpy("probability").tolist()
    client.close()
    expected = model.predict(batch_from_dicts(asked, model.spec)).astype(np.float32).tolist()
    assert got == expected


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_requests(
    served: tuple[Running, triton.InferenceServerClient],
    base_model: Path,
    tmp_path: Path,
    coding: str,
) -> None:
    _, client = served
    result = client.infer(
        "ctr",
        [tensor("lines", LINES, "BYTES")],
        request_compression_algorithm=coding,
        response_compression_algorithm=coding,  # shoal answers uncompressed, which HTTP allows
    )
    assert result.as_numpy("probability").tolist() == offline_predict(base_model, LINES, tmp_path)


def test_inference_may_need_the_token_and_metadata_does_not(start: Start) -> None:
    r = start(token="t0k", token_for_predict=True)
    client = triton.InferenceServerClient(r.server.url.removeprefix("http://"))
    lines = [tensor("lines", LINES, "BYTES")]
    with pytest.raises(InferenceServerException) as denied:
        client.infer("ctr", lines)
    assert denied.value.status() == "401"
    assert client.infer("ctr", lines, headers=r.auth).as_numpy("probability").shape == (3,)
    assert client.get_model_metadata("ctr")["name"] == "ctr"
    client.close()


def request(*inputs: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **top}).encode()


def lines_input(*lines: str) -> dict[str, Any]:
    return {"name": "lines", "shape": [len(lines)], "datatype": "BYTES", "data": list(lines)}


def fp(name: str, *values: float) -> dict[str, Any]:
    return {"name": name, "shape": [len(values)], "datatype": "FP64", "data": list(values)}


BAD = [
    ("ctr/infer", {}, request(fp("lines", 1.0)), "inputs[0].datatype"),
    ("ctr/infer", {}, request(lines_input("| a"), fp("x", 1)), "inputs[0].name"),
    ("ctr/infer", {}, request(lines_input("| a", " ")), "inputs[0].data[1]"),
    ("ctr/infer", {}, request(lines_input("| a", "x:y")), "inputs[0].data[1]"),
    ("ctr/infer", {}, request(fp("x", 1), fp("a b", 1)), "inputs[1].name"),
    ("ctr/infer", {}, request(fp("u", 1), fp("u.x", 1)), "inputs[1].name"),
    ("ctr/infer", {}, request(fp("x", 1, 1e300)), "inputs[0].data[1]"),
    (
        "ctr/infer",
        {},
        request({**fp("c", 1), "datatype": "BYTES", "data": ["a|b"]}),
        "inputs[0].data[0]",
    ),
    ("ctr/infer", {}, request(fp("x", 1), fp("y", 1, 2)), "inputs[1].shape"),
    ("ctr/infer", {}, request(fp("x", 1), outputs=[{"name": "p"}]), "outputs[0].name"),
    ("ctr/infer", {"Inference-Header-Content-Length": "9"}, request(fp("x", 1)), "body"),
    ("ctr/infer", {"Content-Encoding": "br"}, request(fp("x", 1)), "Content-Encoding"),
    ("ctr/infer", {"Content-Encoding": "gzip"}, request(fp("x", 1)), "body"),
    ("ctr/infer", {}, b'{"inputs": [], "output": []}', "body"),
]


@pytest.mark.parametrize(("path", "headers", "body", "field"), BAD)
def test_bad_requests_are_a_400_naming_the_field(
    start: Start, path: str, headers: dict[str, str], body: bytes, field: str
) -> None:
    r = start()
    resp = r.client.post(f"/v2/models/{path}", content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"{field}: ")


def test_unknown_models_and_versions_are_404(start: Start) -> None:
    r = start()
    body = request(lines_input("| a"))
    for path in ("nope/infer", "ctr/versions/3/infer"):
        resp = r.client.post(f"/v2/models/{path}", content=body)
        assert resp.status_code == 404 and "error" in resp.json(), path
    for path in ("nope", "ctr/versions/x", "nope/ready", "ctr/versions/0/ready"):
        resp = r.client.get(f"/v2/models/{path}")
        assert resp.status_code == 404 and "error" in resp.json(), path


def test_limits_answer_413(start: Start) -> None:
    r = start(max_body_bytes=2000, max_records=2)
    many = r.client.post("/v2/models/ctr/infer", content=request(fp("x", 1, 2, 3)))
    assert many.status_code == 413 and "--max-records" in many.json()["error"]
    big = r.client.post("/v2/models/ctr/infer", content=request(lines_input("| " + "a" * 3000)))
    assert big.status_code == 413 and "--max-body-bytes" in big.json()["error"]
    bomb = gzip.compress(request(lines_input("| a" + " " * 5000)))
    gzipped = {"Content-Encoding": "gzip"}
    inflated = r.client.post("/v2/models/ctr/infer", content=bomb, headers=gzipped)
    assert inflated.status_code == 413 and "once decompressed" in inflated.json()["error"]
    small = zlib.compress(request(lines_input("| a")))
    deflate = {"Content-Encoding": "deflate"}
    deflated = r.client.post("/v2/models/ctr/infer", content=small, headers=deflate)
    assert deflated.status_code == 200, deflated.text


def test_metrics_name_each_route(start: Start) -> None:
    r = start()
    body = request(lines_input("| a"))
    assert r.client.post("/v2/models/ctr/infer", content=body).status_code == 200
    assert r.client.post("/v2/models/ctr/versions/1/infer", content=body).status_code == 200
    assert r.client.get("/v2/models/ctr/ready").status_code == 200
    text = r.client.get("/metrics").text
    line = 'shoal_http_requests_total{endpoint="%s",method="%s",status="200"} 1.0'
    for path, method in [
        ("/v2/models/{name}/infer", "POST"),
        ("/v2/models/{name}/versions/{version}/infer", "POST"),
        ("/v2/models/{name}/ready", "GET"),
    ]:
        assert line % (path, method) in text, path


# -- random requests never get a 5xx --------------------------------------------------------------

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_JSON = st.recursive(
    _LEAVES,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=8,
)
_INPUT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["lines", "x", "u.id", "v.x", "u", "a b", "", ".", "x."]) | _JSON,
        "datatype": st.sampled_from([*DATATYPES, "BF16", "fp32"]) | _JSON,
        "shape": st.lists(st.integers(-1, 4), max_size=3) | _JSON,
    },
    optional={
        "data": st.lists(_LEAVES, max_size=5) | st.lists(st.lists(_LEAVES, max_size=2)) | _JSON,
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "binary_data_size": st.integers(-1, 40) | _JSON,
            },
        )
        | _JSON,
    },
)
_OUTPUT = st.fixed_dictionaries(
    {"name": st.sampled_from(["probability", "event_id", "class"]) | _JSON},
    optional={"parameters": st.fixed_dictionaries({}, optional={"binary_data": _JSON}) | _JSON},
)
_REQUEST = st.fixed_dictionaries(
    {"inputs": st.lists(_INPUT, max_size=3) | _JSON},
    optional={
        "id": _JSON,
        "outputs": st.lists(_OUTPUT, max_size=3) | _JSON,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": _JSON}) | _JSON,
    },
)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(draw(_REQUEST)).encode()
    if draw(st.booleans()):
        head = draw(st.binary(max_size=20)) + head[: draw(st.integers(0, len(head)))]
    tail = draw(st.binary(max_size=40))
    headers = {}
    length = draw(
        st.none() | st.just(str(len(head))) | st.text("0123456789x-", min_size=1, max_size=4)
    )
    if length is not None:
        headers["Inference-Header-Content-Length"] = length
    body = head + tail if length is not None else head
    coding = draw(st.sampled_from(["identity", "gzip", "deflate", "br"]))
    headers["Content-Encoding"] = coding
    if coding == "gzip":
        body = gzip.compress(body)
    elif coding == "deflate":
        body = zlib.compress(body)
    return body, headers


@st.composite
def _typed_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """Well-formed binary requests of any names, datatypes and elements (NaN, infinities, huge
    integers, any text), which reach the records and the model."""
    rows = draw(st.integers(1, 3))
    names = ["lines", "x", "u.id", "v.x", "u", "a b", "x.", "é", "|"]
    inputs, blobs = [], []
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        datatype = draw(st.sampled_from(DATATYPES))
        if datatype == "BYTES":
            texts = draw(st.lists(st.text(max_size=8), min_size=rows, max_size=rows))
            blob = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
        else:
            blob = draw(hnp.arrays(triton_to_np_dtype(datatype), rows)).tobytes()
        size = {"binary_data_size": len(blob)}
        inputs.append({"name": name, "shape": [rows], "datatype": datatype, "parameters": size})
        blobs.append(blob)
    head = request(*inputs)
    return b"".join([head, *blobs]), {"Inference-Header-Content-Length": str(len(head))}


# One server for every example: pytest sets a fixture up once per test, not once per example.
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(case=_bodies() | _typed_requests())
def test_random_requests_never_get_a_5xx(
    served: tuple[Running, triton.InferenceServerClient], case: tuple[bytes, dict[str, str]]
) -> None:
    r, _ = served
    body, headers = case
    resp = r.client.post("/v2/models/ctr/infer", content=body, headers=headers)
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        assert set(resp.json()) == {"error"}


def test_a_closed_service_is_not_ready(start: Start) -> None:
    r = start()
    r.service.close()
    ready = r.client.get("/v2/models/ctr/ready")
    assert ready.status_code == 503 and ready.json() == {"name": "ctr", "ready": False}
    resp = r.client.post("/v2/models/ctr/infer", content=request(lines_input("| a")))
    assert resp.status_code == 503 and "shutting down" in resp.json()["error"]
    r.client.close()
    r.server.stop()
    r.stopped = True


def test_a_response_of_binary_outputs_is_octet_stream(start: Start) -> None:
    r = start()
    body = request(lines_input("| a", "| b"), parameters={"binary_data_output": True})
    resp = r.client.post("/v2/models/ctr/infer", content=body)
    assert resp.headers["content-type"] == "application/octet-stream"
    n = int(resp.headers["inference-header-content-length"])
    head = json.loads(resp.content[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes[0] == 2 * 4 and n + sum(sizes) == len(resp.content)
