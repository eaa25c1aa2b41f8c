"""The Open Inference Protocol's wire format, checked against Triton's own client library:
requests that ``tritonclient`` builds decode to the tensors it was given, and responses that
shoal encodes parse back in ``tritonclient`` to the same arrays."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import np_to_triton_dtype

from shoal.serve.errors import PayloadTooLarge, RequestError
from shoal.serve.http.tensors import InferRequest, Output, decode_request, encode_response

ARRAYS = {
    "b": np.array([True, False, True]),
    "u8": np.array([0, 7, 255], dtype=np.uint8),
    "i16": np.array([-3, 0, 300], dtype=np.int16),
    "u32": np.array([[1], [2], [2**32 - 1]], dtype=np.uint32),
    "i64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "f16": np.array([0.5, -1.25, 2048], dtype=np.float16),
    "f32": np.array([0.1, -2.5, 3e38], dtype=np.float32),
    "f64": np.array([[1e-300], [0.0], [-7.25]]),
    "s": np.array(["é x", "", "|ns a:1"], dtype=np.object_),
}


def triton_request(binary: bool, **kw: Any) -> InferRequest:
    """The request that tritonclient would send, as shoal decodes it."""
    inputs = []
    for name, array in ARRAYS.items():
        tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
    body, json_size = InferenceServerClient.generate_request_body(inputs, **kw)
    return decode_request(body, None if json_size is None else str(json_size), max_rows=3)


@pytest.mark.parametrize("binary", [True, False])
def test_requests_of_tritonclient_decode_to_its_arrays(binary: bool) -> None:
    request = triton_request(binary, request_id="r1")
    assert request.id == "r1" and request.outputs is None and request.binary_output
    assert [t.name for t in request.inputs] == list(ARRAYS)
    for tensor, array in zip(request.inputs, ARRAYS.values(), strict=True):
        assert tensor.rows == 3
        assert tensor.values == array.ravel().tolist(), tensor.name


def test_requested_outputs_say_how_each_is_sent() -> None:
    outputs = [InferRequestedOutput("a"), InferRequestedOutput("b", binary_data=False)]
    request = triton_request(True, outputs=outputs)
    assert [(o.name, o.binary) for o in request.outputs or []] == [("a", True), ("b", False)]
    assert not request.binary_output


@pytest.mark.parametrize("binary", [True, False])
def test_responses_parse_in_tritonclient(binary: bool) -> None:
    outputs = [
        Output("probability", "FP32", [0.25, 1 / 3], binary),
        Output("class", "INT64", [3, 1], not binary),
        Output("event_id", "BYTES", ["0a1b", "é"], binary),
    ]
    body, header_length = encode_response({"model_name": "m", "id": "7"}, outputs)
    assert header_length is not None
    result = InferResult.from_response_body(body, header_length=header_length)
    assert result.get_response()["id"] == "7"
    assert result.as_numpy("probability").tolist() == np.float32([0.25, 1 / 3]).tolist()
    assert result.as_numpy("class").dtype == np.int64
    assert result.as_numpy("class").tolist() == [3, 1]
    assert [bytes(e) if binary else e for e in result.as_numpy("event_id")] == [
        b"0a1b" if binary else "0a1b",
        "é".encode() if binary else "é",
    ]


def test_a_response_without_binary_outputs_is_plain_json() -> None:
    body, header_length = encode_response({}, [Output("p", "FP32", [0.5], False)])
    assert header_length is None
    assert InferResult.from_response_body(body).as_numpy("p").tolist() == [0.5]


def body_of(*inputs: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **top}).encode()


X = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}


@pytest.mark.parametrize(
    ("body", "header", "field"),
    [
        (body_of({**X, "shape": [2, 2]}), None, "inputs[0].shape"),
        (body_of({**X, "shape": [True]}), None, "inputs[0].shape"),
        (body_of({**X, "datatype": "BF16"}), None, "inputs[0].datatype"),
        (body_of({**X, "data": [1, "2"]}), None, "inputs[0].data[1]"),
        (body_of({**X, "datatype": "INT8", "data": [1, 200]}), None, "inputs[0].data[1]"),
        (body_of({**X, "datatype": "BOOL", "data": [1, 0]}), None, "inputs[0].data[0]"),
        (body_of({**X, "data": [[1], 2]}), None, "inputs[0].data[1]"),
        (body_of({**X, "data": [1, 2, 3]}), None, "inputs[0].data"),
        (body_of({**X, "extra": 1}), None, "inputs[0]"),
        (body_of(X, {**X, "shape": [3]}), None, "inputs[1].shape"),
        (body_of(X, X), None, "inputs[1].name"),
        (body_of({**X, "shape": [0], "data": []}), None, "inputs[0].shape"),
        (body_of(X, id=5), None, "id"),
        (body_of(X, parameters={"binary_data_output": 1}), None, "parameters.binary_data_output"),
        (body_of(X, outputs=[{"name": "p"}, {"name": "p"}]), None, "outputs[1].name"),
        (
            body_of(X, outputs=[{"name": "p", "parameters": {"classification": 2}}]),
            None,
            "outputs[0].parameters.classification",
        ),
        (b'{"inputs": []}', None, "inputs"),
        (body_of(X), "12x", "Inference-Header-Content-Length"),
        (body_of(X), "100000", "Inference-Header-Content-Length"),
        (body_of(X) + b"\0", str(len(body_of(X))), "Inference-Header-Content-Length"),
    ],
)
def test_malformed_requests_name_the_field(body: bytes, header: str | None, field: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_request(body, header, max_rows=10)
    assert info.value.field == field, info.value


def binary(
    datatype: str, shape: list[int], blob: bytes, size: int | None = None
) -> tuple[bytes, str, bytes]:
    """A binary request's JSON header, the header's length and its blob."""
    declared = len(blob) if size is None else size
    head = body_of({"name": "x", "shape": shape, "datatype": datatype,
                    "parameters": {"binary_data_size": declared}})  # fmt: skip
    return head, str(len(head)), blob


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        (binary("FP32", [2], b"\0" * 7), "inputs[0].parameters.binary_data_size"),
        (binary("FP32", [2], b"\0" * 8, size=9), "inputs[0].parameters.binary_data_size"),
        (binary("BYTES", [2], b"\1\0\0\0a\5\0\0\0b"), "inputs[0].data[1]"),
        (binary("BYTES", [2], b"\1\0\0\0a\1\0"), "inputs[0].data[1]"),
        (binary("BYTES", [1], b"\1\0\0\0a\1\0\0\0b"), "inputs[0].parameters.binary_data_size"),
        (binary("BYTES", [1], b"\2\0\0\0\xff\xfe"), "inputs[0].data[0]"),
    ],
)
def test_malformed_binary_data_names_the_field(parts: tuple[bytes, str, bytes], field: str) -> None:
    head, length, blob = parts
    with pytest.raises(RequestError) as info:
        decode_request(head + blob, length, max_rows=10)
    assert info.value.field == field, info.value


def test_bytes_elements_decode_as_sent_whatever_they_hold() -> None:
    """Line breaks, empty and multibyte elements: the elements, each as it was sent."""
    elements = ["a\nb", "", "é\r", "\n", "x"]
    blob = b"".join(len(e.encode()).to_bytes(4, "little") + e.encode() for e in elements)
    head, length, _ = binary("BYTES", [5], blob)
    assert decode_request(head + blob, length, max_rows=10).inputs[0].values == elements


def test_several_bytes_inputs_each_get_their_elements_and_the_first_error_is_told() -> None:
    def blob(*elements: bytes) -> bytes:
        return b"".join(len(e).to_bytes(4, "little") + e for e in elements)

    def request(*parts: tuple[str, str, bytes]) -> tuple[bytes, str]:
        inputs = [
            {"name": n, "shape": [2], "datatype": d, "parameters": {"binary_data_size": len(b)}}
            for n, d, b in parts
        ]
        head = json.dumps({"inputs": inputs}).encode()
        return head + b"".join(b for _, _, b in parts), str(len(head))

    a, b, c = blob(b"x", b"yz"), blob(b"1\n2", b""), blob("é".encode(), b"w")
    body, length = request(("a", "BYTES", a), ("n", "INT64", b"\0" * 16), ("b", "BYTES", b))
    got = decode_request(body, length, max_rows=10).inputs
    assert [t.values for t in got] == [["x", "yz"], [0, 0], ["1\n2", ""]]
    looks_like_bytes = blob(b"AB", b"CD") + b"\0" * 4  # two INT64 elements
    body, length = request(("n", "INT64", looks_like_bytes), ("d", "BYTES", blob(b"pq", b"rs")))
    assert decode_request(body, length, max_rows=10).inputs[1].values == ["pq", "rs"]
    body, length = request(("c", "BYTES", c), ("a", "BYTES", a))
    assert [t.values for t in decode_request(body, length, max_rows=10).inputs] == [
        ["é", "w"], ["x", "yz"],
    ]  # fmt: skip
    body, length = request(("n", "FP32", b"\0" * 7), ("bad", "BYTES", blob(b"\xff", b"")))
    with pytest.raises(RequestError) as info:
        decode_request(body, length, max_rows=10)
    assert info.value.field == "inputs[0].parameters.binary_data_size"


def test_binary_data_needs_the_header_and_one_form() -> None:
    head, _, _ = binary("UINT8", [1], b"\1")
    with pytest.raises(RequestError, match="needs the header"):
        decode_request(head, None, max_rows=10)
    both = body_of({**X, "parameters": {"binary_data_size": 8}})
    with pytest.raises(RequestError, match="one way, not both"):
        decode_request(both + b"\0" * 8, str(len(both)), max_rows=10)


def test_json_elements_may_be_nan_and_infinity_as_tritonclient_writes_them() -> None:
    body = (
        b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [NaN, -Infinity]}]}'
    )
    values = decode_request(body, None, max_rows=10).inputs[0].values
    assert np.isnan(values[0]) and values[1] == -np.inf


def test_too_many_rows_is_payload_too_large_before_any_data_is_read() -> None:
    body = body_of({"name": "x", "shape": [11], "datatype": "FP32", "data": "not even a list"})
    with pytest.raises(PayloadTooLarge, match="--max-records"):
        decode_request(body, None, max_rows=10)
