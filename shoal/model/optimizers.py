"""Optimizer updates of one example's coordinates, compiled.

``w`` holds the weights and ``s1``/``s2`` the optimizer's state (AdaGrad: s1 = sum of squared
gradients; FTRL-Proximal: s1 = n, the sum of squared gradients, s2 = z; normalized: s1 = G, the
sum of weighted squared gradients, s2 = N, the feature's largest |value|). Keeping ``w`` current
for FTRL (its weights are a closed-form function of z and n) makes prediction a plain dot
product for every optimizer.

Each optimizer has its own loop over the example's features: choosing the optimizer once per
example instead of once per coordinate lets the compiler keep each loop tight (about 3x faster).
Coordinate j of output c is ``w[indices[k] * K + c]`` (K = 1 except for multiclass).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SGD = 0
ADAGRAD = 1
FTRL = 2
NORMALIZED = 3  # its update is ``normalized.normalized_update``: it needs the margin and label
OPTIMIZER_IDS = {"sgd": SGD, "adagrad": ADAGRAD, "ftrl": FTRL, "normalized": NORMALIZED}
STATE_TENSORS = {
    "sgd": (),
    "adagrad": ("sum_sq_grad",),
    "ftrl": ("ftrl_n", "ftrl_z"),
    "normalized": ("sum_sq_grad", "feature_scale"),
}


def state_tensors(optimizer: str, factorized: bool) -> tuple[str, ...]:
    """The state a model keeps: its optimizer's, and for FM/FFM a sum of squared gradients for
    the factors' AdaGrad steps (``s1``: every adaptive optimizer's first state already is one)."""
    names = STATE_TENSORS[optimizer]
    return ("sum_sq_grad",) if factorized and not names else names


@njit(inline="always", cache=True)
def _shrink(w: float, amount: float) -> float:
    """Soft thresholding: the proximal step of ``amount * |w|``."""
    if w > amount:
        return w - amount
    if w < -amount:
        return w + amount
    return 0.0


@njit(inline="always", cache=True)
def _sgd(w, indices, values, a, b, K, c, g, eta, l1, l2) -> None:
    for k in range(a, b):
        j = np.int64(indices[k]) * K + c
        wj = float(w[j])
        wj -= eta * (g * values[k] + l2 * wj)
        if l1 > 0.0:
            wj = _shrink(wj, eta * l1)
        w[j] = wj


@njit(inline="always", cache=True)
def _adagrad(w, s1, indices, values, a, b, K, c, g, lr, l1, l2) -> None:
    # Duchi, Hazan and Singer 2011: step lr / sqrt(sum of squared gradients), per coordinate.
    for k in range(a, b):
        j = np.int64(indices[k]) * K + c
        wj = float(w[j])
        gj = g * values[k] + l2 * wj
        acc = float(s1[j]) + gj * gj
        s1[j] = acc
        if acc > 0.0:
            eta = lr / math.sqrt(acc)
            wj -= eta * gj
            if l1 > 0.0:
                wj = _shrink(wj, eta * l1)
            w[j] = wj


@njit(inline="always", cache=True)
def _ftrl(w, s1, s2, indices, values, a, b, K, c, g, alpha, beta, l1, l2) -> None:
    # McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches", Algorithm 1.
    for k in range(a, b):
        j = np.int64(indices[k]) * K + c
        gj = g * values[k]
        n = float(s1[j])
        n_new = n + gj * gj
        sq = math.sqrt(n_new)
        z = float(s2[j]) + gj - (sq - math.sqrt(n)) / alpha * float(w[j])
        s1[j] = n_new
        s2[j] = z
        if abs(z) <= l1:
            w[j] = 0.0
        else:
            w[j] = -(z - math.copysign(l1, z)) / ((beta + sq) / alpha + l2)


@njit(inline="always", cache=True)
def update_example(opt_id, w, s1, s2, indices, values, a, b, K, c, g, eta, lr, l1, l2, beta):
    """Apply the loss gradient ``g`` (importance weight included) of output c of one example,
    whose features are ``indices/values[a:b]``. ``eta`` is SGD's step at this example; ``lr`` is
    AdaGrad's base rate and FTRL's alpha."""
    if opt_id == SGD:
        _sgd(w, indices, values, a, b, K, c, g, eta, l1, l2)
    elif opt_id == ADAGRAD:
        _adagrad(w, s1, indices, values, a, b, K, c, g, lr, l1, l2)
    else:
        _ftrl(w, s1, s2, indices, values, a, b, K, c, g, lr, beta, l1, l2)
