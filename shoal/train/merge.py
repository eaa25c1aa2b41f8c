"""Merging what workers learned in one round into the next global model.

Every task of a round starts from the same global model. Per coordinate:

- SGD: the average of the tasks' new weights, weighted by each task's number of examples,
  over the tasks that changed that coordinate.
- AdaGrad: the average weighted by each task's increment of the sum of squared gradients
  (Vowpal Wabbit's cluster mode does the same for its adaptive updates); the sums add up.
- FTRL-Proximal: the same average of the weights, weighted by each task's increment of ``n``
  (its sum of squared gradients); the increments of ``n`` add up, and ``z`` is set to the value
  that gives the merged weight in FTRL's closed form (for a zero weight: the weighted average
  of the tasks' ``z``), so the state stays consistent. (Adding up the tasks' increments of
  ``z`` instead diverges with four workers on a9a.)
- normalized: as AdaGrad (its ``G`` is a sum of squared gradients), after putting every
  weight on the merged feature scale: the scale ``N`` is the largest any task saw, and a weight
  learned under a smaller scale is rescaled as the normalized update itself rescales a weight when
  a larger value shows up. The normalizer's sums ``S`` and ``T`` (counters) add up, as in VW's
  own merge of models.

Results are merged in shard order with float64 sums, so the merged model is the same bits
whatever order the results arrived in and whichever worker produced them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shoal.model.model import Model
from shoal.train.task import TaskResult


def _ftrl_z(w: np.ndarray, z_avg: np.ndarray, n: np.ndarray, model: Model) -> np.ndarray:
    """The ``z`` for which FTRL's closed form gives weights ``w`` with sums ``n``."""
    cfg = model.config
    denom = (cfg.ftrl_beta + np.sqrt(n)) / cfg.rate + cfg.l2
    z = -w * denom - np.sign(w) * cfg.l1
    zero = w == 0
    z[zero] = np.clip(z_avg[zero], -cfg.l1, cfg.l1)
    return z


def _on_scale(w: np.ndarray, scale: np.ndarray, merged: np.ndarray, power_t: float) -> np.ndarray:
    """Weights learned under feature scale ``scale`` put on the larger ``merged`` scale."""
    w = w.astype(np.float64)
    grow = (scale > 0) & (merged > scale)
    ratio = scale[grow].astype(np.float64) / merged[grow]
    w[grow] *= ratio ** (2.0 - 2.0 * power_t)
    return w


def merge(base: Model, results: Sequence[TaskResult]) -> Model:
    """The next global model: ``base`` plus the merged changes of ``results``."""
    out = base.copy()
    ordered = sorted(results, key=lambda r: r.shard)
    opt = base.config.optimizer
    for r in ordered:
        out.counters += r.counters
    # the per-coordinate state whose increments weigh each task: AdaGrad's and FTRL's sums of
    # squared gradients; none for SGD, whose tasks weigh by their number of examples
    key = {"adagrad": "sum_sq_grad", "ftrl": "ftrl_n", "normalized": "sum_sq_grad"}.get(opt)
    num = np.zeros(len(base.weights), dtype=np.float64)
    den = np.zeros(len(base.weights), dtype=np.float64)
    zsum = np.zeros(len(base.weights), dtype=np.float64)
    acc = base.state[key].astype(np.float64) if key else None
    base_w = base.weights.astype(np.float64)
    if opt == "normalized":
        scale = base.state["feature_scale"].copy()
        for r in ordered:
            np.maximum.at(scale, r.changed, r.state["feature_scale"])
        p = float(base.config.power_t)
        base_w = _on_scale(base.weights, base.state["feature_scale"], scale, p)
        out.state["feature_scale"][:] = scale
        out.weights[:] = base_w  # rescaled where a task saw a larger scale
    for r in ordered:
        w0 = base_w[r.changed]
        new_w = r.weights.astype(np.float64)
        if opt == "normalized":
            new_w = _on_scale(r.weights, r.state["feature_scale"], scale[r.changed], p)
        if key and acc is not None:
            weight = r.state[key].astype(np.float64) - base.state[key][r.changed]
            acc[r.changed] += weight
        else:
            weight = np.full(len(r.changed), max(1.0, r.counters[1]))
        num[r.changed] += weight * (new_w - w0)
        den[r.changed] += weight
        if opt == "ftrl":
            zsum[r.changed] += weight * r.state["ftrl_z"]
    idx = np.flatnonzero(den > 0)
    out.weights[idx] = base_w[idx] + num[idx] / den[idx]
    if key and acc is not None:
        out.state[key][idx] = acc[idx]
    if opt == "ftrl":
        w = out.weights[idx].astype(np.float64)
        out.state["ftrl_z"][idx] = _ftrl_z(w, zsum[idx] / den[idx], acc[idx], base)  # type: ignore[index]
    return out
