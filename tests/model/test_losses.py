"""Finite-difference checks of every loss's gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from shoal.model.losses import LOSS_IDS, MULTICLASS, loss_and_grad, softmax_inplace


@njit(cache=False)
def _loss(loss_id: int, p: float, y: float) -> tuple[float, float]:
    return loss_and_grad(loss_id, p, y)


@pytest.mark.parametrize("loss", ["logistic", "squared", "hinge"])
@pytest.mark.parametrize("y", [-1.0, 1.0])
@pytest.mark.parametrize("p", [-3.7, -0.4, 0.0, 0.25, 0.9, 2.5, 30.0, -40.0])
def test_binary_gradient_matches_finite_difference(loss: str, y: float, p: float) -> None:
    lid = LOSS_IDS[loss]
    if loss == "hinge" and abs(y * p - 1.0) < 1e-3:
        pytest.skip("hinge is not differentiable at the kink")
    h = 1e-6
    numeric = (_loss(lid, p + h, y)[0] - _loss(lid, p - h, y)[0]) / (2 * h)
    assert _loss(lid, p, y)[1] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_logistic_loss_values() -> None:
    lid = LOSS_IDS["logistic"]
    assert _loss(lid, 0.0, 1.0)[0] == pytest.approx(math.log(2))
    assert _loss(lid, 2.0, -1.0)[0] == pytest.approx(math.log1p(math.exp(2.0)))
    assert math.isfinite(_loss(lid, -800.0, 1.0)[0])  # no overflow far from the boundary


def test_hinge_is_zero_beyond_the_margin() -> None:
    assert _loss(LOSS_IDS["hinge"], 1.5, 1.0) == (0.0, 0.0)
    assert _loss(LOSS_IDS["hinge"], 0.5, 1.0) == (0.5, -1.0)


@njit(cache=False)
def _softmax_loss(p: np.ndarray, y: int) -> float:
    q = p.copy()
    return softmax_inplace(q) - p[y]


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_gradient_matches_finite_difference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 2, size=4)
    y = int(rng.integers(4))
    q = p.copy()
    softmax_inplace(q)
    analytic = q.copy()
    analytic[y] -= 1.0  # what the multiclass kernel uses
    h = 1e-6
    for k in range(4):
        up, down = p.copy(), p.copy()
        up[k] += h
        down[k] -= h
        numeric = (_softmax_loss(up, y) - _softmax_loss(down, y)) / (2 * h)
        assert analytic[k] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    assert LOSS_IDS["multiclass"] == MULTICLASS
