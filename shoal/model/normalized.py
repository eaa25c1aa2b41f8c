"""Normalized, adaptive, importance-invariant updates: Vowpal Wabbit's default, compiled.

VW's ``--adaptive --normalized --invariant`` (its default update) combines three ideas:

- **adaptive** (AdaGrad; Duchi, Hazan and Singer 2011): each coordinate keeps ``G_i``, the sum of
  its importance-weighted squared gradients ``iw * g**2 * x_i**2``, and steps ``G_i ** -power_t``.
- **normalized** (Ross, Mineiro and Langford, "Normalized Online Learning", 2013): each
  coordinate keeps ``N_i``, the largest ``|x_i|`` seen. The step is divided by ``N_i ** (2 -
  2 power_t)`` (``N_i`` at power_t 0.5), so a feature's scale does not matter; when a larger value
  shows up, the weight is rescaled by ``(N_old / |x|) ** (2 - 2 power_t)`` as if that scale had
  been there from the start. A global multiplier ``(T / S) ** (1 - power_t)`` (``T`` = total
  importance weight, ``S`` = the weighted sum over examples of ``sum_i x_i**2 / N_i**2``) makes
  the step independent of how many features an example has.
- **invariant** (Karampatziakis and Langford, "Online Importance Weight Aware Updates", 2011):
  an example of importance weight ``h`` moves the prediction as ``h`` examples of weight 1 taken
  with infinitesimal steps would, by solving the update's ODE in closed form. The prediction
  then never overshoots the label, whatever the weight or the rate (``invariant_update``).

For one example with margin ``p``, label ``y``, loss gradient ``g = dl/dp`` and weight ``iw``
(power_t 0.5):

1. per feature: ``G_i += iw g**2 x_i**2``; ``N_i = max(N_i, |x_i|)`` (rescaling ``w_i``);
   ``r_i = 1 / (sqrt(G_i) N_i)``; ``ppu = sum_i x_i**2 r_i``; ``S += iw sum_i x_i**2 / N_i**2``;
   ``T += iw``;
2. ``m = sqrt(T / S)``; ``u`` = the invariant update of the loss for step ``lr * iw`` and
   sensitivity ``ppu * m`` (to first order ``u = -lr iw g``);
3. per feature: ``w_i += u m x_i r_i``.

This is the update of VW 9's ``gd.cc`` (``pred_per_update_feature``, ``average_update``,
``update_feature``), written from its description. VW computes it in float32, shoal in float64
(the state is stored in float32 in both): margins agree to about 1e-5. Features of value 0 are
skipped (VW's reader drops them). ``G`` and ``N`` are kept per weight (per class for
multiclass); ``S`` and ``T`` are two of the model's counters. Margins are not clamped: VW clamps
them to [-50, 50], so that a sure example keeps a gradient of ~1e-22 and, on a feature new to
the model, an adaptive step of 1/sqrt(1e-44); here such an example teaches nothing.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from shoal.model.losses import HINGE, LOGISTIC, SQUARED

# indices into the model's ``counters`` (after t and examples): the normalizer's sums
NORM_SUM = 2  # S: weighted sum over examples of sum_i x_i**2 / N_i**2
NORM_WEIGHT = 3  # T: total importance weight of the examples that updated
X_MIN = 1.084202e-19  # VW's smallest |x|: below it, a value is taken as this (squares stay > 0)
_SMALL = 1e-6  # below this step x sensitivity, the invariant update is its first-order form


@njit(inline="always", cache=True)
def _logistic_update(p: float, y: float, s: float, h: float) -> float:
    """The invariant logistic update: the ``u`` for which the margin moves by ``u * h``.

    With margin ``m = y p``, the loss's ODE ``dm/dt = s h / (1 + exp(m))`` over t in [0, 1] has
    the closed form ``m1 + exp(m1) = m0 + exp(m0) + s h``. Solved for ``d = m1 - m0``:
    ``d + e (exp(d) - 1) = s h`` with ``e = exp(m0)``, by Newton's method from above (the left
    side is convex and increasing, so the iterates fall monotonically onto the root).
    """
    m0 = y * p
    a = s * h
    if a < _SMALL or m0 > 30.0:
        return y * s / (1.0 + math.exp(min(m0, 700.0)))
    e = math.exp(m0)
    d = a / (1.0 + e)  # both starts lie above the root: the root's first-order value...
    d2 = math.log1p(a / e) if e > 0.0 else d  # ...and where e (exp(d) - 1) alone reaches a
    d = min(d, d2)
    for _ in range(60):
        ed = math.exp(d)
        f = d + e * (ed - 1.0) - a
        step = f / (1.0 + e * ed)
        d -= step
        if step <= 1e-15 * (1.0 + d):
            break
    return y * d / h


@njit(inline="always", cache=True)
def invariant_update(loss_id: int, p: float, y: float, g: float, s: float, h: float) -> float:
    """How far to move along ``x_i r_i`` for an example of margin ``p`` and label ``y``.

    ``s`` is the step (rate x importance weight), ``h`` the sensitivity (the margin moves by
    ``u * h`` for an update ``u``), ``g`` the loss gradient at ``p``. Squared loss
    ``(p - y)**2 / 2`` has ``u = (y - p)(1 - exp(-s h)) / h``: the margin approaches the label,
    never passes it. Hinge moves it at most to the hinge. Other losses take the first-order
    ``u = -s g``.
    """
    if h <= 0.0 or not math.isfinite(h):
        return -s * g
    if loss_id == LOGISTIC:
        return _logistic_update(p, y, s, h)
    if loss_id == SQUARED:
        a = s * h
        if a < _SMALL:
            return (y - p) * s
        return (y - p) * -math.expm1(-a) / h
    if loss_id == HINGE:
        err = 1.0 - y * p
        if err <= 0.0:
            return 0.0
        return y * (s if s * h < err else err / h)
    return -s * g


@njit(inline="always", cache=True)
def _rate(acc: float, scale: float, power_t: float) -> float:
    """``r_i = G_i ** -power_t * N_i ** (2 power_t - 2)``; 0 while ``G_i`` is 0 (a squared
    gradient too small for float32: VW's rate would be infinite)."""
    if acc <= 0.0:
        return 0.0
    if power_t == 0.5:
        return 1.0 / (math.sqrt(acc) * scale)
    return acc**-power_t * scale ** (2.0 * power_t - 2.0)


@njit(inline="always", cache=True)
def normalized_update(w, s1, s2, counters, indices, values, a, b, K, c, loss_id, p, y, g, iw, lr,
                      power_t, l1, l2):  # fmt: skip
    """Apply one example's normalized, adaptive, invariant update to output c.

    ``s1`` holds ``G`` and ``s2`` holds ``N`` (per weight); ``counters[NORM_SUM]`` and
    ``counters[NORM_WEIGHT]`` hold ``S`` and ``T``. ``g`` is the loss gradient at margin ``p``
    without the importance weight ``iw``. L2 and L1 are proximal steps on each touched weight
    with its own step ``lr m r_i``.
    """
    gsq = iw * g * g
    if gsq == 0.0:
        return
    ppu = 0.0
    norm_x = 0.0
    for k in range(a, b):
        x = float(values[k])
        if x == 0.0:
            continue
        if abs(x) < X_MIN:
            x = math.copysign(X_MIN, x)
        j = np.int64(indices[k]) * K + c
        x2 = x * x
        acc = float(s1[j]) + gsq * x2
        s1[j] = acc
        scale = float(s2[j])
        ax = abs(x)
        if ax > scale:
            if scale > 0.0:  # rescale the weight as if the new scale had always been there
                ratio = scale / ax
                if power_t == 0.5:
                    w[j] = float(w[j]) * ratio
                else:
                    w[j] = float(w[j]) * ratio ** (2.0 - 2.0 * power_t)
            s2[j] = ax
        scale = float(s2[j])  # as stored (float32)
        norm_x += x2 / (scale * scale)
        ppu += x2 * _rate(float(s1[j]), scale, power_t)
    if norm_x == 0.0:
        return  # no feature with a value: nothing to learn
    counters[NORM_SUM] += iw * norm_x
    counters[NORM_WEIGHT] += iw
    ratio = counters[NORM_WEIGHT] / counters[NORM_SUM]
    m = math.sqrt(ratio) if power_t == 0.5 else ratio ** (1.0 - power_t)
    u = invariant_update(loss_id, p, y, g, lr * iw, ppu * m) * m
    for k in range(a, b):
        x = float(values[k])
        if x == 0.0:
            continue
        if abs(x) < X_MIN:
            x = math.copysign(X_MIN, x)
        j = np.int64(indices[k]) * K + c
        r = _rate(float(s1[j]), float(s2[j]), power_t)
        wj = float(w[j]) + u * x * r
        if l2 > 0.0 or l1 > 0.0:
            eta = lr * m * r
            wj /= 1.0 + eta * l2
            if wj > eta * l1:
                wj -= eta * l1
            elif wj < -eta * l1:
                wj += eta * l1
            else:
                wj = 0.0
        w[j] = wj
