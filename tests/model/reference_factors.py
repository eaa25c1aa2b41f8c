"""A plain-Python FM/FFM learner written from the definitions, for the factor kernels' tests.

The margin is the pairwise sum of Rendle (2010) and Juan et al. (2016), O(n^2) per example,
not the kernels' sum-of-squares identity: over the positions t, u of a row,

    p = sum_t w[t] x_t + sum_{t<u} <v[t, field(u)], v[u, field(t)]> x_t x_u

where the pairs take only features in a field (the constant and a namespace outside every field
are linear only); an FM is the case of one field. The pairs' gradient for ``v[t, h]`` is
``d = sum_{u != t, field(u) = h} v[u, field(t)] x_t x_u``, every factor read before the example
moves any. Each ``v[t, h]`` of a field h the row has then takes an AdaGrad step ``factor_rate *
gr / sqrt(G)`` with ``gr = iw * dloss/dp * d + l2_factors * v`` and ``G`` its sum of squared
``gr`` (when t is the only feature of h, d is 0 and only L2 moves it: libFM too regularises
every factor of an example's features). The linear part is the linear references' own update
(``reference.Reference``, ``reference.NormalizedReference``) at the FM's margin.

A row is a list of ``(slot, field, value)``, ``field`` F for none; a row's slots are distinct.
With a slot twice in a row (a repeated feature, a collision) the kernels step it once per
position, as the linear updates do, and the second position's gradient reads back the vector
the first step moved (``x (A - v x)``): it then differs from this definition by ``x^2`` times
that step (at most ``factor_rate``).
Numbers are stored as float32 as the model stores them; arithmetic is in Python floats.
"""

from __future__ import annotations

import math

import numpy as np

from tests.model.reference import NormalizedReference, Reference, f32, loss_grad

Row = list[tuple[int, int, float]]


class FactorReference:
    def __init__(
        self,
        linear: Reference | NormalizedReference,
        n_fields: int,
        rank: int,
        start: np.ndarray,
        factor_rate: float,
        l2_factors: float = 0.0,
        initial_t: float = 0.0,
    ) -> None:
        """``start``: the model's weights before learning (size * (1 + F k)), for its factors;
        ``initial_t`` starts every factor's ``G`` as the normalized optimizer's (as VW's
        ``--initial_t`` starts every adaptive weight, its ``--lrq`` factors' too)."""
        self.linear, self.F, self.k = linear, n_fields, rank
        width = 1 + n_fields * rank
        size = len(start) // width
        init = start.reshape(size, width)[:, 1:].reshape(size, n_fields, rank)
        self.v = [[[float(x) for x in field] for field in slot] for slot in init]
        self.G = [[[initial_t] * rank for _ in range(n_fields)] for _ in range(size)]
        self.rate, self.l2f = factor_rate, l2_factors
        # progressive validation, as kernels' ``stats``, and the counters t and examples
        self.loss_sum = self.weight_sum = self.ho_loss_sum = self.ho_weight_sum = 0.0
        self.learned = self.held = 0
        self.t = 0.0

    def pairs(self, row: Row, v: list | None = None) -> float:
        """The pairwise interactions of ``row`` (with factors ``v``, default this model's)."""
        v = self.v if v is None else v
        total = 0.0
        for a, (i, f, x) in enumerate(row):
            for j, h, z in row[a + 1 :]:
                if f < self.F and h < self.F:
                    total += sum(p * q for p, q in zip(v[i][h], v[j][f], strict=True)) * x * z
        return total

    def margin(self, row: Row) -> float:
        return self.linear.predict([(i, x) for i, _, x in row]) + self.pairs(row)

    def learn(
        self, row: Row, y: float, iw: float = 1.0, held_by: FactorReference | None = None
    ) -> None:
        """Learn one example; or, held out, only score it with ``held_by`` (this model, or a
        frozen copy)."""
        p = (held_by or self).margin(row)
        y = y if self.linear.loss == "squared" else (1.0 if y > 0 else -1.0)
        loss, g = loss_grad(self.linear.loss, p, y)
        if held_by is not None:
            self.ho_loss_sum += iw * loss
            self.ho_weight_sum += iw
            self.held += 1
            return
        self.loss_sum += iw * loss
        self.weight_sum += iw
        self.learned += 1
        self.t += iw
        fields = sorted({h for _, h, _ in row if h < self.F})
        grads = [
            (i, h, [sum(self.v[j][f][c] * x * z for u, (j, hh, z) in enumerate(row)
                        if hh == h and u != t) for c in range(self.k)])
            for t, (i, f, x) in enumerate(row) if f < self.F
            for h in fields
        ]  # fmt: skip
        for i, h, d in grads:  # every gradient above read the factors before any step
            for c in range(self.k):
                v = self.v[i][h][c]
                gr = g * iw * d[c] + self.l2f * v
                self.G[i][h][c] = f32(self.G[i][h][c] + gr * gr)
                if self.G[i][h][c] > 0.0:
                    self.v[i][h][c] = f32(v - self.rate * gr / math.sqrt(self.G[i][h][c]))
        linear_row = [(i, x) for i, _, x in row]
        if isinstance(self.linear, NormalizedReference):
            self.linear.update(linear_row, p, y, g, iw)
        else:
            self.linear.update(linear_row, g, iw)

    def weights(self) -> np.ndarray:
        """The model's weight array: per slot its linear weight, then its F vectors."""
        return self._layout(self.linear.w, self.v)

    def state(self) -> dict[str, np.ndarray]:
        """The model's state arrays: the linear optimizer's at the linear positions, the
        factors' sums of squared gradients in the first state (``s1``) at theirs."""
        lin = self.linear
        zero = [0.0] * len(lin.w)
        if isinstance(lin, NormalizedReference):
            return {"sum_sq_grad": self._layout(lin.G, self.G), "feature_scale": self._layout(
                lin.N, None)}  # fmt: skip
        if lin.opt == "ftrl":
            return {"ftrl_n": self._layout(lin.s1, self.G), "ftrl_z": self._layout(lin.s2, None)}
        return {"sum_sq_grad": self._layout(lin.s1 if lin.opt == "adagrad" else zero, self.G)}

    def _layout(self, linear: list[float], vectors: list | None) -> np.ndarray:
        width = 1 + self.F * self.k
        out = np.zeros((len(linear), width))
        out[:, 0] = linear
        if vectors is not None:
            out[:, 1:] = np.array(vectors).reshape(len(linear), width - 1)
        return out.ravel()
