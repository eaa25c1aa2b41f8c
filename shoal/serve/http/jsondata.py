"""The ``data`` arrays of an OIP request's JSON, read by one compiled scan instead of Python.

A request of 100 rows in 39 columns sends ~4,000 JSON elements. ``json.loads`` makes a Python
object of each, the tensor checks look at each, and a schema model's rows are then written back
out as text from them: together ~1 ms of a 100-row request, where VW lines cost ~0.1 ms to
decode. Here ``scan`` walks the request's JSON once in a numba kernel and finds the ``data``
array of every input (``{"inputs": [{..., "data": [...]}, ...]}``): each element's bytes, and
what the array holds (strings, integers, floats, NaN, anything else). The rest of the request
-- names, datatypes, shapes, parameters, outputs -- is the same JSON with each such array
replaced by ``null`` (``Scanned.skeleton``), small, and decoded and checked by Python as
before.

An input's elements stay bytes of the request (``Elements``) while that is enough: its count
is the shape's, and by their kinds alone they are values of its datatype (BYTES: strings
without escapes; FP: numbers or NaN; integers: integers in the datatype's range). A schema
model then writes its rows straight from those bytes (``rows``): a string's text, a number as
the client wrote it (it parses to the same value as Python's ``repr`` of it would), NaN as a
missing value. Anything else -- an escape, ``Infinity``, ``true``, ``null``, a number that the
kernel cannot read exactly as ``json`` does, ``-0`` -- makes the elements Python values
(``Elements.values``: ``json`` of the array's own bytes), which take the checks and errors of
before. A request whose JSON the scan does not follow (nested arrays, a key with an escape, a
key given twice, more than 64 levels) is decoded whole by Python, as is invalid JSON, so that
its error is the one ``json`` gives.

>>> body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [0.5, NaN]}]}'
>>> found = scan(body)
>>> found.skeleton
b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": null}]}'
>>> e = found.arrays[0]
>>> len(e), e.fits("FP32"), e.fits("BYTES"), e.values
(2, True, False, [0.5, nan])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numba import njit

from shoal.data.jsontokens import is_word, number, string
from shoal.data.textparse import _F32_LIMIT  # what a float32 holds, as the row parser reads it
from shoal.serve.errors import RequestError
from shoal.serve.http.body import parse_json
from shoal.serve.reading.columnrows import _INT_LIMIT  # integers written as they are
from shoal.serve.reading.jsonrows import body_ws

# what an array holds, a bit each
STR, FLOAT, INT, NAN, OTHER = 1, 2, 4, 8, 16
_MAX_DEPTH = 64
_INPUTS = np.frombuffer(b"inputs", dtype=np.uint8)
_DATA = np.frombuffer(b"data", dtype=np.uint8)


@njit(cache=True)
def _word_end(buf, p, n):
    """The end of a bare word (``NaN``, ``true``, a number json reads and the kernel does not)."""
    while p < n and buf[p] not in (44, 93, 125, 32, 9, 10, 13):  # , ] } and whitespace
        p += 1
    return p


@njit(cache=True)
def _elements(buf, p, n, starts, ends, m, stats):
    """Read the flat array at ``buf[p] == '['``: each element's span into ``starts``/``ends``
    from ``m`` on (a string's text, a number's token, NaN empty), and what it holds into
    ``stats`` (kinds, lowest and highest integer). Returns (end past ']', m), end -1 when the
    array is not one the scan reads (nested, unterminated, not JSON)."""
    kinds = 0
    lo, hi = np.inf, -np.inf
    p = body_ws(buf, p + 1, n)
    if p < n and buf[p] == 93:
        stats[0], stats[1], stats[2] = kinds, lo, hi
        return p + 1, m
    while True:
        if p >= n:
            return -1, m
        if m == len(starts):
            return -1, m  # (the caller sized them for every element a body can hold)
        c = buf[p]
        s = e = p
        if c == 34:  # a string
            e, escaped = string(buf, p + 1, n)
            if e < 0:
                return -1, m
            s, nxt = p + 1, e + 1
            kinds |= OTHER if escaped else STR
        elif c == 45 or 48 <= c <= 57:  # a number
            e, v, is_int = number(buf, p, n)
            if e < 0:  # Infinity, or a number only json reads as it does
                e = _word_end(buf, p, n)
                kinds |= OTHER
            elif is_int and (abs(v) >= _INT_LIMIT or (v == 0 and c == 45)):
                kinds |= OTHER  # too long to copy as json writes it; -0 is json's 0
            elif is_int:
                kinds |= INT
                lo, hi = min(lo, v), max(hi, v)
            elif abs(v) >= _F32_LIMIT:
                kinds |= OTHER
            else:
                kinds |= FLOAT
            nxt = e
        elif c == 78 and p + 3 <= n and buf[p + 1] == 97 and buf[p + 2] == 78:  # NaN
            nxt = p + 3
            kinds |= NAN
        elif c == 91 or c == 123:  # a nested array or object: Python's
            return -1, m
        else:  # true, false, null, Infinity (or not JSON: json will say)
            e = nxt = _word_end(buf, p, n)
            if e == p:
                return -1, m
            kinds |= OTHER
        starts[m], ends[m] = s, e
        m += 1
        p = body_ws(buf, nxt, n)
        if p < n and buf[p] == 44:
            p = body_ws(buf, p + 1, n)
        elif p < n and buf[p] == 93:
            stats[0], stats[1], stats[2] = kinds, lo, hi
            return p + 1, m
        else:
            return -1, m


@njit(cache=True)
def _scan(buf, inputs_word, data_word):
    """(ok, arrays, element starts, element ends): each array row is (input index, start, end,
    first element, elements, kinds, lowest int, highest int) for the ``data`` of an object in
    the top-level ``inputs`` array."""
    n = len(buf)
    # room for the most a body can hold (an element takes two bytes with its comma, an array
    # eight with its key); pages not written are never touched, so memory follows what is read
    cap = n // 2 + 1
    starts = np.empty(cap, dtype=np.int64)
    ends = np.empty(cap, dtype=np.int64)
    arrays = np.empty((n // 8 + 1, 8), dtype=np.float64)
    stats = np.zeros(3, dtype=np.float64)
    na = m = 0
    stack = np.zeros(_MAX_DEPTH + 1, dtype=np.uint8)  # 1 object, 2 array, by depth
    depth = 0
    top_key_inputs = False  # the current key of the top-level object is "inputs"
    inputs_seen = False
    k = -1  # the input whose object is open
    data_seen = False
    p = body_ws(buf, 0, n)
    want_value = True
    while True:
        p = body_ws(buf, p, n)
        if p >= n:
            return depth == 0 and not want_value, arrays[:na], starts[:m], ends[:m]
        c = buf[p]
        if want_value:
            if depth == 2 and stack[2] == 2 and top_key_inputs:  # an input (of inputs[k])
                k += 1
                data_seen = False
            if c == 123 or c == 91:  # { or [
                if depth == _MAX_DEPTH:
                    return False, arrays[:0], starts[:0], ends[:0]
                depth += 1
                stack[depth] = 1 if c == 123 else 2
                p = body_ws(buf, p + 1, n)
                if p < n and buf[p] == (125 if c == 123 else 93):  # empty
                    depth -= 1
                    p += 1
                    want_value = False
                    continue
                if c == 91:
                    continue  # an element: a value
                # an object: its first key
            elif c == 34:
                e, _ = string(buf, p + 1, n)
                if e < 0:
                    return False, arrays[:0], starts[:0], ends[:0]
                p = e + 1
                want_value = False
                continue
            else:
                e = _word_end(buf, p, n)
                if e == p:
                    return False, arrays[:0], starts[:0], ends[:0]
                p = e
                want_value = False
                continue
        else:  # after a value: a comma or the end of its container
            if depth == 0:
                return False, arrays[:0], starts[:0], ends[:0]  # text after the body
            if c == 44:
                p = body_ws(buf, p + 1, n)
                if stack[depth] == 2:
                    want_value = True
                    continue
            elif (c == 125 and stack[depth] == 1) or (c == 93 and stack[depth] == 2):
                depth -= 1
                p += 1
                continue
            else:
                return False, arrays[:0], starts[:0], ends[:0]
        # a key of the object at this depth, then ':' and its value
        if p >= n or buf[p] != 34:
            return False, arrays[:0], starts[:0], ends[:0]
        e, escaped = string(buf, p + 1, n)
        if e < 0 or escaped:
            return False, arrays[:0], starts[:0], ends[:0]
        key_s = p + 1
        p = body_ws(buf, e + 1, n)
        if p >= n or buf[p] != 58:
            return False, arrays[:0], starts[:0], ends[:0]
        p = body_ws(buf, p + 1, n)
        if depth == 1:
            top_key_inputs = is_word(buf, key_s, e, inputs_word)
            if top_key_inputs:
                if inputs_seen:
                    return False, arrays[:0], starts[:0], ends[:0]  # json keeps the last
                inputs_seen = True
        elif depth == 3 and stack[2] == 2 and top_key_inputs and is_word(buf, key_s, e, data_word):
            if data_seen:
                return False, arrays[:0], starts[:0], ends[:0]
            data_seen = True
            if p < n and buf[p] == 91:
                first = m
                end, m = _elements(buf, p, n, starts, ends, m, stats)
                if end < 0:
                    return False, arrays[:0], starts[:0], ends[:0]
                arrays[na, 0], arrays[na, 1], arrays[na, 2] = k, p, end
                arrays[na, 3], arrays[na, 4] = first, m - first
                arrays[na, 5], arrays[na, 6], arrays[na, 7] = stats[0], stats[1], stats[2]
                na += 1
                p = end
                want_value = False
                continue
        want_value = True


@njit(cache=True)
def _rows(buf, starts, ends, first, cats, n, sep):
    """(ok, the rows joined by newlines): row r's field of column c is element ``first[c] + r``
    (``first[c]`` -1: the column is empty). ok is False where a categorical field holds the
    separator (its text cannot be a field)."""
    size = n * len(first) + 1
    for c in range(len(first)):
        if first[c] >= 0:
            for r in range(n):
                size += ends[first[c] + r] - starts[first[c] + r]
    out = np.empty(size, dtype=np.uint8)
    w = 0
    for r in range(n):
        for c in range(len(first)):
            if c:
                out[w] = sep
                w += 1
            if first[c] < 0:
                continue
            j = first[c] + r
            for i in range(starts[j], ends[j]):
                b = buf[i]
                if cats[c] and b == sep:
                    return False, out[:0]
                out[w] = b
                w += 1
        out[w] = 10
        w += 1
    return True, out[: max(w - 1, 0)]


class Elements(Sequence[Any]):
    """An input's ``data`` as bytes of the request: ``len`` and ``fits`` need no Python per
    element; ``values`` (and indexing, iterating) decodes them with ``json``, once."""

    __slots__ = ("_values", "end", "first", "found", "highest", "kinds", "lowest", "size", "start")

    def __init__(self, found: _Found, row: list[float]) -> None:
        self.found = found
        _, start, end, first, size, kinds, self.lowest, self.highest = row  # lowest int, highest
        self.start, self.end = int(start), int(end)  # the array's '[' in the body, past its ']'
        self.first, self.size = int(first), int(size)  # its elements in the scan's spans
        self.kinds = int(kinds)
        self._values: list[Any] | None = None

    def __repr__(self) -> str:  # as the list it stands for
        return repr(self.values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Elements | list):
            return self.values == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (as a list's)

    def fits(self, datatype: str) -> bool:
        """Whether every element is a value of ``datatype`` as ``tensors._fits`` says, and
        one that ``rows`` writes as the Python value's text would read."""
        if self.kinds & OTHER:
            return False
        if datatype == "BYTES":
            return self.kinds & ~STR == 0
        if datatype.startswith("FP"):
            return self.kinds & STR == 0
        bounds = INT_RANGE.get(datatype)
        return (
            bounds is not None
            and self.kinds & ~INT == 0
            and (self.size == 0 or (bounds[0] <= self.lowest and self.highest <= bounds[1]))
        )

    @property
    def values(self) -> list[Any]:
        if self._values is None:
            body = self.found.body
            try:
                self._values = parse_json(b'{"v": ' + body[self.start : self.end] + b"}",
                                          constants=True)["v"]  # fmt: skip
            except RequestError:  # not JSON: the error json gives for the whole body
                parse_json(body, constants=True)
                raise
        return self._values

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        return self.values[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)


@dataclass(frozen=True)
class _Found:
    """What one scan read: the request's bytes, and each element's span in them."""

    body: bytes
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


INT_RANGE = {  # the values of each integer datatype of the protocol
    datatype: (int(np.iinfo(datatype.lower()).min), int(np.iinfo(datatype.lower()).max))
    for datatype in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
}


@dataclass(frozen=True)
class Scanned:
    skeleton: bytes  # the request with each input's data array replaced by null
    arrays: dict[int, Elements]  # by input index


def scan(body: bytes) -> Scanned | None:
    """The inputs' data arrays of a request's JSON, and the rest of it (see the module's doc);
    None where the scan does not follow the JSON (Python decodes it all)."""
    buf = np.frombuffer(body, dtype=np.uint8)
    ok, arrays, starts, ends = _scan(buf, _INPUTS, _DATA)
    if not ok or not len(arrays):
        return None
    found = _Found(body, buf, starts, ends)
    by_input: dict[int, Elements] = {}
    parts: list[bytes] = []
    at = 0
    for row in arrays.tolist():
        e = by_input[int(row[0])] = Elements(found, row)
        if e.kinds & OTHER:
            e.values  # noqa: B018 -- json reads it now: not JSON is the body's first error
        parts += (body[at : e.start], b"null")
        at = e.end
    parts.append(body[at:])
    return Scanned(b"".join(parts), by_input)


def rows(
    columns: Sequence[Elements | None], cats: Sequence[bool], n: int, sep: str
) -> list[str] | None:
    """The ``n`` rows of a table whose column c holds ``columns[c]`` (None: empty), all read
    by one scan, all fitting their datatypes; None where a categorical value holds ``sep``
    (the slower way says how)."""
    found = next(e.found for e in columns if e is not None)
    first = np.array([-1 if e is None else e.first for e in columns], dtype=np.int64)
    ok, out = _rows(
        found.buf, found.starts, found.ends, first, np.array(cats, dtype=np.bool_), n, ord(sep)
    )
    return out.tobytes().decode("utf-8").split("\n") if ok else None
