"""A plain-Python reference learner: the same maths as the kernels, one float at a time.

Weights and optimizer state are stored as float32 (as the model stores them); arithmetic is in
Python floats.
"""

from __future__ import annotations

import math

import numpy as np


def f32(x: float) -> float:
    return float(np.float32(x))


def loss_grad(loss: str, p: float, y: float) -> tuple[float, float]:
    if loss == "squared":
        return 0.5 * (p - y) ** 2, p - y
    y = 1.0 if y > 0 else -1.0
    if loss == "logistic":
        return math.log1p(math.exp(-y * p)), -y / (1.0 + math.exp(y * p))
    return (1.0 - y * p, -y) if y * p < 1.0 else (0.0, 0.0)


class Reference:
    def __init__(self, size: int, optimizer: str, loss: str, lr: float, power_t: float = 0.5,
                 l1: float = 0.0, l2: float = 0.0, beta: float = 1.0) -> None:  # fmt: skip
        self.w = [0.0] * size
        self.s1 = [0.0] * size
        self.s2 = [0.0] * size
        self.opt, self.loss, self.lr, self.power_t = optimizer, loss, lr, power_t
        self.l1, self.l2, self.beta = l1, l2, beta
        self.t = 0.0

    def predict(self, row: list[tuple[int, float]]) -> float:
        return sum(self.w[j] * v for j, v in row)

    def learn(self, row: list[tuple[int, float]], y: float, iw: float = 1.0) -> None:
        _, g = loss_grad(self.loss, self.predict(row), y)
        eta = self.lr / (1.0 + self.t) ** self.power_t
        self.t += iw
        g *= iw
        if g == 0.0:
            return
        for j, v in row:
            self._step(j, g * v, eta)

    def _step(self, j: int, g: float, eta: float) -> None:
        w = self.w[j]
        if self.opt == "ftrl":
            n_new = self.s1[j] + g * g
            sigma = (math.sqrt(n_new) - math.sqrt(self.s1[j])) / self.lr
            z = self.s2[j] + g - sigma * w
            self.s1[j], self.s2[j] = f32(n_new), f32(z)
            n_new, z = self.s1[j], self.s2[j]
            if abs(z) <= self.l1:
                self.w[j] = 0.0
            else:
                denom = (self.beta + math.sqrt(n_new)) / self.lr + self.l2
                self.w[j] = f32(-(z - math.copysign(self.l1, z)) / denom)
            return
        g += self.l2 * w
        if self.opt == "adagrad":
            self.s1[j] = f32(self.s1[j] + g * g)
            if self.s1[j] <= 0.0:
                return
            eta = self.lr / math.sqrt(self.s1[j])
        w -= eta * g
        if self.l1 > 0:
            w = math.copysign(max(abs(w) - eta * self.l1, 0.0), w)
        self.w[j] = f32(w)
