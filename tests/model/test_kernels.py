"""The multiclass kernel against the plain-Python reference, importance weights included."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from tests.model.reference_multiclass import MulticlassReference

Rows = list[tuple[list[tuple[int, float]], float, float]]


def multiclass_set(seed: int, classes: int, n: int = 300, dim: int = 40) -> Rows:
    """Rows whose class follows a hidden linear model; importance weights 0.25 .. 3."""
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=(dim, classes))
    rows = []
    for _ in range(n):
        k = int(rng.integers(1, 8))
        idx = rng.choice(dim, size=k, replace=False)
        val = rng.normal(size=k).round(3)
        y = int(np.argmax(val @ true_w[idx] + rng.gumbel(size=classes))) + 1
        iw = float(rng.choice([1.0, 0.25, 2.0, 3.0]))
        rows.append(([(int(j), float(v)) for j, v in zip(idx, val, strict=True)], float(y), iw))
    return rows


def to_batch(rows: Rows) -> Batch:
    return Batch.from_rows(
        [([j for j, _ in r], [v for _, v in r]) for r, _, _ in rows],
        labels=[y for _, y, _ in rows],
        weights=[w for _, _, w in rows],
    )


CASES = [
    ("sgd", 3, {"learning_rate": 0.5}),
    ("sgd", 4, {"learning_rate": 0.2, "l2": 0.01, "l1": 0.001}),
    ("adagrad", 3, {"learning_rate": 0.5}),
    ("adagrad", 5, {"learning_rate": 0.3, "l1": 0.01, "l2": 0.01}),
    ("ftrl", 3, {"learning_rate": 0.1}),
    ("ftrl", 4, {"learning_rate": 0.2, "l1": 0.5, "l2": 1.0, "ftrl_beta": 0.5}),
]


@pytest.mark.parametrize(("optimizer", "classes", "hyper"), CASES)
def test_multiclass_kernel_matches_reference(
    optimizer: str, classes: int, hyper: dict[str, float]
) -> None:
    rows = multiclass_set(seed=len(optimizer) + classes, classes=classes)
    assert len({iw for _, _, iw in rows}) > 1  # the weights matter, or this proves nothing
    ref = MulticlassReference(
        64,
        classes,
        optimizer,
        hyper["learning_rate"],
        l1=hyper.get("l1", 0.0),
        l2=hyper.get("l2", 0.0),
        beta=hyper.get("ftrl_beta", 1.0),
    )
    for r, y, iw in rows:
        ref.learn(r, y, iw)
    cfg = LearnerConfig(loss="multiclass", classes=classes, optimizer=optimizer, **hyper)  # type: ignore[arg-type]
    model = Model(FeatureSpec(bits=6), cfg)
    model.learn(to_batch(rows))
    np.testing.assert_allclose(model.weights, np.array(ref.w, dtype=np.float64), rtol=0, atol=1e-6)
    assert np.count_nonzero(model.weights) > 10 * classes  # it learned something
