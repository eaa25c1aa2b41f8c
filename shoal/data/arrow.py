"""Arrow record batches and tables (and pandas DataFrames through them) into hashed batches.

Columns follow the spec's ``ColumnSchema``, looked up by name (columns the schema does not list
are not read; a missing label, weight or tag column leaves rows unlabeled, of weight 1, untagged).
Without a schema one is inferred from the Arrow schema (``infer_schema``): a column named
``label``, ``weight`` or ``tag`` has that role; integer, floating, decimal and boolean columns
are numeric; string, binary and dictionary (pandas ``category``) columns are categorical;
columns of any other type (dates, lists, structs) are ignored -- give a schema to use them. All
inferred columns are in the default namespace, so a table hashes as the same records in VW
text. Types decide the inference, so a column must keep its type between training and serving
(pass ``--schema`` to pin it down).

Values: null and NaN are missing (a numeric column with ``fill`` takes its fill), as is the
empty string; a numeric column may also hold numbers as text (parsed like CSV fields); a
categorical column hashes ``NAME=value`` with its text -- an integer column declared ``cat`` is
its decimal text, a boolean ``true``/``false`` (Arrow's cast to string). Infinite numbers and
text that is not a number make the row a bad record, as in every reader.

Each column is converted whole: Arrow casts numbers to float64, a compiled kernel hashes string
columns straight from Arrow's offsets and data buffers (a dictionary column hashes its
dictionary once), and one compiled pass gathers each row's base features in schema order --
fill, ``log1p``, zeros dropped -- before ``assemble_for`` adds the interactions and the constant.
No Python runs per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from shoal.data.batch import Batch
from shoal.data.blocks import SKIP_HINT
from shoal.data.columns import CAT, NUM, ColumnPlan, assemble_for, category_hash, transform
from shoal.data.textparse import _F32_LIMIT, parse_float
from shoal.errors import ConfigError, DataError
from shoal.features.schema import Column, ColumnSchema
from shoal.features.spec import FeatureSpec


def infer_schema(schema: pa.Schema, source: str = "<table>") -> ColumnSchema:
    """A column schema from an Arrow schema (see the module docstring).

    >>> s = pa.schema([("label", pa.int8()), ("x", pa.float32()), ("city", pa.string())])
    >>> [(c.name, c.role) for c in infer_schema(s).columns]
    [('label', 'label'), ('x', 'num'), ('city', 'cat')]
    """
    cols = []
    for f in schema:
        t = f.type
        if f.name in ("label", "weight", "tag"):
            role = f.name
        elif _is_number(t) and not pa.types.is_null(t):
            role = "num"
        elif _is_text(t) or pa.types.is_dictionary(t):
            role = "cat"
        else:
            continue
        cols.append(Column(name=f.name, role=role))
    if not any(c.is_feature for c in cols):
        raise ConfigError(
            "schema", f"{source}: no numeric or categorical column to learn from (give --schema)"
        )
    return ColumnSchema(columns=tuple(cols))


def _is_number(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        or pa.types.is_decimal(t) or pa.types.is_null(t)  # null: a column of None only
    )  # fmt: skip


def _is_text(t: pa.DataType) -> bool:
    view = getattr(pa.types, "is_string_view", lambda _: False)(t)
    return bool(
        pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
        or pa.types.is_large_binary(t) or view
    )  # fmt: skip


# -- columns to numpy ----------------------------------------------------------------------------


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=np.bool_)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _text(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, data, valid) of a string-like array: the raw Arrow buffers, no copy."""
    t = arr.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)):  # fmt: skip
        arr = pc.cast(arr, pa.large_string())
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data, _valid(arr)


@njit(cache=True, nogil=True)
def _hash_text(offsets, data, valid, prefix, ns_hash):
    """Hash of ``prefix + value`` per row; present is False for nulls and empty strings."""
    n = len(offsets) - 1
    out = np.zeros(n, dtype=np.int64)
    present = np.zeros(n, dtype=np.bool_)
    scratch = np.empty(256, dtype=np.uint8)
    for i in range(n):
        s, e = offsets[i], offsets[i + 1]
        if valid[i] and e > s:
            out[i], scratch = category_hash(prefix, 0, len(prefix), data, s, e, ns_hash, scratch)
            present[i] = True
    return out, present


@njit(cache=True, nogil=True)
def _parse_text(offsets, data, valid):
    """Numbers written as text, parsed as CSV fields are: NaN if missing, bad if not a number."""
    n = len(offsets) - 1
    out = np.full(n, np.nan)
    bad = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        s, e = offsets[i], offsets[i + 1]
        if valid[i] and e > s:
            ok, v = parse_float(data, s, e)
            if ok:
                out[i] = v
            else:
                bad[i] = True
    return out, bad


@njit(cache=True, nogil=True)
def _take_text(offsets, data, valid):
    """Rebased offsets and bytes of the strings (nulls empty): a Batch's tags."""
    n = len(offsets) - 1
    out_off = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        out_off[i + 1] = out_off[i] + (offsets[i + 1] - offsets[i] if valid[i] else 0)
    out = np.empty(out_off[n], dtype=np.uint8)
    for i in range(n):
        if valid[i]:
            out[out_off[i] : out_off[i + 1]] = data[offsets[i] : offsets[i + 1]]
    return out_off, out


def numbers(arr: pa.Array, name: str, limit: float = _F32_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, NaN where missing; bad-row mask) of a column read as numbers.

    A row is bad if its text is not a number or its magnitude reaches ``limit`` (infinity, or
    what a float32 feature value cannot hold).
    """
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if _is_text(t):
        v, bad = _parse_text(*_text(arr))
        return v, bad | _too_big(v, limit)
    if not _is_number(t):
        raise ConfigError("schema", f"column {name!r} of type {t} cannot be read as numbers")
    v = pc.fill_null(pc.cast(arr, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    v = np.asarray(v, dtype=np.float64)
    return v, _too_big(v, limit)


def _too_big(v: np.ndarray, limit: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(v) >= limit  # False for NaN (missing)


def categories(arr: pa.Array, prefix: np.ndarray, ns_hash: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of ``NAME=value``, present mask) of a categorical column."""
    if pa.types.is_dictionary(arr.type):
        dh, dp = categories(arr.dictionary, prefix, ns_hash)
        idx = pc.fill_null(arr.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return dh[idx], dp[idx] & _valid(arr)
    try:
        offsets, data, valid = _text(arr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ConfigError("schema", f"a categorical column of type {arr.type}: {exc}") from None
    return _hash_text(offsets, data, valid, prefix, ns_hash)


@njit(cache=True, nogil=True)
def _gather(H, V, letters, log1p, fills):
    """Each row's base features, column by column: fill, transform, drop zeros."""
    k, n = V.shape
    base_ptr = np.zeros(n + 1, dtype=np.int64)
    h32 = np.empty(k * n, dtype=np.int64)
    lets = np.empty(k * n, dtype=np.uint8)
    vals = np.empty(k * n, dtype=np.float32)
    nb = 0
    for r in range(n):
        for c in range(k):
            v = V[c, r]
            if np.isnan(v):
                v = fills[c]
                if np.isnan(v):
                    continue
            v32 = np.float32(transform(v, log1p[c]))
            if v32 != 0.0:
                h32[nb] = H[c, r]
                lets[nb] = letters[c]
                vals[nb] = v32
                nb += 1
        base_ptr[r + 1] = nb
    return base_ptr, h32[:nb], lets[:nb], vals[:nb]


# -- a schema resolved against a table ---------------------------------------------------------

Check = tuple[np.ndarray, Callable[[int], str]]  # bad-row mask, and what is wrong with row r


@dataclass(frozen=True)
class TablePlan:
    """The spec's schema (or the inferred one) resolved against one Arrow schema."""

    spec: FeatureSpec
    schema: ColumnSchema
    plan: ColumnPlan
    features: np.ndarray  # schema positions of the num/cat columns, in schema order
    roles: dict[str, str]  # label/weight/tag -> column name, where the table has it

    @classmethod
    def build(cls, spec: FeatureSpec, arrow_schema: pa.Schema, source: str) -> TablePlan:
        schema = spec.schema or infer_schema(arrow_schema, source)
        plan = ColumnPlan.build(schema, spec)
        names = set(arrow_schema.names)
        feats = np.flatnonzero((plan.roles == NUM) | (plan.roles == CAT))
        missing = [schema.columns[i].name for i in feats if schema.columns[i].name not in names]
        if missing:
            raise ConfigError(
                "schema",
                f"{source} has no column {', '.join(missing)} "
                f"(its columns: {', '.join(arrow_schema.names[:20])})",
            )
        roles: dict[str, str] = {
            c.role: c.name
            for c in schema.columns
            if c.role in ("label", "weight", "tag") and c.name in names
        }
        return cls(spec, schema, plan, feats, roles)

    @property
    def columns(self) -> list[str]:
        """The table columns to read."""
        return [self.schema.columns[i].name for i in self.features] + list(self.roles.values())

    def _features(self, rb: pa.RecordBatch, checks: list[Check]) -> tuple[np.ndarray, ...]:
        """(H, V): each feature column's 32-bit hashes and values (NaN: missing), a row each."""
        cp = self.plan
        n = rb.num_rows
        H = np.empty((len(self.features), n), dtype=np.int64)
        V = np.empty((len(self.features), n), dtype=np.float64)
        for j, i in enumerate(self.features):
            name = self.schema.columns[i].name
            arr = rb.column(name)
            if cp.roles[i] == NUM:
                V[j], bad = numbers(arr, name)
                H[j] = cp.hashes[i]
                checks.append((bad, _complaint(arr, f"column {name!r}: value", "a finite number")))
            else:
                prefix = cp.prefix[cp.prefix_off[i] : cp.prefix_off[i + 1]]
                H[j], present = categories(arr, prefix, int(cp.hashes[i]))
                V[j] = np.where(present, 1.0, np.nan)
        return H, V

    def _gather(self, H: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, ...]:
        cp, f = self.plan, self.features
        fills = np.where(cp.roles[f] == NUM, cp.fills[f], np.nan)  # CSV's rule: cat has no fill
        return _gather(H, V, cp.letters[f], cp.log1p[f], fills)

    def _meta(
        self, rb: pa.RecordBatch, labels: Any, weights: Any, checks: list[Check]
    ) -> tuple[np.ndarray, np.ndarray]:
        n = rb.num_rows
        y = np.full(n, np.nan) if labels is None else labels
        w = np.ones(n) if weights is None else weights
        if labels is None and "label" in self.roles:
            arr = rb.column(self.roles["label"])
            y, bad = numbers(arr, "label", np.inf)
            checks.append((bad, _complaint(arr, "label", "a number")))
        if weights is None and "weight" in self.roles:
            arr = rb.column(self.roles["weight"])
            w, bad = numbers(arr, "weight")
            w = np.where(np.isnan(w), 1.0, w)
            checks.append((bad | (w < 0), _complaint(arr, "weight", "a non-negative number")))
        return y, w

    def convert(
        self,
        rb: pa.RecordBatch,
        source: str,
        first_line: int,
        skip_bad: bool,
        labels: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> tuple[Batch, int, str]:
        """(batch, rows skipped, first problem) of a record batch whose row 0 is ``first_line``.

        ``labels``/``weights`` (if given) replace the table's columns. A bad row raises
        ``DataError``, or with ``skip_bad`` is dropped, counted and described.
        """
        n = rb.num_rows
        checks: list[Check] = []
        y, w = self._meta(rb, labels, weights, checks)
        H, V = self._features(rb, checks)
        bad_rows = np.zeros(n, dtype=np.bool_)
        for mask, _ in checks:
            bad_rows |= mask
        if bad_rows.any():
            r = int(np.argmax(bad_rows))
            problem = next(say(r) for mask, say in checks if mask[r])
            if not skip_bad:
                raise DataError(source, first_line + r, problem, SKIP_HINT)
            keep = ~bad_rows
            y_keep = None if labels is None else labels[keep]
            w_keep = None if weights is None else weights[keep]
            batch, _, _ = self.convert(rb.filter(pa.array(keep)), source, 0, True, y_keep, w_keep)
            batch = dataclasses.replace(batch, lines=first_line + np.flatnonzero(keep))
            return batch, int(bad_rows.sum()), f"line {first_line + r} of {source}: {problem}"
        indptr, indices, values = assemble_for(self.spec, *self._gather(H, V))
        if "tag" in self.roles:
            tag_off, tag_bytes = _take_text(*_text(rb.column(self.roles["tag"])))
        else:
            tag_off, tag_bytes = np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        batch = Batch(
            indptr=indptr,
            indices=indices,
            values=values,
            labels=np.asarray(y, dtype=np.float64),
            weights=np.asarray(w, dtype=np.float32),
            tag_offsets=tag_off,
            tag_bytes=tag_bytes,
            lines=np.arange(first_line, first_line + n, dtype=np.int64),
            source=source,
        )
        return batch, 0, ""


def _complaint(arr: pa.Array, what: str, expected: str) -> Callable[[int], str]:
    return lambda r: f"{what} {str(arr[r].as_py())[:60]!r} is not {expected}"
