"""A prediction request's JSON objects as rows of a schema model's table, by one compiled call
over the request's body: no ``json.loads``, no Python object per value.

The body ``{"records": [{"I1": 3, "C1": "68fd1e64", ...}, ...]}`` is read by a numba kernel that
writes each record's row -- the fields of the schema's columns in its order, separated as in
its file -- as ``Rows.of_records`` would make it from the decoded objects, to the byte. It reads
the subset of requests whose rows it can write exactly, and hands any other body back (None)
to the Python path (``json.loads``, then ``Rows.of_records``), which answers it as before, its
errors included. A body is handed back when it holds:

- any top-level key but ``records`` (``ignore_unknown``...), or records that are not all
  objects, no record, or more than the request's limit of records;
- a key that names no column, a key twice in a record, or a key with an escape;
- a value that is not null, an integer or a string: a float, a boolean, an object (a
  namespace), a list -- or NaN, or anything else that is not strict JSON;
- ``-0``, an integer of more than 15 digits in a numeric column or 18 in another (Python
  writes such integers otherwise, or they are checked more closely), or a string in a numeric
  column;
- a string in a categorical column that holds, once its escapes are decoded, the separator
  (a field would need quotes), a quote or a line break;
- a row that would be empty or start with ``{`` (a JSON line, as a row given as text).

The keys of a record may come in any order; a column left out, or null, is an empty field.

>>> from shoal.features.schema import ColumnSchema
>>> from shoal.features.spec import FeatureSpec
>>> keys = Keys(ColumnSchema.parse("label,n:num:log1p,c:cat", delimiter="\\t"))
>>> keys.rows(b'{"records": [{"c": "ab", "n": 3}, {"label": 1, "n": null}]}', 10)
['\\t3\\tab', '\\t\\t']
>>> keys.rows(b'{"records": [{"n": 3.5}]}', 10) is None  # a float: the Python path
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from shoal.data.jsontokens import is_word, string, unescaped
from shoal.data.textparse import _grow
from shoal.features.schema import ColumnSchema

_OTHER, _NUM, _CAT = 0, 1, 2  # what a column's values are: ignored (label...), numbers, categories
_MAX_NUM_DIGITS = 15  # longer integers are written as Python writes their float (rows._texts)
_MAX_CAT_DIGITS = 18  # an integer category is its digits; longer ones go to Python's int
_RECORDS = np.frombuffer(b"records", dtype=np.uint8)


class BodyRows(list[str]):
    """The rows that a request's body made under ``schema``, and how to read its records
    again (``objects``) should the live model's schema be another by the time they are
    scored (a model loaded meanwhile): ``scoring.record_lines`` takes them as they are only
    under the schema they were made for."""

    def __init__(
        self, rows: list[str], schema: ColumnSchema, objects: Callable[[], list[Any]]
    ) -> None:
        super().__init__(rows)
        self.schema = schema
        self.objects = objects


class Keys:
    """A schema's columns as the kernel looks them up: names, and what their values are."""

    def __init__(self, schema: ColumnSchema) -> None:
        names = [c.name.encode() for c in schema.columns]
        self.names = np.frombuffer(b"".join(names) or b"\0", dtype=np.uint8)
        self.offsets = np.cumsum([0] + [len(n) for n in names], dtype=np.int64)
        kinds = {"num": _NUM, "cat": _CAT}
        self.kinds = np.array([kinds.get(c.role, _OTHER) for c in schema.columns], np.int64)
        self.sep = ord(schema.separator)

    def rows(self, body: bytes, limit: int) -> list[str] | None:
        """The rows of a prediction request's body, or None for the Python path."""
        buf = np.frombuffer(body, dtype=np.uint8)
        ok, out, count = _rows(buf, self.names, self.offsets, self.kinds, self.sep, limit)
        if not ok:
            return None
        rows = out.tobytes().decode("utf-8").split("\n")
        return rows if len(rows) == count else None


@njit(cache=True)
def body_ws(buf, p, n):
    """Past JSON whitespace: space, tab, newline, carriage return."""
    while p < n and (buf[p] == 32 or buf[p] == 9 or buf[p] == 10 or buf[p] == 13):
        p += 1
    return p


@njit(cache=True)
def _integer(buf, p, n):
    """(end, digits) of the JSON integer at p, or (-1, 0) if none is there or it is followed
    by a fraction or an exponent (a float) or leads with a zero; -0 is (-1, 0) too."""
    s = p
    if p < n and buf[p] == 45:  # '-'
        p += 1
    d = p
    while p < n and 48 <= buf[p] <= 57:
        p += 1
    digits = p - d
    if digits == 0 or (digits > 1 and buf[d] == 48):
        return -1, 0
    if p < n and (buf[p] == 46 or buf[p] == 101 or buf[p] == 69):  # '.', 'e', 'E'
        return -1, 0
    if d > s and digits == 1 and buf[d] == 48:
        return -1, 0
    return p, digits


@njit(cache=True)
def _column(buf, s, e, names, offsets):
    """The column whose name is ``buf[s:e]``, or -1."""
    for c in range(len(offsets) - 1):
        if e - s == offsets[c + 1] - offsets[c] and is_word(
            buf, s, e, names[offsets[c] : offsets[c + 1]]
        ):
            return c
    return -1


@njit(cache=True)  # keeps the GIL: a short call needs no wait to take it back
def _rows(buf, names, offsets, kinds, sep, limit):
    """(ok, rows joined by newlines, number of rows) of the body in ``buf``; ok is False for a
    body outside the subset the module's doc gives."""
    n = len(buf)
    ncol = len(kinds)
    out = np.empty(n + 64, dtype=np.uint8)
    fail = (False, out[:0], 0)
    starts = np.zeros(ncol, dtype=np.int64)
    ends = np.zeros(ncol, dtype=np.int64)
    seen = np.full(ncol, -1, dtype=np.int64)
    escapes = np.zeros(ncol, dtype=np.bool_)
    p = body_ws(buf, 0, n)
    if p >= n or buf[p] != 123:  # '{'
        return fail
    p = body_ws(buf, p + 1, n)
    if p >= n or buf[p] != 34:
        return fail
    e, escaped = string(buf, p + 1, n)
    if e < 0 or escaped or not is_word(buf, p + 1, e, _RECORDS):
        return fail
    p = body_ws(buf, e + 1, n)
    if p >= n or buf[p] != 58:  # ':'
        return fail
    p = body_ws(buf, p + 1, n)
    if p >= n or buf[p] != 91:  # '['
        return fail
    p = body_ws(buf, p + 1, n)
    w = 0
    rec = 0
    while True:
        if p >= n or buf[p] != 123 or rec >= limit:
            return fail
        p = body_ws(buf, p + 1, n)
        if p < n and buf[p] == 125:  # '}': an empty object
            p += 1
        else:
            while True:
                if p >= n or buf[p] != 34:
                    return fail
                e, escaped = string(buf, p + 1, n)
                if e < 0 or escaped:
                    return fail
                c = _column(buf, p + 1, e, names, offsets)
                if c < 0 or seen[c] == rec:
                    return fail
                seen[c] = rec
                p = body_ws(buf, e + 1, n)
                if p >= n or buf[p] != 58:
                    return fail
                p = body_ws(buf, p + 1, n)
                if p >= n:
                    return fail
                kind = kinds[c]
                ch = buf[p]
                if ch == 110:  # null: an empty field
                    if p + 4 > n or buf[p + 1] != 117 or buf[p + 2] != 108 or buf[p + 3] != 108:
                        return fail
                    starts[c] = ends[c] = p
                    escapes[c] = False
                    p += 4
                elif ch == 34:  # a string
                    e, escaped = string(buf, p + 1, n)
                    if e < 0 or kind == _NUM:
                        return fail
                    starts[c], ends[c], escapes[c] = p + 1, e, escaped
                    p = e + 1
                elif ch == 45 or 48 <= ch <= 57:  # an integer
                    e, digits = _integer(buf, p, n)
                    if e < 0 or digits > (_MAX_NUM_DIGITS if kind == _NUM else _MAX_CAT_DIGITS):
                        return fail
                    starts[c], ends[c], escapes[c] = p, e, False
                    p = e
                else:  # a float's digits are taken above; true, false, objects, lists, NaN
                    return fail
                p = body_ws(buf, p, n)
                if p < n and buf[p] == 44:  # ','
                    p = body_ws(buf, p + 1, n)
                    continue
                if p < n and buf[p] == 125:  # '}'
                    p += 1
                    break
                return fail
        # the record's row, in the schema's order
        need = w + ncol + 1
        for c in range(ncol):
            if seen[c] == rec and kinds[c] != _OTHER:
                need += ends[c] - starts[c]  # a string's escapes never grow once decoded
        out = _grow(out, need)
        row = w
        for c in range(ncol):
            if c:
                out[w] = sep
                w += 1
            if seen[c] != rec or kinds[c] == _OTHER:
                continue
            if escapes[c]:
                field = w
                w = unescaped(buf, starts[c], ends[c], out, w)
                for i in range(field, w):
                    if out[i] == sep or out[i] == 34 or out[i] == 10 or out[i] == 13:
                        return fail
            else:  # no escape: no quote, no line break (JSON has none unescaped)
                for i in range(starts[c], ends[c]):
                    if buf[i] == sep:
                        return fail
                    out[w] = buf[i]
                    w += 1
        if w == row or out[row] == 123:  # an empty row; a row that reads as a JSON line
            return fail
        out[w] = 10
        w += 1
        rec += 1
        p = body_ws(buf, p, n)
        if p < n and buf[p] == 44:
            p = body_ws(buf, p + 1, n)
            continue
        if p < n and buf[p] == 93:  # ']'
            break
        return fail
    p = body_ws(buf, p + 1, n)
    if p >= n or buf[p] != 125:
        return fail
    if body_ws(buf, p + 1, n) != n:
        return fail
    return True, out[: w - 1], rec
