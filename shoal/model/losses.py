"""Losses as compiled scalar functions of the margin ``p = w . x`` and the label ``y``.

Binary losses take ``y`` in {-1, +1} (labels 0 and -1 both mean the negative class):

- logistic: ``log(1 + exp(-y p))``, derivative ``-y / (1 + exp(y p))``
- squared:  ``(p - y)**2 / 2``, derivative ``p - y`` (any real label)
- hinge:    ``max(0, 1 - y p)``, subgradient ``-y`` where ``y p < 1``, else 0

Multiclass is the softmax cross-entropy over K margins: ``logsumexp(p) - p[y]``, with
gradient ``softmax(p) - onehot(y)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LOGISTIC = 0
SQUARED = 1
HINGE = 2
MULTICLASS = 3
LOSS_IDS = {"logistic": LOGISTIC, "squared": SQUARED, "hinge": HINGE, "multiclass": MULTICLASS}


@njit(inline="always", cache=True)
def binary_label(loss_id: int, y: float) -> float:
    """The label as the loss sees it: +-1 for logistic and hinge, as is for squared."""
    if loss_id == SQUARED:
        return y
    return 1.0 if y > 0.0 else -1.0


@njit(inline="always", cache=True)
def loss_and_grad(loss_id: int, p: float, y: float) -> tuple[float, float]:
    """Loss at margin p for label y (already mapped by ``binary_label``) and d loss / d p."""
    if loss_id == LOGISTIC:
        m = y * p
        if m > 0.0:
            e = math.exp(-m)
            return math.log1p(e), -y * e / (1.0 + e)
        e = math.exp(m)
        return -m + math.log1p(e), -y / (1.0 + e)
    if loss_id == SQUARED:
        d = p - y
        return 0.5 * d * d, d
    # hinge
    m = y * p
    if m < 1.0:
        return 1.0 - m, -y
    return 0.0, 0.0


@njit(inline="always", cache=True)
def sigmoid(p: float) -> float:
    if p >= 0.0:
        return 1.0 / (1.0 + math.exp(-p))
    e = math.exp(p)
    return e / (1.0 + e)


@njit(inline="always", cache=True)
def softmax_inplace(p: np.ndarray) -> float:
    """Turn margins into probabilities in place; returns logsumexp of the margins."""
    mx = p[0]
    for k in range(1, len(p)):
        mx = max(mx, p[k])
    s = 0.0
    for k in range(len(p)):
        p[k] = math.exp(p[k] - mx)
        s += p[k]
    for k in range(len(p)):
        p[k] /= s
    return mx + math.log(s)
