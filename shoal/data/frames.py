"""Batches from in-memory data: scipy matrices, numpy arrays, Arrow tables, DataFrames, dicts.

Every form hashes as the same records written in VW text would:

- a matrix's column ``j`` is the feature named ``str(j)`` in the default namespace -- what
  svmlight's ``j:value`` is;
- an Arrow table or pandas DataFrame follows the spec's column schema, or one inferred from
  its column types (``arrow.infer_schema``), exactly as the same rows in a Parquet file;
- a dict is a record in River's style, ``{"name": value}`` or ``{"ns": {"name": value}}``
  (``records.RecordEncoder``), as the same record in JSON lines.

pyarrow (and pandas) are imported only when a table is converted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from shoal.data.batch import Batch
from shoal.data.columns import assemble_for
from shoal.data.records import BadRecord, RecordEncoder
from shoal.errors import ConfigError, DataError
from shoal.features.hashing import M32, namespace_hash
from shoal.features.spec import FeatureSpec


def _numbers(values: Any, what: str, dtype: Any = np.float64) -> np.ndarray:
    """``values`` as a flat array of ``dtype`` (None: NaN, a missing label); text such as "1"
    or "yes" is refused rather than parsed."""
    raw = np.asarray(values).ravel()
    if raw.dtype.kind == "O":  # None among numbers (JSON's null)
        items = [math.nan if v is None else v for v in raw.tolist()]
        if all(isinstance(v, int | float | np.number) for v in items):
            return np.asarray(items, dtype=dtype)
    elif raw.dtype.kind in "biuf":
        return raw.astype(dtype)
    bad = next(v for v in raw.tolist() if not isinstance(v, int | float | np.number | None))
    raise ConfigError(what, f"must be numbers, got {bad!r}")


def _rows_meta(n: int, labels: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.full(n, np.nan) if labels is None else _numbers(labels, "labels")
    w = np.ones(n, np.float32) if weights is None else _numbers(weights, "weights", np.float32)
    if len(y) != n:
        raise ConfigError("labels", f"{len(y)} labels for {n} rows")
    if len(w) != n:
        raise ConfigError("weights", f"{len(w)} weights for {n} rows")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError("weights", "weights must be finite and non-negative")
    return y, w


def _no_tags(n: int) -> dict[str, np.ndarray]:
    return {"tag_offsets": np.zeros(n + 1, dtype=np.int64), "tag_bytes": np.zeros(0, np.uint8)}


def _untagged(spec: FeatureSpec, base: tuple, y: np.ndarray, w: np.ndarray, source: str) -> Batch:
    """The batch of rows given as base features (see ``columns.assemble``), without tags."""
    indptr, indices, values = assemble_for(spec, *base)
    n = len(y)
    return Batch(
        indptr=indptr,
        indices=indices,
        values=values,
        labels=y,
        weights=w,
        lines=np.arange(1, n + 1, dtype=np.int64),
        source=source,
        **_no_tags(n),
    )


def column_hashes(
    n_columns: int, spec: FeatureSpec, namespaces: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit hash and namespace letter of each of a matrix's columns: column ``j`` is the
    feature named ``str(j)`` of namespace ``namespaces[j]`` (default: every column in the
    default namespace, a space), which hashes, by the all-digit rule, to ``j`` plus the
    namespace's hash -- what ``|u j:value`` in VW text hashes to.

    >>> h, letters = column_hashes(3, FeatureSpec(), "uu ")
    >>> int(h[1] - h[0]), int(h[2]), letters.tolist()
    (1, 2, [117, 117, 32])
    """
    if namespaces is None:
        namespaces = " " * n_columns
    if len(namespaces) != n_columns or not namespaces.isascii():
        raise ConfigError(
            "namespaces", f"needs one ASCII letter per column ({n_columns}), got {namespaces!r}"
        )
    letters = np.frombuffer(namespaces.encode(), dtype=np.uint8).copy()
    ns_hash = np.zeros(256, dtype=np.int64)  # by letter; the default namespace's is a space's
    for ch in set(namespaces):
        ns_hash[ord(ch)] = namespace_hash("" if ch == " " else ch, spec.seed, spec.hash_version)
    return (np.arange(n_columns, dtype=np.int64) + ns_hash[letters]) & M32, letters


def batch_from_csr(
    matrix: Any,
    spec: FeatureSpec,
    labels: Any = None,
    weights: Any = None,
    namespaces: str | None = None,
) -> Batch:
    """A batch from a scipy sparse matrix (any format; converted to CSR) or a dense array,
    with each column's namespace from ``namespaces`` (``column_hashes``).

    Needs scipy (``pip install 'shoal[scipy]'``).
    """
    try:
        import scipy.sparse as sp
    except ImportError:
        raise ConfigError("X", "matrices need scipy: pip install 'shoal[scipy]'") from None

    m = sp.csr_matrix(matrix, dtype=np.float64)
    m.sum_duplicates()
    m.eliminate_zeros()
    if m.data.size and not np.isfinite(m.data).all():
        raise ConfigError("X", "the matrix holds NaN or infinite values")
    n = m.shape[0]
    y, w = _rows_meta(n, labels, weights)
    h32, letters = column_hashes(m.shape[1], spec, namespaces)
    base = (
        m.indptr.astype(np.int64),
        h32[m.indices],
        letters[m.indices],
        m.data.astype(np.float32),
    )
    return _untagged(spec, base, y, w, "<matrix>")


def batch_from_dicts(
    records: Iterable[Mapping[str, Any]], spec: FeatureSpec, labels: Any = None, weights: Any = None
) -> Batch:
    """A batch from feature dicts (River's ``x``): ``{"name": value}`` or ``{"ns": {...}}``.

    A bad value raises ``DataError`` naming the record (1-based) of ``<records>``.

    >>> b = batch_from_dicts([{"x": 2.0, "city": "Paris"}, {"u": {"id": 7}}], FeatureSpec(bits=10))
    >>> b.indptr.tolist(), b.values.tolist()
    ([0, 3, 5], [2.0, 1.0, 1.0, 7.0, 1.0])
    """
    enc = RecordEncoder(spec)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ConfigError("records", f"record {i + 1} is a {type(record).__name__}, not a dict")
        try:
            enc.add(record)
        except BadRecord as exc:
            raise DataError("<records>", i + 1, str(exc)) from None
    n = len(enc)
    y, w = _rows_meta(n, labels, weights)
    return _untagged(spec, enc.build(), y, w, "<records>")


def _given(values: Any, n: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    out = _numbers(values, what)
    if len(out) != n:
        raise ConfigError(what, f"{len(out)} {what} for {n} rows")
    if what == "weights" and not (np.isfinite(out).all() and (out >= 0).all()):
        raise ConfigError("weights", "weights must be finite and non-negative")
    return out


def batch_from_arrow(
    data: Any, spec: FeatureSpec, labels: Any = None, weights: Any = None
) -> Batch:
    """One batch from a pyarrow Table or RecordBatch, under the spec's schema (or inferred).

    ``labels``/``weights`` (if given) replace the table's label/weight columns. A bad value
    raises ``DataError`` naming its row (1-based) of ``<table>``.

    >>> import pyarrow as pa
    >>> t = pa.table({"label": [1, -1], "x": [0.5, None], "city": ["Paris", "Oslo"]})
    >>> b = batch_from_arrow(t, FeatureSpec(bits=10))
    >>> b.labels.tolist(), b.indptr.tolist()
    ([1.0, -1.0], [0, 3, 5])
    """
    import pyarrow as pa

    from shoal.data.arrow import TablePlan

    if isinstance(data, pa.Table):
        arrays = [
            pa.concat_arrays(c.chunks) if c.num_chunks else pa.array([], type=c.type)
            for c in data.columns
        ]
        data = pa.RecordBatch.from_arrays(arrays, schema=data.schema)
    if not isinstance(data, pa.RecordBatch):
        raise ConfigError("data", f"expected a pyarrow Table or RecordBatch, not {type(data)}")
    plan = TablePlan.build(spec, data.schema, "<table>")
    y = _given(labels, data.num_rows, "labels")
    w = _given(weights, data.num_rows, "weights")
    return plan.convert(data, "<table>", 1, False, y, w)[0]


def batch_from_pandas(df: Any, spec: FeatureSpec, labels: Any = None, weights: Any = None) -> Batch:
    """One batch from a pandas DataFrame, through ``pyarrow.Table.from_pandas`` (index dropped).

    Column types map as Arrow maps them: numbers and booleans numeric, strings and
    ``category`` columns categorical (``arrow.infer_schema``); NaN and None are missing.
    """
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ConfigError("data", f"cannot convert the DataFrame to Arrow: {exc}") from None
    return batch_from_arrow(table, spec, labels, weights)


def batch_from_frame(
    data: Any, spec: FeatureSpec, labels: Any = None, weights: Any = None
) -> Batch:
    """``batch_from_pandas`` for a DataFrame, ``batch_from_arrow`` for an Arrow table."""
    if type(data).__module__.split(".")[0] == "pandas":
        return batch_from_pandas(data, spec, labels, weights)
    return batch_from_arrow(data, spec, labels, weights)
