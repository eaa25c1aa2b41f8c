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
        self.update(row, g, iw)

    def update(self, row: list[tuple[int, float]], g: float, iw: float) -> None:
        """One example's step for the loss gradient ``g`` at its margin (without ``iw``)."""
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


def _logistic_invariant(p: float, y: float, s: float, h: float) -> float:
    """The invariant logistic update by bisection (the kernel uses Newton's method): the margin
    m = y p moves by d, the root of d + exp(m) (exp(d) - 1) = s h, which lies between 0 and
    both s h / (1 + exp(m)) and log(1 + s h / exp(m))."""
    a, e = s * h, math.exp(y * p)
    lo, hi = 0.0, a / (1.0 + e)
    if e > 0:
        hi = min(hi, math.log1p(a / e))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid + e * math.expm1(mid) < a:
            lo = mid
        else:
            hi = mid
    return y * 0.5 * (lo + hi) / h


def invariant(loss: str, p: float, y: float, g: float, s: float, h: float) -> float:
    """How far the normalized update moves: the closed forms of Karampatziakis and Langford."""
    if loss == "logistic":
        return y * s / (1.0 + math.exp(y * p)) if s * h < 1e-6 else _logistic_invariant(p, y, s, h)
    if loss == "squared":
        return (y - p) * s if s * h < 1e-6 else (y - p) * (1.0 - math.exp(-s * h)) / h
    if loss == "hinge":
        err = 1.0 - y * p
        return 0.0 if err <= 0 else y * min(s, err / h)
    return -s * g


class NormalizedReference:
    """VW's ``--adaptive --normalized --invariant`` update, one coordinate at a time."""

    def __init__(self, size: int, loss: str, lr: float, power_t: float = 0.5,
                 initial_t: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> None:  # fmt: skip
        self.w = [0.0] * size
        self.G = [initial_t] * size  # weighted sums of squared gradients
        self.N = [0.0] * size  # each feature's largest |value|
        self.S = self.T = initial_t  # the normalizer's sums
        self.loss, self.lr, self.pt, self.l1, self.l2 = loss, lr, power_t, l1, l2

    def predict(self, row: list[tuple[int, float]]) -> float:
        return sum(self.w[j] * v for j, v in row)

    def rate(self, j: int) -> float:
        if self.G[j] <= 0:
            return 0.0
        return self.G[j] ** -self.pt * self.N[j] ** (2 * self.pt - 2)

    def learn(self, row: list[tuple[int, float]], y: float, iw: float = 1.0) -> None:
        p = self.predict(row)
        y = y if self.loss == "squared" else (1.0 if y > 0 else -1.0)
        _, g = loss_grad(self.loss, p, y)
        self.update(row, p, y, g, iw)

    def update(self, row: list[tuple[int, float]], p: float, y: float, g: float, iw: float) -> None:
        row = [(j, x) for j, x in row if x != 0.0]
        if iw * g * g == 0.0 or not row:
            return
        ppu = norm_x = 0.0
        for j, x in row:
            self.G[j] = f32(self.G[j] + iw * g * g * x * x)
            if abs(x) > self.N[j]:
                if self.N[j] > 0:
                    self.w[j] = f32(self.w[j] * (self.N[j] / abs(x)) ** (2 - 2 * self.pt))
                self.N[j] = f32(abs(x))
            norm_x += x * x / self.N[j] ** 2
            ppu += x * x * self.rate(j)
        self.S += iw * norm_x
        self.T += iw
        m = (self.T / self.S) ** (1 - self.pt)
        u = invariant(self.loss, p, y, g, self.lr * iw, ppu * m) * m
        for j, x in row:
            w = self.w[j] + u * x * self.rate(j)
            eta = self.lr * m * self.rate(j)
            w /= 1.0 + eta * self.l2
            w = math.copysign(max(abs(w) - eta * self.l1, 0.0), w)
            self.w[j] = f32(w)


class NormalizedSoftmaxReference(NormalizedReference):
    """The same update for the softmax loss over K classes: K weights per slot (class c of slot
    j at j * K + c), each class updated with its own gradient, to first order."""

    def __init__(self, size: int, classes: int, lr: float) -> None:
        super().__init__(size * classes, "multiclass", lr)
        self.K = classes

    def learn(self, row: list[tuple[int, float]], y: float, iw: float = 1.0) -> None:
        K = self.K
        margins = [sum(self.w[j * K + c] * v for j, v in row) for c in range(K)]
        top = max(margins)
        z = [math.exp(m - top) for m in margins]
        probs = [e / sum(z) for e in z]
        for c in range(K):
            g = probs[c] - (1.0 if c == int(y) - 1 else 0.0)
            self.update([(j * K + c, v) for j, v in row], 0.0, 0.0, g, iw)


class SoftmaxReference(Reference):
    """SGD, AdaGrad or FTRL on the softmax loss over K classes: class c of slot j is weight
    j * K + c; each class takes its gradient ``(p_c - [c == y]) * iw`` with the example's step."""

    def __init__(self, size: int, classes: int, optimizer: str, lr: float) -> None:
        super().__init__(size * classes, optimizer, "multiclass", lr)
        self.K = classes

    def learn(self, row: list[tuple[int, float]], y: float, iw: float = 1.0) -> None:
        K = self.K
        margins = [sum(self.w[j * K + c] * v for j, v in row) for c in range(K)]
        top = max(margins)
        z = [math.exp(m - top) for m in margins]
        eta = self.lr / (1.0 + self.t) ** self.power_t
        self.t += iw
        for c in range(K):
            g = (z[c] / sum(z) - (1.0 if c == int(y) - 1 else 0.0)) * iw
            if g != 0.0:
                for j, v in row:
                    self._step(j * K + c, g * v, eta)
