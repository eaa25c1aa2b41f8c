"""Factorization machines (FM) and field-aware FMs (FFM): layout, start and compiled kernels.

An FM (Rendle, 2010) adds to the linear margin every pair of features' interaction through
latent vectors: ``sum_{i<j} <v_i, v_j> x_i x_j``. An FFM (Juan, Zhuang, Chin and Lin, 2016)
keeps one vector per feature and field and pairs feature i of field a with feature j of field b
through ``<v_{i,b}, v_{j,a}>``. Both are computed in O(k n F) per example (k = rank, n =
features, F = fields; an FM is an FFM of one field): with ``A[a, b] = sum_{i in a} v_{i,b} x_i``,

    pairs = sum_{a<b} <A[a,b], A[b,a]> + 1/2 sum_a (|A[a,a]|^2 - sum_{i in a} |v_{i,a}|^2 x_i^2)

and the gradient of the margin for ``v_{i,b}`` (i in field a) is ``x_i A[b,a]``, or ``x_i
(A[a,a] - v_{i,a} x_i)`` when b = a (the sum-of-squares identity).

**Layout.** Every hashed slot j owns ``width = 1 + F k`` numbers of the model's one flat weight
array: ``w[j * width]`` is its linear weight, ``w[j * width + 1 + b k + c]`` number c of its
vector for field b. The optimizer state has the same shape, so every layer that moves weights
(model files, merging, shared memory, replicas) moves factors unchanged. The linear part learns
with the model's optimizer; every factor learns with AdaGrad (``factor_rate / sqrt(G)``) whose
``G`` is kept in ``s1``, the state every adaptive optimizer already has (SGD gets one).

**Fields.** A batch carries its fields in its indices (``FeatureSpec.field_codes``): ``index >>
bits`` is the field of an FFM's feature, F meaning "none" (the constant, a namespace outside
every field): such features are linear only. In an FM every feature is in the one field but the
constant. ``split_indices`` turns a batch's indices into (slot, field) arrays for the kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from shoal.features.hashing import CONSTANT_HASH
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.kernels import MAX_STEP, UNLABELED, _account, _held_out, _too_steep
from shoal.model.losses import binary_label, loss_and_grad
from shoal.model.normalized import normalized_update
from shoal.model.optimizers import NORMALIZED, update_example

__all__ = [
    "field_count", "init_factors", "learn_factors", "predict_factors", "slot_width",
    "split_indices",
]  # fmt: skip


def field_count(spec: FeatureSpec, config: LearnerConfig) -> int:
    """F: the number of fields whose features have factors (1 for an FM, 0 for linear)."""
    if config.model == "ffm":
        return len(spec.fields)
    return 1 if config.model == "fm" else 0


def slot_width(spec: FeatureSpec, config: LearnerConfig) -> int:
    """Numbers per hashed slot: ``outputs`` for linear models, ``1 + F * rank`` with factors."""
    if not config.factorized:
        return config.outputs
    return 1 + field_count(spec, config) * config.rank


def init_factors(weights: np.ndarray, spec: FeatureSpec, config: LearnerConfig) -> None:
    """Draw every factor from N(0, init_scale**2), from the spec's seed: the same start in every
    process, so that workers' changes merge and a run is repeatable."""
    width = slot_width(spec, config)
    rng = np.random.default_rng(np.random.PCG64(spec.seed))
    draws = rng.standard_normal((spec.size, width - 1), dtype=np.float32)
    weights.reshape(spec.size, width)[:, 1:] = draws * np.float32(config.init_scale)


def split_indices(
    indices: np.ndarray, spec: FeatureSpec, config: LearnerConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(slots, fields) of a batch's indices: the hashed slot of each feature and its field
    (``field_count`` for none)."""
    if config.model == "ffm":
        return indices & np.uint32(spec.mask), (indices >> np.uint32(spec.bits)).astype(np.int32)
    fields = np.zeros(len(indices), dtype=np.int32)
    if spec.constant:
        fields[indices == np.uint32(CONSTANT_HASH & spec.mask)] = 1
    return indices, fields


@njit(inline="always", cache=True)
def _scratch(F, k):
    """The per-row sums ``_margin`` fills: A (F, F, k), sq (F,), present (F,)."""
    return (
        np.zeros((F, F, k), dtype=np.float64),
        np.zeros(F, dtype=np.float64),
        np.zeros(F, dtype=np.bool_),
    )


@njit(inline="always", cache=True)
def _margin(w, slots, fields, values, a, b, F, k, W, A, sq, present):
    """The FM/FFM margin of features ``a:b``; fills ``A`` (F, F, k), ``sq`` (F,) and
    ``present`` (F,) for the update."""
    A[:] = 0.0
    sq[:] = 0.0
    present[:] = False
    p = 0.0
    for t in range(a, b):
        base = np.int64(slots[t]) * W
        x = float(values[t])
        p += float(w[base]) * x
        f = fields[t]
        if f >= F:
            continue
        present[f] = True
        for g in range(F):
            off = base + 1 + g * k
            for c in range(k):
                A[f, g, c] += float(w[off + c]) * x
        off = base + 1 + f * k
        for c in range(k):
            v = float(w[off + c]) * x
            sq[f] += v * v
    for f in range(F):
        if not present[f]:
            continue
        s = 0.0
        for c in range(k):
            s += A[f, f, c] * A[f, f, c]
        p += 0.5 * (s - sq[f])
        for g in range(f + 1, F):
            if present[g]:
                for c in range(k):
                    p += A[f, g, c] * A[g, f, c]
    return p


@njit(inline="always", cache=True)
def _factors_too_steep(fields, values, a, b, F, k, A, sq, g):
    """Whether a factor's gradient ``g x_t (A[h, f] - [h = f] v x_t)`` could exceed
    ``MAX_STEP`` (its square, added to the float32 ``G``, would overflow it): bounded by ``|g|
    max|x| (max|A| + max sqrt(sq))``, which costs O(n + F^2 k), not an update's O(n F k)."""
    x_max = 0.0
    for t in range(a, b):
        if fields[t] < F:
            x_max = max(x_max, abs(float(values[t])))
    a_max = 0.0
    for f in range(F):
        a_max = max(a_max, math.sqrt(sq[f]))
        for h in range(F):
            for c in range(k):
                a_max = max(a_max, abs(A[f, h, c]))
    return not abs(g) * x_max * 2.0 * a_max <= MAX_STEP


@njit(inline="always", cache=True)
def _update_factors(w, s1, slots, fields, values, a, b, F, k, W, A, present, g, rate, l2f):
    """AdaGrad steps of every factor ``v_{i,h}`` of features ``a:b`` for a field h the row has
    (as libFM, a feature alone in its field still takes its L2 step), for the loss gradient ``g``
    (importance weight included); ``A`` holds the sums computed before any of them moved."""
    for t in range(a, b):
        f = fields[t]
        if f >= F:
            continue
        x = float(values[t])
        base = np.int64(slots[t]) * W + 1
        for h in range(F):
            if not present[h]:
                continue
            off = base + h * k
            for c in range(k):
                v = float(w[off + c])
                d = x * (A[f, f, c] - v * x) if h == f else x * A[h, f, c]
                gr = g * d + l2f * v
                acc = float(s1[off + c]) + gr * gr
                s1[off + c] = acc
                if acc > 0.0:
                    w[off + c] = v - rate * gr / math.sqrt(acc)


@njit(cache=True, nogil=True)
def learn_factors(
    indptr,
    slots,
    fields,
    values,
    labels,
    weights,
    initial,
    w,
    s1,
    s2,
    loss_id,
    opt_id,
    lr,
    power_t,
    l1,
    l2,
    beta,
    holdout_period,
    w_holdout,
    counters,
    stats,
    n_fields,
    rank,
    factor_rate,
    l2_factors,
):
    """Learn the rows of a batch in order, as ``kernels.learn_binary`` does, for an FM or FFM:
    the margin is the FM's, the linear part steps with the model's optimizer, the factors with
    AdaGrad. Holdout rows hash on the slots (the same rows as a linear model holds out).
    Returns -1, or the first row whose linear or factor step would be too steep (``MAX_STEP``):
    it and the rows after it are not learned."""
    F = n_fields
    k = rank
    W = 1 + F * k
    A, sq, present = _scratch(F, k)
    for i in range(len(labels)):
        a = indptr[i]
        b = indptr[i + 1]
        y0 = labels[i]
        if math.isnan(y0):
            stats[UNLABELED] += 1
            continue
        y = binary_label(loss_id, y0)
        iw = float(weights[i])
        held = holdout_period > 0 and _held_out(slots, values, a, b, y0, holdout_period)
        if held and len(w_holdout) > 0:
            p = _margin(w_holdout, slots, fields, values, a, b, F, k, W, A, sq, present)
        else:
            p = _margin(w, slots, fields, values, a, b, F, k, W, A, sq, present)
        if len(initial) > 0:
            p += initial[i]
        loss, g = loss_and_grad(loss_id, p, y)
        if _too_steep(values, a, b, g * iw) or _factors_too_steep(
            fields, values, a, b, F, k, A, sq, g * iw
        ):
            return i
        eta = _account(held, iw, loss, opt_id, lr, power_t, counters, stats)
        if eta < 0.0:
            continue  # held out
        if g * iw != 0.0 or l2_factors > 0.0:
            _update_factors(
                w, s1, slots, fields, values, a, b, F, k, W, A, present, g * iw, factor_rate,
                l2_factors,
            )  # fmt: skip
        if opt_id == NORMALIZED:
            normalized_update(w, s1, s2, counters, slots, values, a, b, W, 0, loss_id, p, y, g,
                              iw, lr, power_t, l1, l2)  # fmt: skip
        elif g != 0.0:
            update_example(
                opt_id, w, s1, s2, slots, values, a, b, W, 0, g * iw, eta, lr, l1, l2, beta
            )
    return -1


@njit(cache=True, nogil=True)
def predict_factors(indptr, slots, fields, values, initial, w, n_fields, rank, out):
    """FM/FFM margins of every row, plus its initial prediction, into ``out`` (n, 1)."""
    F = n_fields
    k = rank
    W = 1 + F * k
    A, sq, present = _scratch(F, k)
    for i in range(len(indptr) - 1):
        out[i, 0] = _margin(w, slots, fields, values, indptr[i], indptr[i + 1], F, k, W, A, sq,
                            present)  # fmt: skip
        if len(initial) > 0:
            out[i, 0] += initial[i]
