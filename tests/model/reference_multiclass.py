"""A plain-Python reference for the multiclass (softmax) loss, over ``reference.Reference``'s
optimizer steps: weights feature-major (class c of slot j at ``j * K + c``), as the kernel."""

from __future__ import annotations

import math

from tests.model.reference import Reference


class MulticlassReference(Reference):
    """``Reference`` for K classes: one prediction per class, the softmax loss's gradient
    ``p_c - [c == y]`` times the importance weight for each class, one optimizer step (and one
    tick of the step-size clock) per example."""

    def __init__(self, size: int, classes: int, optimizer: str, lr: float, **hyper: float) -> None:
        super().__init__(size * classes, optimizer, "multiclass", lr, **hyper)
        self.k = classes

    def margins(self, row: list[tuple[int, float]]) -> list[float]:
        return [sum(self.w[j * self.k + c] * v for j, v in row) for c in range(self.k)]

    def learn(self, row: list[tuple[int, float]], y: float, iw: float = 1.0) -> None:
        m = self.margins(row)
        top = max(m)
        e = [math.exp(x - top) for x in m]
        total = sum(e)
        eta = self.lr / (1.0 + self.t) ** self.power_t
        self.t += iw
        for c in range(self.k):
            g = (e[c] / total - (1.0 if c == int(y) - 1 else 0.0)) * iw
            if g != 0.0:
                for j, v in row:
                    self._step(j * self.k + c, g * v, eta)
