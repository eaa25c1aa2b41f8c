"""Python records (dicts) to hashed base features: the core shared by JSON lines and dicts.

Without a column schema a record's own types decide, exactly as if the record were written in
Vowpal Wabbit text: a key ``NAME`` holding a number ``x`` is the feature ``NAME:x``, holding a
string ``v`` it is ``NAME=v`` (value 1), a boolean is the number 1 or 0; ``None``, NaN and the
empty string are missing (as an empty CSV field is). A dict value is a namespace:
``{"ns": {"name": 2}}`` is ``|ns name:2``; other keys are in the default namespace (``| ``).
Zero values are dropped, as every reader drops them.

With a column schema in the spec (a model trained on CSV or Parquet), the schema decides: its
``num`` and ``cat`` columns are looked up by name, in schema order, with their namespace,
``log1p`` and ``fill`` -- so a record gets exactly the features its row in a table would; keys
the schema does not list are ignored, and a dict under a namespace's name is opened (its keys
are looked up as columns). A ``cat`` column takes strings and integers (an integer is
its decimal text, a boolean ``true``/``false``, as Arrow casts them).

Values are gathered in Python lists and hashed in one compiled pass per block of records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from shoal.data.columns import transform
from shoal.data.textparse import _F32_LIMIT, RULE_DIGITS, _feature_hash
from shoal.features.hashing import namespace_hash
from shoal.features.spec import FeatureSpec


class BadRecord(ValueError):
    """A record's value cannot be a feature; the message says which and why."""


_SCALARS = "a number, a string, a boolean or null"


def _number(name: str, value: Any) -> float:
    """A finite float from a number or boolean (NaN: missing); BadRecord otherwise."""
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            v = float(value)
        except OverflowError:
            v = math.inf
        if math.isinf(v) or abs(v) >= _F32_LIMIT:
            raise BadRecord(f"feature {name!r}: value {value!r} is not a finite float32 number")
        return v
    raise BadRecord(f"feature {name!r}: {type(value).__name__} value where {_SCALARS} is expected")


@njit(cache=True, nogil=True)
def _encode(row_ptr, key_data, key_off, ns_hash, letters, raw, log1p, digit_limit):
    """Base features of the gathered rows: transform, drop zeros, hash ``key`` in its namespace."""
    n = len(row_ptr) - 1
    m = len(raw)
    base_ptr = np.zeros(n + 1, dtype=np.int64)
    h32 = np.empty(m, dtype=np.int64)
    lets = np.empty(m, dtype=np.uint8)
    vals = np.empty(m, dtype=np.float32)
    nb = 0
    for r in range(n):
        for k in range(row_ptr[r], row_ptr[r + 1]):
            v32 = np.float32(transform(raw[k], log1p[k]))
            if v32 == 0.0:
                continue
            h32[nb] = _feature_hash(key_data, key_off[k], key_off[k + 1], ns_hash[k], digit_limit)
            lets[nb] = letters[k]
            vals[nb] = v32
            nb += 1
        base_ptr[r + 1] = nb
    return base_ptr, h32[:nb], lets[:nb], vals[:nb]


class RecordEncoder:
    """Gathers records one by one (``add``), then hashes them all at once (``build``).

    >>> enc = RecordEncoder(FeatureSpec(bits=10))
    >>> enc.add({"x": 2.0, "city": "Paris", "u": {"id": 7}})
    >>> base_ptr, h32, letters, vals = enc.build()
    >>> base_ptr.tolist(), vals.tolist(), bytes(letters).decode()
    ([0, 3], [2.0, 1.0, 7.0], '  u')
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._ns: dict[str, tuple[int, int]] = {}
        self._ignore = set(spec.ignore.encode())
        self._columns = (
            [c for c in spec.schema.columns if c.is_feature] if spec.schema is not None else None
        )
        self._namespaces = {c.namespace for c in self._columns or ()}
        self._keys: list[bytes] = []
        self._nsh: list[int] = []
        self._let: list[int] = []
        self._raw: list[float] = []
        self._log1p: list[bool] = []
        self._ptr: list[int] = [0]

    def __len__(self) -> int:
        return len(self._ptr) - 1

    def _namespace(self, ns: str) -> tuple[int, int]:
        got = self._ns.get(ns)
        if got is None:
            raw = ns.encode()
            nsh = namespace_hash(ns, self.spec.seed, self.spec.hash_version)
            got = self._ns[ns] = (nsh, raw[0] if raw else 32)
        return got

    def _put(self, key: str, ns: str, value: float, log1p: bool = False) -> None:
        try:  # a str from JSON may hold a lone surrogate (a \ud800 escape): no UTF-8 for it
            h, letter = self._namespace(ns)
            if letter in self._ignore:
                return
            raw = key.encode()
        except UnicodeEncodeError:
            raise BadRecord(
                f"feature {key!r} of namespace {ns!r} is not valid Unicode text"
            ) from None
        self._keys.append(raw)
        self._nsh.append(h)
        self._let.append(letter)
        self._raw.append(value)
        self._log1p.append(log1p)

    def _free(self, name: Any, ns: str, value: Any) -> None:
        """A schemaless feature: its type says numeric or categorical."""
        name = name if isinstance(name, str) else str(name)
        if not name:
            raise BadRecord("a feature has an empty name")
        if value is None:
            return
        if isinstance(value, str):
            if value:
                self._put(f"{name}={value}", ns, 1.0)
            return
        v = _number(name, value)
        if not math.isnan(v):
            self._put(name, ns, v)

    def _in_schema(self, record: Mapping[str, Any]) -> None:
        assert self._columns is not None
        if any(isinstance(v, Mapping) for v in record.values()):
            flat: dict[str, Any] = {}  # {"user": {"age": 3}}: the schema says where age goes
            for k, v in record.items():
                if isinstance(v, Mapping) and k in self._namespaces:
                    flat.update(v)
                else:
                    flat[k] = v
            record = flat
        for c in self._columns:
            value = record.get(c.name)
            if isinstance(value, Mapping | list | tuple):
                raise BadRecord(f"column {c.name!r}: a nested value where {_SCALARS} is expected")
            if c.role == "cat":
                if isinstance(value, float) and math.isnan(value):
                    value = None
                elif isinstance(value, bool | np.bool_):
                    value = "true" if value else "false"
                elif isinstance(value, int | np.integer):
                    value = str(int(value))
                elif value is not None and not isinstance(value, str):
                    raise BadRecord(
                        f"column {c.name!r} is categorical: give a string or an integer, "
                        f"not {value!r}"
                    )
                if value:
                    self._put(f"{c.name}={value}", c.namespace, 1.0)
                continue
            if isinstance(value, str):
                raise BadRecord(f"column {c.name!r} is numeric: {value!r} is a string")
            v = math.nan if value is None else _number(c.name, value)
            if math.isnan(v) and c.fill is not None:
                v = c.fill
            if not math.isnan(v):
                self._put(c.name, c.namespace, v, c.transform == "log1p")

    def add(self, record: Mapping[str, Any]) -> None:
        """Append one record's features; on ``BadRecord`` nothing of it is kept."""
        mark = len(self._keys)
        try:
            if self._columns is not None:
                self._in_schema(record)
            else:
                for key, value in record.items():
                    if isinstance(value, Mapping):
                        ns = key if isinstance(key, str) else str(key)
                        for name, v in value.items():
                            if isinstance(v, Mapping | list | tuple):
                                raise BadRecord(
                                    f"feature {name!r} of namespace {ns!r}: a nested value "
                                    f"where {_SCALARS} is expected"
                                )
                            self._free(name, ns, v)
                    else:
                        self._free(key, "", value)
        except BadRecord:
            for lst in (self._keys, self._nsh, self._let, self._raw, self._log1p):
                del lst[mark:]
            raise
        self._ptr.append(len(self._keys))

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(base_ptr, h32, letters, values)`` of every record added, for ``assemble_for``."""
        off = np.zeros(len(self._keys) + 1, dtype=np.int64)
        np.cumsum([len(k) for k in self._keys], out=off[1:])
        data = np.frombuffer(b"".join(self._keys) or b"\0", dtype=np.uint8)
        return _encode(
            np.array(self._ptr, dtype=np.int64),
            data,
            off,
            np.array(self._nsh, dtype=np.int64),
            np.array(self._let, dtype=np.uint8),
            np.array(self._raw, dtype=np.float64),
            np.array(self._log1p, dtype=np.bool_),
            self.spec.hash_rules()[RULE_DIGITS],
        )
