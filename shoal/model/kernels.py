"""Compiled learning and prediction loops over a ``Batch``'s CSR arrays.

Learning is online: each example is predicted with the current weights (that prediction is its
progressive-validation loss), then every feature of it is updated. A batch is therefore
learned exactly as its rows one by one would be.

``stats`` accumulates, per call: [loss sum, weight sum, examples learned, holdout loss sum,
holdout weight sum, holdout examples, unlabeled rows skipped]. ``counters`` is the model's
persistent state: [t = sum of importance weights learned, examples learned, and the normalized
optimizer's S and T (``normalized.NORM_SUM``, ``normalized.NORM_WEIGHT``)].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from shoal.model.losses import MULTICLASS, binary_label, loss_and_grad, softmax_inplace
from shoal.model.normalized import normalized_update
from shoal.model.optimizers import NORMALIZED, SGD, update_example

# indices into ``stats``
LOSS_SUM, WEIGHT_SUM, LEARNED, HO_LOSS_SUM, HO_WEIGHT_SUM, HO_COUNT, UNLABELED = range(7)
N_STATS = 7
# indices into ``counters``
T, EXAMPLES = range(2)
N_COUNTERS = 4
# The largest |gradient x feature value| an update takes. A larger one (or NaN) means the
# learning diverged or a value is absurdly large, and it heads for float32's limit (3.4e38):
# AdaGrad and FTRL add up its square (1e30 at this bound), and an infinity there would leave a
# model that cannot be saved or served.
MAX_STEP = 1e15


@njit(inline="always", cache=True)
def _held_out(
    indices: np.ndarray, values: np.ndarray, a: int, b: int, y: float, period: int
) -> bool:
    """Deterministic holdout: a hash of the row's content, so the same rows are held out in every
    pass, on every shard, and when training continues from a saved model."""
    if period <= 0:
        return False
    h = np.uint64(1469598103934665603)
    for k in range(a, b):
        h = (h ^ np.uint64(indices[k])) * np.uint64(1099511628211)
        h = (h ^ np.uint64(np.int64(values[k] * 1024.0))) * np.uint64(1099511628211)
    h = (h ^ np.uint64(np.int64(y * 1024.0))) * np.uint64(1099511628211)
    h ^= h >> np.uint64(29)
    return (h % np.uint64(period)) == np.uint64(0)


@njit(inline="always", cache=True)
def _too_steep(values: np.ndarray, a: int, b: int, g: float) -> bool:
    """Whether some ``g * x`` of the example exceeds ``MAX_STEP`` or is not a number."""
    for k in range(a, b):  # noqa: SIM110 -- a loop compiles; numba has no any() of a generator
        if not abs(g * values[k]) <= MAX_STEP:
            return True
    return False


@njit(inline="always", cache=True)
def _account(held, iw, loss, opt_id, lr, power_t, counters, stats):
    """Count an example's progressive loss and advance the counters; return SGD's step for it
    (0 for the adaptive optimizers), or -1 if the example is held out (scored, not learned)."""
    if held:
        stats[HO_LOSS_SUM] += iw * loss
        stats[HO_WEIGHT_SUM] += iw
        stats[HO_COUNT] += 1
        return -1.0
    stats[LOSS_SUM] += iw * loss
    stats[WEIGHT_SUM] += iw
    stats[LEARNED] += 1
    eta = 0.0
    if opt_id == SGD:
        eta = lr / (1.0 + counters[T]) ** power_t
    counters[T] += iw
    counters[EXAMPLES] += 1
    return eta


@njit(cache=True, nogil=True)
def learn_binary(
    indptr,
    indices,
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
    preds,
):
    """Learn the rows of a batch in order (binary and regression losses).

    ``initial`` (length 0 or n) holds each row's initial prediction, added to its margin.
    ``preds`` (length 0 or n) receives each row's margin before its update. Held-out rows are
    scored with ``w_holdout`` when it is not empty (a frozen model: the loss of the last pass's
    model), else with ``w``. Returns -1, or the first row whose update would be too steep
    (``MAX_STEP``): it and the rows after it are not learned.
    """
    keep = len(preds) > 0
    has_initial = len(initial) > 0
    for i in range(len(labels)):
        a = indptr[i]
        b = indptr[i + 1]
        p0 = initial[i] if has_initial else 0.0
        p = p0
        for k in range(a, b):
            p += w[indices[k]] * values[k]
        if keep:
            preds[i] = p
        y0 = labels[i]
        if math.isnan(y0):
            stats[UNLABELED] += 1
            continue
        y = binary_label(loss_id, y0)
        iw = float(weights[i])
        held = holdout_period > 0 and _held_out(indices, values, a, b, y0, holdout_period)
        if held and len(w_holdout) > 0:
            p = p0
            for k in range(a, b):
                p += w_holdout[indices[k]] * values[k]
        loss, g = loss_and_grad(loss_id, p, y)
        if _too_steep(values, a, b, g * iw):
            return i
        eta = _account(held, iw, loss, opt_id, lr, power_t, counters, stats)
        if eta < 0.0:
            continue  # held out
        if opt_id == NORMALIZED:
            normalized_update(w, s1, s2, counters, indices, values, a, b, 1, 0, loss_id, p, y, g,
                              iw, lr, power_t, l1, l2)  # fmt: skip
            continue
        g *= iw
        if g != 0.0:
            update_example(opt_id, w, s1, s2, indices, values, a, b, 1, 0, g, eta, lr, l1, l2, beta)
    return -1


@njit(cache=True, nogil=True)
def learn_multiclass(
    indptr,
    indices,
    values,
    labels,
    weights,
    w,
    s1,
    s2,
    n_classes,
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
    preds,
):
    """Learn the rows of a batch in order with the softmax loss over ``n_classes``.

    Weights are laid out feature-major: class c of slot j is ``w[j * n_classes + c]``. Labels are
    classes 1..K (Vowpal Wabbit's convention), checked by the caller. ``preds`` (0 or n rows)
    receives each row's margins before its update. Returns as ``learn_binary`` does.
    """
    K = n_classes
    keep = preds.shape[0] > 0
    p = np.empty(K, dtype=np.float64)
    for i in range(len(labels)):
        a = indptr[i]
        b = indptr[i + 1]
        p[:] = 0.0
        for k in range(a, b):
            base = np.int64(indices[k]) * K
            v = values[k]
            for c in range(K):
                p[c] += w[base + c] * v
        if keep:
            preds[i, :] = p
        y0 = labels[i]
        if math.isnan(y0):
            stats[UNLABELED] += 1
            continue
        y = int(y0) - 1
        iw = float(weights[i])
        held = holdout_period > 0 and _held_out(indices, values, a, b, y0, holdout_period)
        if held and len(w_holdout) > 0:
            p[:] = 0.0
            for k in range(a, b):
                base = np.int64(indices[k]) * K
                for c in range(K):
                    p[c] += w_holdout[base + c] * values[k]
        margin_y = p[y]
        loss = softmax_inplace(p) - margin_y  # p now holds the probabilities
        # each class's gradient p[c] - [c == y] lies in [-1, 1], or is NaN: check the largest
        if _too_steep(values, a, b, iw * (1.0 if math.isfinite(loss) else math.nan)):
            return i
        eta = _account(held, iw, loss, opt_id, lr, power_t, counters, stats)
        if eta < 0.0:
            continue  # held out
        p[y] -= 1.0  # gradient of the softmax loss w.r.t. the margins
        for c in range(K):
            if opt_id == NORMALIZED:
                normalized_update(w, s1, s2, counters, indices, values, a, b, K, c, MULTICLASS,
                                  0.0, 0.0, p[c], iw, lr, power_t, l1, l2)  # fmt: skip
                continue
            g = p[c] * iw
            if g != 0.0:
                update_example(
                    opt_id, w, s1, s2, indices, values, a, b, K, c, g, eta, lr, l1, l2, beta
                )
    return -1


@njit(cache=True, nogil=True)
def held_out_rows(indptr, indices, values, labels, period, out):
    """``out[i]``: whether labeled row i is one that learning with ``period`` holds out."""
    for i in range(len(labels)):
        y0 = labels[i]
        out[i] = not math.isnan(y0) and _held_out(
            indices, values, indptr[i], indptr[i + 1], y0, period
        )


@njit(cache=True, nogil=True)
def predict_margins(indptr, indices, values, initial, w, n_outputs, out):
    """Margins ``w . x`` of every row, plus its initial prediction (``initial``: length 0 or
    n, one output): ``out`` is (n, n_outputs)."""
    K = n_outputs
    has_initial = len(initial) > 0
    for i in range(len(indptr) - 1):
        for c in range(K):
            out[i, c] = initial[i] if has_initial else 0.0
        for k in range(indptr[i], indptr[i + 1]):
            base = np.int64(indices[k]) * K
            v = values[k]
            for c in range(K):
                out[i, c] += w[base + c] * v


__all__ = ["MULTICLASS", "N_COUNTERS", "N_STATS", "learn_binary", "learn_multiclass"]
