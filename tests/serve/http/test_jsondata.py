"""An OIP request's JSON ``data`` read by the compiled scan (``jsondata``) gives what Python's
``json`` gives: the same values, the same checks and errors, and rows that parse to the same
features for a schema model."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import FeatureSpec
from shoal.features.schema import ColumnSchema
from shoal.serve.errors import RequestError
from shoal.serve.http import tensors
from shoal.serve.http.jsondata import Elements, scan
from shoal.serve.http.oip import schema_records
from shoal.serve.reading.records import parse_lines
from shoal.serve.reading.rows import rows_of

SCHEMA = "label,I1..I3:num:log1p,C1..C3:cat,w:weight"
SPEC = FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=","), bits=18)
ROWS = rows_of(SPEC)


def outcome(body: bytes, scanned: bool) -> Any:
    """The decoded inputs (name, datatype, values as JSON) and the rows' features of a request,
    or its error, with the scan or with json alone."""
    original = tensors.scan
    if not scanned:
        tensors.scan = lambda head: None  # type: ignore[assignment]
    try:
        request = tensors.decode_request(body, None, 1000)
        inputs = [(t.name, t.datatype, json.dumps(list(t.values))) for t in request.inputs]
        try:
            records = schema_records(request.inputs, ROWS, ignore_unknown=True)
            lines = [r if isinstance(r, str) else ROWS.of_record(r, f"records[{i}]")
                     for i, r in enumerate(records)]  # fmt: skip
            batch = parse_lines(SPEC, lines)
            features: Any = (batch.indptr.tolist(), batch.indices.tolist(),
                             batch.values.tolist())  # fmt: skip
        except RequestError as exc:
            features = f"{exc.field}: {exc.problem}"
        return inputs, features
    except RequestError as exc:
        return f"{exc.field}: {exc.problem}"
    finally:
        tensors.scan = original


def agree(body: bytes) -> Any:
    scanned = outcome(body, True)
    assert scanned == outcome(body, False), body
    return scanned


def request(*inputs: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **top}, ensure_ascii=False).encode()


def test_a_triton_request_is_read_by_the_scan_into_the_rows_json_gives() -> None:
    body = request(
        {"name": "I1", "shape": [3], "datatype": "FP32", "data": [3.0, math.nan, 0.25]},
        {"name": "I2", "shape": [3, 1], "datatype": "INT64", "data": [7, -2, 0]},
        {"name": "C1", "shape": [3], "datatype": "BYTES", "data": ["68fd1e64", "", "é"]},
        {"name": "C2", "shape": [3], "datatype": "INT32", "data": [1, 2, 3]},
        outputs=[{"name": "probability"}],
    )
    found = scan(body)
    assert found is not None and sorted(found.arrays) == [0, 1, 2, 3]
    decoded = tensors.decode_request(body, None, 10)
    assert all(isinstance(t.values, Elements) for t in decoded.inputs)
    rows = schema_records(decoded.inputs, ROWS, ignore_unknown=False)
    assert rows == [",3.0,7,,68fd1e64,1,,", ",,-2,,,2,,", ",0.25,0,,é,3,,"]
    agree(body)


def test_numbers_are_copied_as_written_and_read_as_json_reads_them() -> None:
    """``1.50e1`` is not ``repr(15.0)``, but its row parses to the same feature."""
    body = (b'{"inputs": [{"name": "I1", "shape": [4], "datatype": "FP64", '
            b'"data": [1.50e1, 15, -0.0, 1E-3]}]}')  # fmt: skip
    decoded = tensors.decode_request(body, None, 10)
    assert schema_records(decoded.inputs, ROWS, False)[0] == ",1.50e1,,,,,,"
    assert agree(body)[0][0][2] == "[15.0, 15, -0.0, 0.001]"


@pytest.mark.parametrize(
    "data",
    [
        '["a\\"b", "c", "d"]',  # an escape: json decodes it
        "[1, Infinity, 2]",
        "[1, -Infinity, 2]",
        "[true, false, true]",
        "[1, null, 2]",
        "[[1], [2], [3]]",  # shape [N, 1] nested: json reads it
        "[1e400, 1, 2]",  # not a float json and the kernel read alike
        "[3.4028234663852886e+38, 1, 2]",  # float32's largest: a row holds it
        "[3.5e38, 1, 2]",  # past it
        "[12345678901234567890, 1, 2]",
        "[1, 2]",  # fewer than the shape
        "[1, 2, 3, 4]",
        "[1, 2, tru]",  # not JSON
        "[1, 2, 3",
        "[1 2 3]",
        "[01, 2, 3]",
        '["x", 1, NaN]',
        "[-0, 0, 1]",  # json's -0 is 0: the categorical text "0"
        '["a,b", "c", "d"]',  # the separator in a categorical value
        "[1.5, 2.5, 3.5]",
    ],
)
@pytest.mark.parametrize("datatype", ["FP32", "INT64", "INT8", "BYTES", "BOOL"])
@pytest.mark.parametrize("name", ["I1", "C1"])
def test_what_the_scan_cannot_take_gets_json_s_values_and_errors(
    data: str, datatype: str, name: str
) -> None:
    first = f'{{"name": "{name}", "shape": [3], "datatype": "{datatype}", "data": {data}}}'
    other = '{"name": "C3", "shape": [3], "datatype": "BYTES", "data": ["p", "q", "r"]}'
    body = f'{{"inputs": [{first}, {other}]}}'.encode()
    agree(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1], "data": [2]}]}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1]}], '
        b'"inputs": [{"name": "I2", "shape": [1], "datatype": "FP32", "data": [2]}]}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "d\\u0061ta": [1]}]}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1], '
        b'"parameters": {"data": [5, 6]}}]}',
        b'{"inputs": [7, {"name": "I1", "shape": [1], "datatype": "FP32", "data": [1]}]}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1]}]} x',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1]}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1]}], "x": 1}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": null}]}',
        b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32"}]}',
        b'{"inputs": {"data": [1]}}',
        b'[{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1]}]}]',
        b'{"inputs": [{"name": "I1", "shape": [2], "datatype": "FP32", "data": []}]}',
        b'\n{ "inputs" :\t[ { "data" : [ 1 ,\r\n2 ] , "name" : "I1", "shape": [2],'
        b' "datatype": "FP32" } ] }\n',
        b'{"inputs": [{"name": "C1", "shape": [1], "datatype": "BYTES", "data": ["\xff"]}]}',
        b'{"inputs": [{"name": "C1", "shape": [1], "datatype": "BYTES", "data": ["a\tb"]}]}',
        b'{"inputs": ' + b"[" * 70 + b"]" * 70 + b"}",
    ],
)
def test_bodies_the_scan_does_not_follow_are_json_s(body: bytes) -> None:
    agree(body)


def _number(draw: Callable[..., Any], x: float | int) -> str:
    """A JSON number as a client may write it."""
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    style = draw(st.sampled_from(["repr", "g", "e"]))
    return repr(x) if style == "repr" else f"{x:.17g}" if style == "g" else f"{x:e}"


@st.composite
def bodies(draw: Callable[..., Any]) -> bytes:
    n = draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from(["I1", "I2", "I3", "C1", "C2", "C3", "x"]),
                          min_size=1, max_size=5, unique=True))  # fmt: skip
    inputs = []
    for name in names:
        datatype = draw(st.sampled_from(["FP32", "FP64", "INT64", "INT16", "UINT8", "BYTES"]))
        element = st.one_of(
            st.floats(width=32),
            st.floats(),
            st.integers(-(2**63), 2**64),
            st.integers(-300, 300),
            st.text(max_size=6),
            st.sampled_from(["68fd1e64", "", "a,b"]),
            st.none(),
            st.booleans(),
        )
        kind = draw(st.sampled_from(["numbers", "ints", "texts", "mixed"]))
        if kind == "numbers":
            element = st.one_of(st.floats(width=32), st.integers(-1000, 1000))
        elif kind == "ints":
            element = st.integers(-200, 200)
        elif kind == "texts":
            element = st.text(max_size=6)
        values = draw(st.lists(element, min_size=n, max_size=n + (draw(st.booleans()) and 1)))
        ascii_only = draw(st.booleans())
        data = ", ".join(
            json.dumps(v, ensure_ascii=ascii_only)
            if isinstance(v, str | bool) or v is None
            else _number(draw, v)
            for v in values
        )
        inputs.append(f'{{"name": "{name}", "shape": [{n}], "datatype": "{datatype}", '
                      f'"data": [{data}]}}')  # fmt: skip
    return ('{"inputs": [' + ", ".join(inputs) + "]}").encode()


@settings(max_examples=300, deadline=None)
@given(bodies())
def test_random_requests_decode_and_make_rows_as_json_does(body: bytes) -> None:
    agree(body)


def test_a_request_too_deep_for_the_scan_is_json_s() -> None:
    deep = b'{"inputs": [{"name": "I1", "shape": [1], "datatype": "FP32", "data": [1], ' \
        b'"parameters": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}]}"  # fmt: skip
    assert scan(deep) is None
    agree(deep)


def test_elements_decode_once_and_index_as_a_list() -> None:
    found = scan(b'{"inputs": [{"data": ["a", "b", ""]}]}')
    assert found is not None
    e = found.arrays[0]
    assert (len(e), e[1], e[-2:], list(e)) == (3, "b", ["b", ""], ["a", "b", ""])
    assert e.values is e.values and e.fits("BYTES") and not e.fits("FP32")
    assert np.isinf(e.lowest)
