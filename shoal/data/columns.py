"""From columns to hashed rows: the compiled pieces every table format shares.

Delimited text, Parquet/Arrow tables, DataFrames and dicts all end here: each row's base
features arrive as 32-bit hashes with their namespace letters and values, and ``assemble``
adds the spec's interactions and the constant feature exactly as the VW parser does. Column
names are hashed once per column; a categorical value is hashed as ``NAME=value`` in the
column's namespace, the way the same record in VW text would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from shoal.data.textparse import _grow, _interactions
from shoal.features.hashing import CONSTANT_HASH, feature_hash, murmur3_32, namespace_hash
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec

NUM, CAT, LABEL, WEIGHT, TAG, IGNORE = range(6)
_ROLE_IDS = {"num": NUM, "cat": CAT, "label": LABEL, "weight": WEIGHT, "tag": TAG, "ignore": IGNORE}


@dataclass(frozen=True)
class ColumnPlan:
    """A schema compiled for the kernels: one entry per column, in the schema's order.

    A feature column whose namespace letter the spec ignores gets the role ``IGNORE``.
    """

    roles: np.ndarray  # int64: NUM, CAT, ...
    hashes: np.ndarray  # int64: a numeric column's feature hash; a categorical one's ns hash
    letters: np.ndarray  # uint8: namespace letter
    log1p: np.ndarray  # bool
    fills: np.ndarray  # float64, NaN: no fill
    prefix: np.ndarray  # uint8: "NAME=" of every column, concatenated
    prefix_off: np.ndarray  # int64 (ncol + 1,)

    @classmethod
    def build(cls, schema: ColumnSchema, spec: FeatureSpec) -> ColumnPlan:
        cols = schema.columns
        prefixes = [f"{c.name}=".encode() for c in cols]
        off = np.zeros(len(cols) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in prefixes], out=off[1:])
        hashes = [
            feature_hash(c.name, c.namespace, spec.seed, spec.hash_version)
            if c.role == "num"
            else namespace_hash(c.namespace, spec.seed, spec.hash_version)
            for c in cols
        ]
        # a namespace's letter is the first byte of its name (VW's rule), 32 for the default
        letters = [c.namespace.encode()[0] if c.namespace else 32 for c in cols]
        ignored = set(spec.ignore.encode())
        roles = [
            IGNORE if c.is_feature and letters[i] in ignored else _ROLE_IDS[c.role]
            for i, c in enumerate(cols)
        ]
        return cls(
            roles=np.array(roles, dtype=np.int64),
            hashes=np.array(hashes, dtype=np.int64),
            letters=np.array(letters, dtype=np.uint8),
            log1p=np.array([c.transform == "log1p" for c in cols], dtype=np.bool_),
            fills=np.array([np.nan if c.fill is None else c.fill for c in cols], np.float64),
            prefix=np.frombuffer(b"".join(prefixes) or b"\0", dtype=np.uint8).copy(),
            prefix_off=off,
        )


@njit(inline="always", cache=True)
def transform(v: float, log1p: bool) -> float:
    """The numeric transform of a column: sign(x) * log(1 + |x|) for log1p."""
    if log1p:
        return np.log1p(v) if v >= 0.0 else -np.log1p(-v)
    return v


@njit(inline="always", cache=True, nogil=True)
def category_hash(prefix, p0, p1, data, d0, d1, ns_hash, scratch):
    """Hash of ``NAME=value``: the column's prefix ``prefix[p0:p1]`` then ``data[d0:d1]``."""
    n = (p1 - p0) + (d1 - d0)
    if len(scratch) < n:
        scratch = np.empty(2 * n, dtype=np.uint8)
    k = 0
    for i in range(p0, p1):
        scratch[k] = prefix[i]
        k += 1
    for i in range(d0, d1):
        scratch[k] = data[i]
        k += 1
    return murmur3_32(scratch, 0, n, ns_hash), scratch


@njit(cache=True, nogil=True)
def assemble(base_ptr, h32, letters, vals, mask, constant, inter_off, inter_ns, self_pairs, codes):
    """Final CSR rows from base features: masked indices (plus each namespace letter's field
    code, ``FeatureSpec.field_codes``), interactions, the constant."""
    n = len(base_ptr) - 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    cap = len(h32) + (n if constant else 0) + 16
    indices = np.empty(cap, dtype=np.uint32)
    values = np.empty(cap, dtype=np.float32)
    has_inter = len(inter_off) > 1
    nnz = 0
    for r in range(n):
        a, b = base_ptr[r], base_ptr[r + 1]
        nb = b - a
        need = nnz + nb + 1
        if need > len(indices):
            indices = _grow(indices, need)
            values = _grow(values, need)
        for k in range(a, b):
            indices[nnz] = (h32[k] & mask) | codes[letters[k]]
            values[nnz] = vals[k]
            nnz += 1
        if has_inter:
            rh, rn, rv = h32[a:b], letters[a:b], vals[a:b].astype(np.float64)
            extra = _interactions(
                rh, rn, rv, nb, inter_off, inter_ns, mask, indices, values, 0, False, self_pairs
            )
            indices = _grow(indices, nnz + extra + 1)
            values = _grow(values, nnz + extra + 1)
            _interactions(
                rh, rn, rv, nb, inter_off, inter_ns, mask, indices, values, nnz, True, self_pairs
            )
            nnz += extra
        if constant:
            indices[nnz] = (CONSTANT_HASH & mask) | codes[256]
            values[nnz] = 1.0
            nnz += 1
        indptr[r + 1] = nnz
    return indptr, indices[:nnz], values[:nnz]


def assemble_for(spec: FeatureSpec, base_ptr, h32, letters, vals):
    """``assemble`` with the spec's mask, constant and interactions."""
    off, ns = spec.interaction_arrays()
    return assemble(
        base_ptr, h32, letters, vals, spec.mask, spec.constant, off, ns, spec.self_pairs,
        spec.field_codes(),
    )  # fmt: skip
