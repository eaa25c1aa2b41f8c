"""Each optimizer against the plain-Python reference on a small random set."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from tests.model.reference import Reference, SoftmaxReference


def small_set(
    seed: int, n: int = 300, dim: int = 40
) -> list[tuple[list[tuple[int, float]], float, float]]:
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=dim)
    rows = []
    for _ in range(n):
        k = int(rng.integers(1, 8))
        idx = rng.choice(dim, size=k, replace=False)
        val = rng.normal(size=k).round(3)
        margin = float(true_w[idx] @ val)
        y = 1.0 if rng.random() < 1 / (1 + np.exp(-margin)) else -1.0
        iw = float(rng.choice([1.0, 1.0, 0.5, 2.0]))
        rows.append(([(int(j), float(v)) for j, v in zip(idx, val, strict=True)], y, iw))
    return rows


def to_batch(rows: list[tuple[list[tuple[int, float]], float, float]]) -> Batch:
    return Batch.from_rows(
        [([j for j, _ in r], [v for _, v in r]) for r, _, _ in rows],
        labels=[y for _, y, _ in rows],
        weights=[w for _, _, w in rows],
    )


CASES = [
    ("sgd", "logistic", {"learning_rate": 0.5}),
    ("sgd", "squared", {"learning_rate": 0.1, "l2": 0.01}),
    ("sgd", "hinge", {"learning_rate": 0.3, "l1": 0.001}),
    ("adagrad", "logistic", {"learning_rate": 0.5}),
    ("adagrad", "logistic", {"learning_rate": 0.3, "l1": 0.01, "l2": 0.01}),
    ("adagrad", "squared", {"learning_rate": 0.2}),
    ("ftrl", "logistic", {"learning_rate": 0.1}),
    ("ftrl", "logistic", {"learning_rate": 0.2, "l1": 0.5, "l2": 1.0, "ftrl_beta": 0.5}),
    ("ftrl", "hinge", {"learning_rate": 0.1, "l1": 0.1}),
]


@pytest.mark.parametrize(("optimizer", "loss", "hyper"), CASES)
def test_kernel_matches_reference(optimizer: str, loss: str, hyper: dict[str, float]) -> None:
    rows = small_set(seed=len(optimizer) + len(loss))
    ref = Reference(
        64,
        optimizer,
        loss,
        hyper["learning_rate"],
        l1=hyper.get("l1", 0.0),
        l2=hyper.get("l2", 0.0),
        beta=hyper.get("ftrl_beta", 1.0),
    )
    for r, y, iw in rows:
        ref.learn(r, y, iw)
    cfg = LearnerConfig(loss=loss, optimizer=optimizer, **hyper)  # type: ignore[arg-type]
    model = Model(FeatureSpec(bits=6), cfg)
    model.learn(to_batch(rows))
    np.testing.assert_allclose(model.weights, np.array(ref.w, dtype=np.float64), rtol=0, atol=1e-6)
    assert np.count_nonzero(model.weights) > 10  # it learned something
    if hyper.get("l1", 0) >= 0.5:
        assert np.count_nonzero(model.weights) < 40  # and L1 made it sparse


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "ftrl"])
def test_multiclass_kernel_matches_reference(optimizer: str) -> None:
    """Importance weights included: each class's gradient is (p_c - [c == y]) * weight."""
    rows = [(r, float(1 + (i % 3)), iw) for i, (r, _, iw) in enumerate(small_set(seed=11))]
    ref = SoftmaxReference(64, 3, optimizer, 0.3)
    for r, y, iw in rows:
        ref.learn(r, y, iw)
    cfg = LearnerConfig(loss="multiclass", classes=3, optimizer=optimizer, learning_rate=0.3)  # type: ignore[arg-type]
    model = Model(FeatureSpec(bits=6), cfg)
    model.learn(to_batch(rows))
    np.testing.assert_allclose(model.weights, np.array(ref.w, dtype=np.float64), rtol=0, atol=1e-6)
    assert np.count_nonzero(model.weights) > 60
