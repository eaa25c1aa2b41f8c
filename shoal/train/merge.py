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

The factors of an FM or FFM lie in the same flat array as the linear weights (``factors``: slot
j's linear weight at ``j * width``, its factors after it), and every factor learns with AdaGrad
whatever the optimizer, its sum of squared gradients in the optimizer's first state (``s1``:
``sum_sq_grad``, FTRL's ``ftrl_n``; SGD models with factors keep a ``sum_sq_grad`` for them). So
a factor coordinate merges as AdaGrad's coordinates do, under every optimizer: weighted by the
increments of ``s1``, which add up (for SGD too: its linear weights still weigh by examples). A
coordinate that tasks moved while no task's increment survived ``s1``'s float32 (gradients too
small beside the sum: common for factors late in a run) is averaged by examples, so that its
change is kept (AdaGrad's linear weights too). Nothing else of an optimizer's merge applies to
factors: FTRL's ``z`` and the normalized optimizer's scale ``N`` belong to the linear weights;
the learner never reads or writes them at factor coordinates, so there they keep their start (0)
as in one process. (A factor's ``N`` staying 0 is also what keeps the rescaling above off the
factors.)

Results are merged in shard order with float64 sums, so the merged model is the same bits
whatever order the results arrived in and whichever worker produced them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shoal.model.model import Model
from shoal.model.optimizers import state_tensors
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


def _linear(coords: np.ndarray, model: Model) -> np.ndarray:
    """Which of the coordinates ``coords`` hold linear weights (the others: an FM's factors)."""
    if not model.config.factorized:
        return np.ones(len(coords), dtype=bool)
    return coords % model.width == 0


def merge(base: Model, results: Sequence[TaskResult]) -> Model:
    """The next global model: ``base`` plus the merged changes of ``results``."""
    out = base.copy()
    ordered = sorted(results, key=lambda r: r.shard)
    opt = base.config.optimizer
    for r in ordered:
        out.counters += r.counters
    # s1, the state whose increments weigh each task: AdaGrad's and FTRL's sums of squared
    # gradients, and the factors' (SGD's only state)
    names = state_tensors(opt, base.config.factorized)
    key = names[0] if names else None
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
    changes = []
    for r in ordered:
        new_w = r.weights.astype(np.float64)
        if opt == "normalized":
            new_w = _on_scale(r.weights, r.state["feature_scale"], scale[r.changed], p)
        change = new_w - base_w[r.changed]
        changes.append(change)
        if key and acc is not None:
            inc = r.state[key].astype(np.float64) - base.state[key][r.changed]
            acc[r.changed] += inc
            num[r.changed] += inc * change
            den[r.changed] += inc
            if opt == "ftrl":
                zsum[r.changed] += inc * r.state["ftrl_z"]
    # where no task's s1 grew, by examples: SGD's linear weights (which keep no s1), and a
    # coordinate whose every increment was too small to change s1's float32 (a factor's tiny
    # gradients, late in a run) but not too small to move its weight
    none = den == 0
    for r, change in zip(ordered, changes, strict=True):
        by_examples = none[r.changed]
        where = r.changed[by_examples]
        examples = max(1.0, r.counters[1])
        num[where] += examples * change[by_examples]
        den[where] += examples
        if opt == "ftrl":
            zsum[where] += examples * r.state["ftrl_z"][by_examples]
    idx = np.flatnonzero(den > 0)
    out.weights[idx] = base_w[idx] + num[idx] / den[idx]
    if key and acc is not None:
        out.state[key][idx] = acc[idx]
    if opt == "ftrl":
        lin = idx[_linear(idx, base)]  # z is the linear weights' alone
        w = out.weights[lin].astype(np.float64)
        out.state["ftrl_z"][lin] = _ftrl_z(w, zsum[lin] / den[lin], acc[lin], base)  # type: ignore[index]
    return out
