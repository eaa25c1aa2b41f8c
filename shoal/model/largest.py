"""A model's largest numbers, as ``shoal inspect`` lists them and ``shoal eval --report`` draws
them: its largest linear weights and, for an FM or FFM, the slots with the largest latent
vectors.

The weights are the linear ones (``Model.linear_weights``), one per slot and output: an FM's
factors share its weight array but are no feature's weight. A slot's factors are ranked by the
Euclidean norm of its latent vectors (an FFM's: of its vectors for every field together). The
interaction of features i and j is ``<v_i, v_j> x_i x_j``, at most ``|v_i| |v_j| |x_i x_j|``
(Cauchy-Schwarz), so a feature of small norm pairs weakly with every other, and the largest
norms are the features that can take part in the strongest pairs. Every vector starts near
``start_norm``: a slot that no feature reached keeps about that.

>>> from shoal.features.spec import FeatureSpec
>>> from shoal.model.config import LearnerConfig
>>> m = Model(FeatureSpec(bits=4), LearnerConfig(model="fm", rank=2))
>>> m.linear_weights[[3, 5]] = [0.5, -2.0]
>>> [(w.index, w.value) for w in largest_weights(m, 5)]
[(5, -2.0), (3, 0.5)]
>>> m.weights.reshape(16, m.width)[7, 1:] = [3.0, 4.0]  # slot 7's vector
>>> largest_vectors(m, 1)
[Vectors(index=7, norm=5.0, by_field=(5.0,))]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shoal.model.factors import field_count
from shoal.model.model import Model

_CHUNK = 1 << 16  # slots whose factors are squared at a time: memory stays small


@dataclass(frozen=True)
class Weight:
    """A linear weight: its hashed slot, output (class 1..K; 1 with one output) and value."""

    index: int
    output: int
    value: float


@dataclass(frozen=True)
class Vectors:
    """A slot's latent vectors: their norm, and each field's vector's norm (an FFM's, in the
    order of ``spec.fields``; one for an FM)."""

    index: int
    norm: float
    by_field: tuple[float, ...]


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores, largest first, ties in index order."""
    n = min(max(0, n), len(scores))
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    cut = np.partition(scores, len(scores) - n)[len(scores) - n]
    picked = np.flatnonzero(scores >= cut)
    return picked[np.lexsort((picked, -scores[picked]))][:n]


def largest_weights(model: Model, n: int) -> list[Weight]:
    """The ``n`` linear weights largest in absolute value, zeros left out."""
    k = model.config.outputs
    flat = model.linear_weights.reshape(-1)  # slot-major: slot i // k, output i % k
    top = _top(np.abs(flat), n)
    return [Weight(int(i // k), int(i % k) + 1, float(flat[i])) for i in top if flat[i] != 0]


def largest_vectors(model: Model, n: int) -> list[Vectors]:
    """The ``n`` slots whose latent vectors have the largest norm (none for a linear model)."""
    if not model.config.factorized:
        return []
    size, fields, rank = model.spec.size, field_count(model.spec, model.config), model.config.rank
    v = model.weights.reshape(size, model.width)[:, 1:]
    sq = np.empty(size, dtype=np.float64)
    for a in range(0, size, _CHUNK):
        block = v[a : a + _CHUNK].astype(np.float64)
        sq[a : a + _CHUNK] = np.einsum("ij,ij->i", block, block)
    out = []
    for i in _top(sq, n):
        per_field = np.linalg.norm(v[i].astype(np.float64).reshape(fields, rank), axis=1)
        out.append(Vectors(int(i), math.sqrt(sq[i]), tuple(per_field.tolist())))
    return out


def start_norm(model: Model) -> float:
    """About the norm a slot's latent vectors start at: ``init_scale * sqrt(fields * rank)``
    (each number is drawn from N(0, init_scale**2))."""
    numbers = field_count(model.spec, model.config) * model.config.rank
    return model.config.init_scale * math.sqrt(numbers)
