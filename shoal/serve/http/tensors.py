"""Tensors of the Open Inference Protocol (v2): inference requests and responses on the wire.

A request names its input tensors in JSON (name, shape, datatype, and the elements as ``data``)
or, with the binary tensor data extension, sends the elements as bytes after a JSON header
whose length the HTTP header ``Inference-Header-Content-Length`` gives: each such input says
``parameters.binary_data_size``, and the blobs follow in input order -- numbers little-endian,
row-major; BYTES as elements of a 4-byte little-endian length and that many bytes. Responses
send outputs in either form, as the request asks.

shoal's tensors hold one element per record, so a shape is ``[N]`` or ``[N, 1]``, and BYTES
elements are UTF-8 text (VW lines, feature names and values). Errors name the field:
``inputs[1].shape``, and ``inputs[1].data[7]`` for element 7 however it was sent.

>>> head = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [0.5, 2]}]}'
>>> decode_request(head, None, max_rows=10).inputs
[Tensor(name='x', datatype='FP32', rows=2, values=[0.5, 2])]
>>> body, n = encode_response({}, [Output("event_id", "BYTES", ["ab"], binary=True)])
>>> json.loads(body[:n])["outputs"][0]["parameters"], body[n:]
({'binary_data_size': 6}, b'\\x02\\x00\\x00\\x00ab')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoal.serve.errors import PayloadTooLarge, RequestError
from shoal.serve.http.body import parse_json
from shoal.serve.http.bytesdata import LENGTH, bytes_inputs, bytes_values
from shoal.serve.http.jsondata import INT_RANGE, Elements, scan

HEADER = "Inference-Header-Content-Length"

# Each numeric datatype as the little-endian numpy type of its elements (BOOL: one byte each).
_NUMPY = {
    "BOOL": "|u1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*_NUMPY, "BYTES")


@dataclass(frozen=True)
class Tensor:
    """An input: its name, datatype, rows (records) and one element per row.

    Elements are Python values: ``bool``, ``int``, ``float``, or ``str`` for BYTES.
    """

    name: str
    datatype: str
    rows: int
    values: Sequence[Any]  # a list, or the request's own bytes (``jsondata.Elements``)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool  # send its elements as a blob after the JSON header


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None  # None: every output the model has
    binary_output: bool  # how outputs that the request does not list are sent
    ignore_unknown: bool = False  # inputs that name no column of a schema are dropped


@dataclass(frozen=True)
class Output:
    """A response tensor of one element per record."""

    name: str
    datatype: str  # a key of _NUMPY, or BYTES (elements are str)
    values: list[Any]
    binary: bool


# -- requests ------------------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None, max_rows: int) -> InferRequest:
    """An inference request from its body and ``Inference-Header-Content-Length`` (or None).

    Every input is checked before any element is decoded, so that a request of too many rows
    is a 413 however it is sent.
    """
    head, blob = _split(body, header_length)
    scanned = scan(head)  # the data arrays, by a compiled scan (None: json reads it all)
    if scanned is None:
        doc = parse_json(head, constants=True)  # tritonclient sends a NaN element as NaN
    else:  # the data arrays read by the compiled scan, the rest by json
        try:
            doc = parse_json(scanned.skeleton, constants=True)
        except RequestError:
            parse_json(head, constants=True)  # the error, as json says it of the body itself
            raise
    arrays = scanned.arrays if scanned is not None else {}
    _only(doc, "body", {"id", "parameters", "inputs", "outputs"})
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError("id", f"must be a string, got {type(request_id).__name__}")
    parameters = _parameters(doc, "parameters")
    binary_output = _flag(parameters, "binary_data_output", "parameters")
    ignore_unknown = _flag(parameters, "ignore_unknown", "parameters")
    declared = [_declared(item, f"inputs[{k}]") for k, item in enumerate(_list(doc, "inputs"))]
    _check_rows(declared, max_rows)
    _unique([d.name for d in declared], "inputs")
    texts = bytes_inputs([(d.datatype, d.rows, d.binary_size) for d in declared], blob)
    blobs = _Blobs(blob)
    inputs = [d.tensor(blobs, texts.get(k), arrays.get(k)) for k, d in enumerate(declared)]
    blobs.finish()
    outputs = None
    if "outputs" in doc:
        outputs = [
            _requested(item, f"outputs[{k}]", binary_output)
            for k, item in enumerate(_list(doc, "outputs"))
        ]
        _unique([o.name for o in outputs], "outputs")
    return InferRequest(request_id, inputs, outputs, binary_output, ignore_unknown)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes | None]:
    """The JSON header and the binary part after it (None without the extension's header)."""
    if header_length is None:
        return body, None
    text = header_length.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise RequestError(HEADER, f"must be the JSON header's length in bytes, not {text!r}")
    n = int(text)
    if n > len(body):
        raise RequestError(HEADER, f"{n} bytes of JSON header, but the body has {len(body)}")
    return body[:n], body[n:]


def _only(doc: dict[str, Any], field: str, known: set[str] | frozenset[str]) -> None:
    unknown = set(doc) - known
    if unknown:
        raise RequestError(field, f"unknown fields {sorted(unknown)}: expected {sorted(known)}")


def _list(doc: dict[str, Any], field: str) -> list[Any]:
    value = doc.get(field)
    if not isinstance(value, list) or not value:
        raise RequestError(field, "must be a non-empty list of tensors")
    return value


def _parameters(doc: dict[str, Any], field: str) -> dict[str, Any]:
    """A ``parameters`` object; keys shoal does not know are ignored, as the protocol allows."""
    value = doc.get("parameters", {})
    if not isinstance(value, dict):
        raise RequestError(field, f"must be an object, got {type(value).__name__}")
    return value


def _flag(parameters: dict[str, Any], name: str, field: str, default: bool = False) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise RequestError(f"{field}.{name}", f"must be true or false, got {value!r}")
    return value


def _unique(names: list[str], field: str) -> None:
    if len(set(names)) == len(names):
        return
    for k, name in enumerate(names):
        if name in names[:k]:
            raise RequestError(f"{field}[{k}].name", f"{name!r} is named twice")


@dataclass(slots=True)
class _Declared:
    """An input as its JSON header declares it, before its elements are read."""

    field: str
    name: str
    datatype: str
    shape: list[int]
    doc: dict[str, Any]
    rows: int  # shape[0]

    @property
    def binary_size(self) -> Any:
        """The declared ``parameters.binary_data_size``, unchecked; None if there is none."""
        parameters = self.doc.get("parameters")
        return parameters.get("binary_data_size") if isinstance(parameters, dict) else None

    def tensor(
        self, blobs: _Blobs, texts: list[str] | None = None, scanned: Elements | None = None
    ) -> Tensor:
        """The input's elements: from its JSON ``data`` (``scanned``: as the compiled scan read
        it), or its part of the binary data (``texts``: a BYTES input's elements, already read
        by ``_bytes_inputs``)."""
        size = None
        if "parameters" in self.doc:
            size = _parameters(self.doc, f"{self.field}.parameters").get("binary_data_size")
        if size is None:
            return Tensor(self.name, self.datatype, self.rows, self._json_values(scanned))
        if "data" in self.doc:
            raise RequestError(
                f"{self.field}.data",
                "given with parameters.binary_data_size: send the elements one way, not both",
            )
        blob = blobs.take(size, f"{self.field}.parameters.binary_data_size")
        values = texts if texts is not None else self._blob_values(blob)
        return Tensor(self.name, self.datatype, self.rows, values)

    def _json_values(self, scanned: Elements | None) -> Sequence[Any]:
        data: Any
        if scanned is not None:  # (the doc holds null in its place)
            if len(scanned) == self.rows and scanned.fits(self.datatype):
                return scanned  # as long as declared, and all fit: kept as the request's bytes
            data = scanned.values
        else:
            data = self.doc.get("data")
        if type(data) is list and len(data) == self.rows and _all_fit(data, self.datatype):
            return data  # the common case, looked at once: flat, as long as declared, all fit
        field = f"{self.field}.data"
        if "data" not in self.doc:
            raise RequestError(
                field,
                "missing: give the elements, or send them in binary "
                f"(parameters.binary_data_size and the {HEADER} header)",
            )
        values = _flat(data, field)
        if len(values) != self.rows:
            raise RequestError(
                field, f"{len(values)} elements, but shape {self.shape} holds {self.rows}"
            )
        if _all_fit(values, self.datatype):
            return values
        for j, value in enumerate(values):
            if not _fits(value, self.datatype):
                raise RequestError(f"{field}[{j}]", f"{value!r} is not a {self.datatype} value")
        return values

    def _blob_values(self, blob: bytes) -> list[Any]:
        if self.datatype == "BYTES":
            return bytes_values(blob, self.rows, self.field)
        dtype = np.dtype(_NUMPY[self.datatype])
        if len(blob) != self.rows * dtype.itemsize:
            raise RequestError(
                f"{self.field}.parameters.binary_data_size",
                f"{len(blob)} bytes, but shape {self.shape} of {self.datatype} takes "
                f"{self.rows * dtype.itemsize}",
            )
        array = np.frombuffer(blob, dtype)
        return (array != 0).tolist() if self.datatype == "BOOL" else array.tolist()


_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})


def _declared(doc: Any, field: str) -> _Declared:
    if not isinstance(doc, dict):
        raise RequestError(field, "must be an object with name, shape, datatype and data")
    _only(doc, field, _INPUT_KEYS)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{field}.name", "must be a non-empty string")
    datatype = doc.get("datatype")
    if datatype not in DATATYPES:
        raise RequestError(
            f"{field}.datatype",
            f"{datatype!r} is not one of {', '.join(DATATYPES)} (BF16 is not supported)",
        )
    shape: Any = doc.get("shape")
    if not _is_shape(shape):
        raise RequestError(
            f"{field}.shape", f"must be [N] or [N, 1] (one element per record), got {shape!r}"
        )
    return _Declared(field, name, datatype, shape, doc, shape[0])


def _is_shape(shape: Any) -> bool:
    """Whether ``shape`` is ``[N]`` or ``[N, 1]``: one element per record."""
    if type(shape) is not list or not 1 <= len(shape) <= 2:
        return False
    if type(shape[0]) is not int or shape[0] < 0:  # (no bools)
        return False
    return len(shape) == 1 or (type(shape[1]) is int and shape[1] == 1)


def _check_rows(declared: list[_Declared], max_rows: int) -> None:
    """Every input holds one element per record: the same N, from 1 to ``max_rows``."""
    first = declared[0]
    for d in declared[1:]:
        if d.rows != first.rows:
            raise RequestError(
                f"{d.field}.shape",
                f"{d.rows} rows, but {first.field} has {first.rows}: every input holds one "
                "element per record",
            )
    if first.rows == 0:
        raise RequestError(f"{first.field}.shape", "no rows: send at least one record")
    if first.rows > max_rows:
        raise PayloadTooLarge(
            f"inputs: {first.rows} records in one request; the limit is {max_rows} (--max-records)"
        )


def _flat(data: Any, field: str) -> list[Any]:
    """Elements of ``data``: a flat list, or the nested ``[[a], [b]]`` of shape [N, 1]."""
    if not isinstance(data, list):
        raise RequestError(field, f"must be a list of elements, got {type(data).__name__}")
    if list not in map(type, data):  # (no Python per element: JSON makes no list subclass)
        return data
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or any(isinstance(x, list) for x in row):
            raise RequestError(f"{field}[{i}]", "nested unlike shape [N] or [N, 1]")
        out.extend(row)
    return out


def _fits(value: Any, datatype: str) -> bool:
    """Whether a JSON element is a value of ``datatype`` (no silent conversion of "1" to 1)."""
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL" or isinstance(value, bool):
        return datatype == "BOOL" and isinstance(value, bool)
    if datatype.startswith("FP"):  # an integer too large for a float is no FP value
        return isinstance(value, float) or (isinstance(value, int) and abs(value) < 2**1023)
    low, high = INT_RANGE[datatype]
    return isinstance(value, int) and low <= value <= high


def _all_fit(values: list[Any], datatype: str) -> bool:
    """Whether every element is a value of ``datatype`` by the types of the elements alone (and
    an integer datatype's range), with no Python per element: False sends them to ``_fits``,
    one by one, which names the first that is not (or finds that all are)."""
    kinds = set(map(type, values))
    bounds = INT_RANGE.get(datatype)
    if bounds is not None:
        return kinds == _INT and bounds[0] <= min(values) and max(values) <= bounds[1]
    return kinds <= _EXACT.get(datatype, _FLOAT)


_INT, _FLOAT = frozenset({int}), frozenset({float})
_EXACT = {"BYTES": frozenset({str}), "BOOL": frozenset({bool})}


class _Blobs:
    """The binary part of a request, handed out to the inputs in order."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: Any, field: str) -> bytes:
        if self.data is None:
            raise RequestError(
                field,
                f"binary data needs the header {HEADER} (the length of "
                "the JSON before the binary data)",
            )
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(field, f"must be a byte count, got {size!r}")
        left = len(self.data) - self.pos
        if size > left:
            raise RequestError(
                field,
                f"{size} bytes, but only {left} follow the JSON header "
                "and the inputs before this one",
            )
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def finish(self) -> None:
        if self.data is not None and self.pos != len(self.data):
            raise RequestError(
                HEADER,
                f"{len(self.data) - self.pos} bytes after the JSON header "
                "belong to no input's parameters.binary_data_size",
            )


def _requested(doc: Any, field: str, binary_default: bool) -> RequestedOutput:
    if not isinstance(doc, dict):
        raise RequestError(field, "must be an object with the output's name")
    _only(doc, field, {"name", "parameters"})
    name = doc.get("name")
    if not isinstance(name, str):
        raise RequestError(f"{field}.name", "must be a string")
    parameters = _parameters(doc, f"{field}.parameters")
    if parameters.get("classification"):
        raise RequestError(
            f"{field}.parameters.classification", "is not supported: ask for the prediction itself"
        )
    binary = _flag(parameters, "binary_data", f"{field}.parameters", binary_default)
    return RequestedOutput(name, binary)


# -- responses -----------------------------------------------------------------------------------


def encode_response(head: dict[str, Any], outputs: list[Output]) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary outputs follow it."""
    docs = []
    blobs = []
    for out in outputs:
        doc: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": [len(out.values)],
        }
        if out.binary:
            blobs.append(_blob(out))
            doc["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            doc["data"] = _json_data(out)
        docs.append(doc)
    header = json.dumps({**head, "outputs": docs}, ensure_ascii=False, separators=(",", ":"))
    data = header.encode("utf-8")
    if not blobs:
        return data, None
    return b"".join([data, *blobs]), len(data)


def _blob(out: Output) -> bytes:
    if out.datatype == "BYTES":
        encoded = [v.encode("utf-8") for v in out.values]
        return b"".join(LENGTH.pack(len(e)) + e for e in encoded)
    return np.asarray(out.values, _NUMPY[out.datatype]).tobytes()


def _json_data(out: Output) -> list[Any]:
    """Elements as JSON: numbers rounded to the datatype first, so both forms say the same."""
    if out.datatype == "BYTES":
        return out.values
    return np.asarray(out.values, _NUMPY[out.datatype]).tolist()
