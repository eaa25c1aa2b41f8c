"""The normalized optimizer (VW's default update) against a plain-Python reference, and the
properties it exists for: feature scale does not matter, importance weights are exact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.data.reader import TextReader
from shoal.data.synthetic import generate_clicks
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from tests.model.reference import NormalizedReference, NormalizedSoftmaxReference

Rows = list[tuple[list[tuple[int, float]], float, float]]


def scaled_set(seed: int, n: int = 300, dim: int = 40, multiclass: int = 0) -> Rows:
    """Features of very different scales (1e-3 .. 1e4), some values 0, a scale that grows over
    time (the rescaling), importance weights 0.5 .. 5, and repeated rows."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 4, size=dim)
    true_w = rng.normal(size=dim) / scale
    rows: Rows = []
    for i in range(n):
        k = int(rng.integers(1, 9))
        idx = rng.choice(dim, size=k, replace=False)
        grow = 1.0 + 3.0 * i / n  # values get larger as the stream goes on
        val = (rng.normal(size=k) * scale[idx] * grow).round(4).astype(np.float32)  # as a Batch
        val[rng.random(k) < 0.1] = 0.0
        margin = float(true_w[idx] @ val)
        if multiclass:
            y = float(1 + int(abs(margin) * 3) % multiclass)
        else:
            y = 1.0 if rng.random() < 1 / (1 + math.exp(-max(-30.0, min(30.0, margin)))) else -1.0
        iw = float(rng.choice([1.0, 1.0, 0.5, 2.0, 5.0]))
        rows.append(([(int(j), float(v)) for j, v in zip(idx, val, strict=True)], y, iw))
    return rows + rows[:50]


def to_batch(rows: Rows) -> Batch:
    return Batch.from_rows(
        [([j for j, _ in r], [v for _, v in r]) for r, _, _ in rows],
        labels=[y for _, y, _ in rows],
        weights=[w for _, _, w in rows],
    )


CASES = [
    ("logistic", {}),
    ("logistic", {"learning_rate": 2.0}),
    ("logistic", {"power_t": 0.3}),
    ("logistic", {"initial_t": 3.0}),
    ("logistic", {"l1": 0.01, "l2": 0.1}),
    ("squared", {"learning_rate": 0.3}),
    ("hinge", {}),
]


@pytest.mark.parametrize(("loss", "hyper"), CASES)
def test_kernel_matches_reference(loss: str, hyper: dict[str, float]) -> None:
    rows = scaled_set(seed=len(loss) + len(hyper))
    cfg = LearnerConfig(loss=loss, **hyper)  # type: ignore[arg-type]
    ref = NormalizedReference(64, loss, cfg.rate, cfg.power_t, cfg.initial_t, cfg.l1, cfg.l2)
    for r, y, iw in rows:
        ref.learn(r, y, iw)
    model = Model(FeatureSpec(bits=6), cfg)
    model.learn(to_batch(rows))
    np.testing.assert_allclose(model.weights, ref.w, rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(model.state["sum_sq_grad"], ref.G, rtol=1e-6)
    np.testing.assert_array_equal(model.state["feature_scale"], np.float32(ref.N))
    assert model.counters[2] == pytest.approx(ref.S, rel=1e-7)
    assert model.counters[3] == pytest.approx(ref.T, rel=1e-12)
    assert np.count_nonzero(model.weights) > 20


def test_multiclass_kernel_matches_reference() -> None:
    rows = scaled_set(seed=7, multiclass=3)
    model = Model(FeatureSpec(bits=6), LearnerConfig(loss="multiclass", classes=3))
    ref = NormalizedSoftmaxReference(64, 3, model.config.rate)
    for r, y, iw in rows:
        ref.learn(r, y, iw)
    model.learn(to_batch(rows))
    np.testing.assert_allclose(model.weights, ref.w, rtol=1e-4, atol=1e-8)
    assert np.count_nonzero(model.weights) > 60


@pytest.mark.parametrize("loss", ["logistic", "squared"])
def test_the_scale_of_a_feature_does_not_matter(loss: str) -> None:
    """Normalized updates: multiplying a feature by 1000 leaves every prediction as it was."""
    rows = scaled_set(seed=3)
    times_1000 = [([(j, v * 1000.0 if j % 3 == 0 else v) for j, v in r], y, w) for r, y, w in rows]
    a, b = (
        Model(FeatureSpec(bits=6), LearnerConfig(loss=loss)),
        Model(FeatureSpec(bits=6), LearnerConfig(loss=loss)),
    )
    a.learn(to_batch(rows))
    b.learn(to_batch(times_1000))
    pa, pb = a.decision_function(to_batch(rows)), b.decision_function(to_batch(times_1000))
    np.testing.assert_allclose(pa, pb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["logistic", "squared", "hinge"])
@pytest.mark.parametrize("iw", [2.0, 1e6])
def test_an_importance_weight_moves_the_margin_by_the_closed_form(loss: str, iw: float) -> None:
    """Karampatziakis and Langford's invariance, checked on its own terms: from a fresh model, an
    example of n distinct features and weight iw has sensitivity h = ppu * m with
    ppu = n / (sqrt(iw) |g|) and m = 1 / sqrt(n), and its margin moves along the loss's ODE:
    squared ``y + (p0 - y) exp(-lr iw h)``, logistic ``m1 + exp(m1) = m0 + exp(m0) + lr iw h``,
    hinge to ``y`` at most. A huge weight never carries the margin past the label."""
    x = [0.5, -2.0, 3.0, 0.25]
    n = len(x)
    y = 1.0
    model = Model(FeatureSpec(bits=6), LearnerConfig(loss=loss, learning_rate=0.5))  # type: ignore[arg-type]
    batch = Batch.from_rows([(list(range(n)), x)], labels=[y], weights=[iw])
    model.learn(batch)
    p1 = float(model.decision_function(batch)[0])
    g = -0.5 if loss == "logistic" else -1.0  # the gradient at margin 0 (squared: p - y)
    h = n / (math.sqrt(iw) * abs(g)) / math.sqrt(n)
    a = 0.5 * iw * h
    if loss == "squared":
        expected = y - y * math.exp(-a)
        assert p1 <= y
    elif loss == "logistic":
        lo, hi = 0.0, math.log1p(a)  # m1 + exp(m1) = 1 + a, by bisection
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mid + math.exp(mid) < 1 + a else (lo, mid)
        expected = lo
    else:
        expected = min(a, 1.0)
        assert p1 <= 1.0 + 1e-6
    assert p1 == pytest.approx(expected, rel=1e-5)


def test_raw_units_up_to_a_million_do_not_blow_up() -> None:
    """Counts in the thousands to a million, unscaled: the loss stays that of a sane model."""
    rng = np.random.default_rng(0)
    n = 3000
    counts = rng.exponential(scale=[10.0, 1e3, 1e5], size=(n, 3)).round()
    clicks = rng.random(n) < 1 / (1 + np.exp(-(np.log1p(counts[:, 1]) - 7)))
    batch = Batch.from_rows(
        [([0, 1, 2, 3], [1.0, *row]) for row in counts.tolist()],
        labels=np.where(clicks, 1.0, -1.0).tolist(),
    )
    prog = Model(FeatureSpec(bits=6)).learn(batch)
    base = -np.mean(clicks) * math.log(np.mean(clicks)) - np.mean(~clicks) * math.log(
        np.mean(~clicks)
    )
    assert prog.loss < base  # learned something, and no blow-up (AdaGrad at 0.1: loss ~45)


def test_initial_t_is_for_the_normalized_optimizer() -> None:
    with pytest.raises(ConfigError, match="initial_t"):
        LearnerConfig(optimizer="adagrad", initial_t=1.0)
    with pytest.raises(ConfigError, match="power_t"):
        LearnerConfig(power_t=1.5)
    assert LearnerConfig().optimizer == "normalized"


def _with_initial_predictions(path: Path) -> None:
    """Give every line of a generated file an initial prediction (the label's third number)."""
    lines = path.read_text().splitlines()
    path.write_text(
        "".join(
            f"{line.split(' ', 1)[0]} 1 {(i % 7 - 3) * 0.25} {line.split(' ', 1)[1]}\n"
            for i, line in enumerate(lines)
        )
    )


@pytest.mark.parametrize("initial", [False, True])
def test_agrees_with_vowpal_wabbit(tmp_path: Path, initial: bool) -> None:
    """The same lines, hashing and default flags as VW 9: the same predictions, to float32's
    precision (VW computes the update in float32, shoal in float64: margins differ by ~1e-5);
    with initial predictions too (VW adds them to the margin, in learning and prediction)."""
    vw = pytest.importorskip("vowpalwabbit")  # the [bench] extra
    train, test = tmp_path / "train.vw", tmp_path / "test.vw"
    generate_clicks(train, 3000, data_seed=1)
    generate_clicks(test, 500, data_seed=2)
    if initial:
        _with_initial_predictions(train)
        _with_initial_predictions(test)
    ws = vw.Workspace(arg_list=["--loss_function", "logistic", "-b", "18", "--quiet"])
    for line in train.read_text().splitlines():
        ws.learn(line)
    theirs = np.array([ws.predict(line) for line in test.read_text().splitlines()])
    ws.finish()
    model = Model(FeatureSpec(bits=18))
    for batch in TextReader(spec=model.spec, threads=1).read(train):
        model.learn(batch)
    ours = np.concatenate(
        [model.decision_function(b) for b in TextReader(spec=model.spec).read(test)]
    )
    assert np.abs(theirs).mean() > 0.5  # VW learned something
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)
    assert np.abs(ours - theirs).mean() < 1e-4
