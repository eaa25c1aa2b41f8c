"""Column tensors of a schema model as rows of its table, put together by one compiled call.

An OIP request sends a column at a time; a row holds a record's fields in the schema's order.
``assemble`` makes each column's fields once -- a column of strings as it is, integers as
numbers for the kernel to write, floats written by Python's ``repr`` (one C-level map per
column) -- and a numba kernel interleaves them into rows, with no Python per value or per row.
The rows are those ``Rows.of_columns`` makes value by value, to the byte; a column it cannot
make so (a string holding the separator, a quote or a line break, a float past float32 or
written with an exponent, a numeric column's integer of more than 15 digits, -2**63, values
of mixed types, booleans)
makes ``assemble`` answer None, and the request takes that slower way, errors included.

>>> from shoal.features.schema import ColumnSchema
>>> from shoal.features.spec import FeatureSpec
>>> from shoal.serve.reading.rows import rows_of
>>> rows = rows_of(FeatureSpec(schema=ColumnSchema.parse("label,n,x,c:cat")))
>>> assemble(rows, {"c": ["a", "b"], "n": [3, -12], "x": [0.5, float("nan")]}, 2)
[',3,0.5,a', ',-12,,b']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

if TYPE_CHECKING:
    from shoal.serve.reading.rows import Rows

_EMPTY, _TEXT, _INT = 0, 1, 2  # how a column's fields are given
_INT_LIMIT = 10**15  # integers below this in magnitude are written as Python writes them
_INT64_MIN = -(2**63)


def assemble(
    rows: Rows,
    columns: Mapping[str, Sequence[Any]],
    n: int,
    types: Mapping[str, type] | None = None,
) -> list[str] | None:
    """The rows of ``n`` records given a column at a time, or None (see the module's doc).
    ``types`` gives the one type of a column's values where it is known (an OIP tensor's
    datatype says it), so that they need not be looked at."""
    kinds = np.zeros(len(rows.columns), dtype=np.int64)
    cats = np.zeros(len(rows.columns), dtype=np.bool_)
    texts: list[str] = []
    ints: list[Sequence[Any]] = []
    numeric_ints: list[bool] = []
    for i, column in enumerate(rows.columns):
        values = columns.get(column.name)
        if values is None or not column.is_feature:
            continue
        numeric = column.role == "num"
        kind = types.get(column.name) if types else None
        if kind is None:
            found = set(map(type, values))
            kind = found.pop() if len(found) == 1 else None
        if kind is int:
            ints.append(values)
            numeric_ints.append(numeric)
            kinds[i] = _INT
        elif kind is str and not numeric:
            texts.append("\n".join(values))
            kinds[i], cats[i] = _TEXT, True
        elif kind is float and numeric:
            text = "\n".join(map(repr, values))
            if "e+" in text or "inf" in text:  # perhaps past float32: the careful way
                return None
            texts.append(text.replace("nan", ""))  # NaN: a missing value
            kinds[i] = _TEXT
        else:
            return None
    try:
        matrix = np.array(ints, dtype=np.int64).reshape(len(ints), n)
    except OverflowError:
        return None
    numbers = matrix[np.array(numeric_ints, dtype=np.bool_)]
    if ((numbers >= _INT_LIMIT) | (numbers <= -_INT_LIMIT)).any():
        return None
    if (matrix == _INT64_MIN).any():  # a category that has no int64 negation
        return None
    joined = "\n".join(texts) + "\n" if texts else ""
    if joined.count("\n") != len(texts) * n:  # a string holds a line break
        return None
    try:
        buf = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    except UnicodeEncodeError:  # a lone surrogate
        return None
    ok, out = _rows(kinds, cats, buf, matrix, n, ord(rows.sep))
    return out.tobytes().decode("utf-8").split("\n") if ok else None


@njit(cache=True)  # keeps the GIL: a short call needs no wait to take it back
def _rows(kinds, cats, text, ints, n, sep):
    """(ok, the rows joined by newlines): each text column's ``n`` fields end with a newline
    in ``text``, in column order; each integer column is a row of ``ints``. ok is False where
    a categorical field holds the separator, a quote or a carriage return."""
    ntext = 0
    for c in range(len(kinds)):
        if kinds[c] == _TEXT:
            ntext += 1
    ends = np.empty(ntext * n, dtype=np.int64)
    k = 0
    for i in range(len(text)):
        if text[i] == 10:
            ends[k] = i
            k += 1
    size = len(text) + n * len(kinds) + 20 * n * ints.shape[0] + 1  # "-" and 19 digits
    out = np.empty(size, dtype=np.uint8)
    digits = np.empty(20, dtype=np.uint8)
    w = 0
    for r in range(n):
        t = 0
        m = 0
        for c in range(len(kinds)):
            if c:
                out[w] = sep
                w += 1
            if kinds[c] == _TEXT:
                j = t * n + r
                start = ends[j - 1] + 1 if j else 0
                for i in range(start, ends[j]):
                    b = text[i]
                    if cats[c] and (b == sep or b == 34 or b == 13):
                        return False, out[:0]
                    out[w] = b
                    w += 1
                t += 1
            elif kinds[c] == _INT:
                v = ints[m, r]
                m += 1
                if v < 0:
                    out[w] = 45  # '-'
                    w += 1
                    v = -v
                d = 0
                while True:
                    digits[d] = 48 + v % 10
                    d += 1
                    v //= 10
                    if v == 0:
                        break
                for i in range(d - 1, -1, -1):
                    out[w] = digits[i]
                    w += 1
        out[w] = 10
        w += 1
    return True, out[: max(w - 1, 0)]
