"""The BYTES elements of binary tensor data (the Open Inference Protocol's binary extension):
each a 4-byte little-endian length and that many bytes. A request's BYTES inputs are split by
one compiled call and decoded at once (``bytes_inputs``); an input that is not plain -- a
length that does not fit, an element holding a line break, bytes that are not UTF-8 -- is read
element by element (``bytes_values``), whose errors name the element.

>>> bytes_values(b"\\2\\0\\0\\0ab\\0\\0\\0\\0", 2, "inputs[0]")
['ab', '']
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from shoal.serve.errors import RequestError

LENGTH = struct.Struct("<I")


def bytes_inputs(
    inputs: Sequence[tuple[str, int, Any]], data: bytes | None
) -> dict[int, list[str]]:
    """The elements of every BYTES input sent in binary, by input (its place in ``inputs``:
    datatype, rows and declared ``binary_data_size`` of each, None if sent as JSON), split by
    one compiled call and decoded at once. Empty when any is not plain (a length that does not
    fit, a line break, bytes that are not UTF-8), so that each input is read on its own, in
    order, and the first error is the one a client is told of."""
    if data is None:
        return {}
    starts, sizes, counts, which = [], [], [], []
    pos = 0
    for k, (datatype, rows, size) in enumerate(inputs):
        if size is None:
            continue
        if type(size) is not int or size < 0:
            return {}
        if datatype == "BYTES":
            starts.append(pos)
            sizes.append(size)
            counts.append(rows)
            which.append(k)
        pos += size
    if not which or pos > len(data) or 0 in counts:
        return {}
    ok, joined = _join_inputs(
        np.frombuffer(data, dtype=np.uint8), np.array(starts), np.array(sizes), np.array(counts)
    )
    if not ok:
        return {}
    try:
        flat = joined.tobytes().decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return {}
    if len(flat) != sum(counts):
        return {}
    out = {}
    for k, first, count in zip(which, np.cumsum([0, *counts]).tolist(), counts, strict=False):
        out[k] = flat[first : first + count]
    return out


@njit(cache=True)
def _join_inputs(data, starts, sizes, counts):
    """``_join_elements`` of each input's part of ``data``, joined by ``\\n`` too."""
    out = np.empty(len(data) + len(starts), dtype=np.uint8)
    w = 0
    for t in range(len(starts)):
        ok, part = _join_elements(data[starts[t] : starts[t] + sizes[t]], counts[t])
        if not ok:
            return False, out[:0]
        if t:
            out[w] = 10
            w += 1
        out[w : w + len(part)] = part
        w += len(part)
    return True, out[:w]


def bytes_values(blob: bytes, count: int, field: str) -> list[str]:
    """The BYTES elements of a blob as text: split by one compiled call and decoded at once
    when no element holds a line break (which joins them), else one by one (errors name the
    element: a length cut short, bytes that are not UTF-8)."""
    ok, joined = _join_elements(np.frombuffer(blob, dtype=np.uint8), count)
    if ok and count:
        try:
            return joined.tobytes().decode("utf-8").split("\n")
        except UnicodeDecodeError:
            pass
    return texts(_elements(blob, count, field), f"{field}.data")


@njit(cache=True)  # keeps the GIL: called once per tensor, for microseconds each
def _join_elements(blob, count):
    """The ``count`` BYTES elements of ``blob`` (each a 4-byte little-endian length and that
    many bytes) joined by ``\\n``, and whether that is all of ``blob`` and no element holds a
    ``\\n`` (False: ``_elements`` reads them one by one and says what is wrong)."""
    n = len(blob)
    out = np.empty(n, dtype=np.uint8)  # each 4-byte length becomes one separator
    pos = 0
    w = 0
    for k in range(count):
        if pos + 4 > n:
            return False, out[:0]
        size = (
            int(blob[pos])
            | int(blob[pos + 1]) << 8
            | int(blob[pos + 2]) << 16
            | int(blob[pos + 3]) << 24
        )
        pos += 4
        if pos + size > n:
            return False, out[:0]
        if k:
            out[w] = 10
            w += 1
        for i in range(pos, pos + size):
            if blob[i] == 10:
                return False, out[:0]
            out[w] = blob[i]
            w += 1
        pos += size
    return pos == n, out[:w]


def _elements(blob: bytes, count: int, field: str) -> list[bytes]:
    """The BYTES elements of a blob: each a 4-byte little-endian length and that many bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(blob) and len(out) < count:
        if pos + 4 > len(blob):
            raise RequestError(f"{field}.data[{len(out)}]", "its 4-byte length is cut short")
        (n,) = LENGTH.unpack_from(blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise RequestError(
                f"{field}.data[{len(out)}]",
                f"declares {n} bytes, but {len(blob) - pos} remain in the input's binary data",
            )
        out.append(blob[pos : pos + n])
        pos += n
    if len(out) != count or pos != len(blob):
        raise RequestError(
            f"{field}.parameters.binary_data_size",
            f"{len(blob)} bytes do not hold exactly {count} BYTES elements "
            "(each a 4-byte little-endian length and that many bytes)",
        )
    return out


def texts(elements: list[bytes], field: str) -> list[str]:
    out = []
    for j, element in enumerate(elements):
        try:
            out.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"{field}[{j}]", "not UTF-8 text") from None
    return out
