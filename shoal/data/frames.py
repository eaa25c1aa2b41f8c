"""Batches from in-memory data: scipy CSR matrices and numpy arrays (more forms to come).

Column j of a matrix is the feature named ``str(j)`` in the default namespace -- what svmlight's
``j:value`` is -- so a matrix and the same rows in svmlight or VW text hash alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.data.batch import Batch
from shoal.data.columns import assemble_for
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec


def _rows_meta(n: int, labels: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.full(n, np.nan) if labels is None else np.asarray(labels, dtype=np.float64).ravel()
    w = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, np.float32).ravel()
    if len(y) != n:
        raise ConfigError("labels", f"{len(y)} labels for {n} rows")
    if len(w) != n:
        raise ConfigError("weights", f"{len(w)} weights for {n} rows")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError("weights", "weights must be finite and non-negative")
    return y, w


def batch_from_csr(
    matrix: Any, spec: FeatureSpec, labels: Any = None, weights: Any = None
) -> Batch:
    """A batch from a scipy sparse matrix (any format; converted to CSR) or a dense array."""
    import scipy.sparse as sp

    m = sp.csr_matrix(matrix, dtype=np.float64)
    m.sum_duplicates()
    m.eliminate_zeros()
    if m.data.size and not np.isfinite(m.data).all():
        raise ConfigError("X", "the matrix holds NaN or infinite values")
    n = m.shape[0]
    y, w = _rows_meta(n, labels, weights)
    # the all-digit rule of feature hashing: name str(j) hashes to j + namespace hash (the seed)
    h32 = (m.indices.astype(np.int64) + spec.seed) & 0xFFFFFFFF
    letters = np.full(len(h32), 32, dtype=np.uint8)
    indptr, indices, values = assemble_for(
        spec, m.indptr.astype(np.int64), h32, letters, m.data.astype(np.float32)
    )
    return Batch(
        indptr=indptr,
        indices=indices,
        values=values,
        labels=y,
        weights=w,
        tag_offsets=np.zeros(n + 1, dtype=np.int64),
        tag_bytes=np.zeros(0, dtype=np.uint8),
        lines=np.arange(1, n + 1, dtype=np.int64),
        source="<matrix>",
    )
