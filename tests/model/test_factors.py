"""The FM and FFM kernels against the plain-Python pairwise reference (``reference_factors``):
margins, weights, optimizer state and progressive losses after learning, for every loss and every
optimizer of the linear part; and the start, determinism and prediction they rely on.

Every hyper-parameter is given explicitly: these tests hold whatever the defaults become.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.errors import StepTooLarge
from shoal.features.hashing import CONSTANT_HASH
from shoal.features.spec import FeatureSpec
from shoal.model import kernels
from shoal.model.config import LearnerConfig
from shoal.model.model import Model, Progress
from tests.model.reference import NormalizedReference, Reference, loss_grad
from tests.model.reference_factors import FactorReference, Row

BITS = 6
CONSTANT = CONSTANT_HASH & ((1 << BITS) - 1)
FIELDS = ("a", "b", "c")
IN_FIELDS = [j for j in range(44) if j != CONSTANT]  # the slots of features in a field
OUTSIDE = [j for j in range(44, 64) if j != CONSTANT]  # of a namespace in no field (ffm)
Example = tuple[Row, float, float]


def spec_of(kind: str, seed: int = 0) -> FeatureSpec:
    return FeatureSpec(bits=BITS, seed=seed, fields=FIELDS if kind == "ffm" else ())


def examples(kind: str, loss: str, seed: int, n: int = 250) -> list[Example]:
    """Rows of 2..8 distinct slots and the constant, labels from a hidden pairwise model, and
    importance weights 0.5 .. 3; an FFM's rows have features of every field and some of a
    namespace in none."""
    rng = np.random.default_rng(seed)
    F = len(FIELDS) if kind == "ffm" else 1
    hidden = rng.normal(size=(64, F, 2))
    out = []

    def value() -> float:  # as the batch stores it
        return float(np.float32(round(float(rng.normal()), 3)))

    for _ in range(n):
        slots = rng.choice(IN_FIELDS, size=int(rng.integers(2, 8)), replace=False)
        row: Row = [(int(j), int(rng.integers(F)), value()) for j in slots]
        if kind == "ffm" and rng.random() < 0.5:
            row.append((int(rng.choice(OUTSIDE)), F, value()))
        row.append((CONSTANT, F, 1.0))
        rng.shuffle(row)  # type: ignore[arg-type]
        m = sum(
            hidden[i, h] @ hidden[j, f] * x * z
            for a, (i, f, x) in enumerate(row) for j, h, z in row[a + 1 :] if f < F and h < F
        )  # fmt: skip
        if loss == "squared":
            y = float(np.round(m + rng.normal(scale=0.1), 3))
        else:
            y = 1.0 if rng.random() < 1 / (1 + np.exp(-m)) else -1.0
        out.append((row, y, float(rng.choice([1.0, 1.0, 0.5, 2.0, 3.0]))))
    return out


def to_batch(kind: str, rows: list[Example]) -> Batch:
    """The rows as a reader would give them: an FFM's field in each index's high bits (F, none,
    for the constant and the outside namespace), an FM's plain slots."""
    return Batch.from_rows(
        [([j + (f << BITS) if kind == "ffm" else j for j, f, _ in r], [x for _, _, x in r])
         for r, _, _ in rows],
        labels=[y for _, y, _ in rows],
        weights=[w for _, _, w in rows],
    )  # fmt: skip


def reference(model: Model) -> FactorReference:
    cfg = model.config
    size = model.spec.size
    linear: Reference | NormalizedReference
    if cfg.optimizer == "normalized":
        linear = NormalizedReference(size, cfg.loss, cfg.rate, cfg.power_t, cfg.initial_t, cfg.l1,
                                     cfg.l2)  # fmt: skip
    else:
        linear = Reference(size, cfg.optimizer, cfg.loss, cfg.rate, cfg.power_t, cfg.l1, cfg.l2,
                           cfg.ftrl_beta)  # fmt: skip
    F = len(model.spec.fields) if cfg.model == "ffm" else 1
    assert cfg.factor_rate is not None
    return FactorReference(linear, F, cfg.rank, model.weights.copy(), cfg.factor_rate,
                           cfg.l2_factors, cfg.initial_t)  # fmt: skip


def config(kind: str, optimizer: str, loss: str, **hyper: float) -> LearnerConfig:
    return LearnerConfig(
        model=kind,  # type: ignore[arg-type]
        loss=loss,  # type: ignore[arg-type]
        optimizer=optimizer,  # type: ignore[arg-type]
        rank=int(hyper.pop("rank", 3)),
        factor_rate=hyper.pop("factor_rate", 0.05),
        init_scale=hyper.pop("init_scale", 0.1),
        **hyper,  # type: ignore[arg-type]
    )


def assert_matches(model: Model, ref: FactorReference, rows: list[Example], kind: str) -> None:
    np.testing.assert_allclose(model.weights, ref.weights(), rtol=1e-5, atol=1e-6)
    want = ref.state()
    assert sorted(model.state) == sorted(want)
    for name, arr in want.items():
        np.testing.assert_allclose(model.state[name], arr, rtol=1e-5, atol=1e-5, err_msg=name)
    margins = model.decision_function(to_batch(kind, rows))
    np.testing.assert_allclose(margins, [ref.margin(r) for r, _, _ in rows], rtol=1e-5, atol=1e-6)
    assert model.counters[kernels.T] == pytest.approx(ref.t)
    assert model.counters[kernels.EXAMPLES] == ref.learned


CASES = [
    ("sgd", "logistic", {"learning_rate": 0.3}),
    ("sgd", "squared", {"learning_rate": 0.05, "l2": 0.01}),
    ("sgd", "hinge", {"learning_rate": 0.2, "l1": 0.001}),
    ("adagrad", "logistic", {"learning_rate": 0.3, "l2_factors": 0.01}),
    ("adagrad", "squared", {"learning_rate": 0.2, "l1": 0.01, "l2": 0.01}),
    ("adagrad", "hinge", {"learning_rate": 0.2, "factor_rate": 0.2, "rank": 2}),
    ("ftrl", "logistic", {"learning_rate": 0.1, "l1": 0.2, "l2": 0.5, "ftrl_beta": 0.5}),
    ("ftrl", "squared", {"learning_rate": 0.1, "l2_factors": 0.05}),
    ("ftrl", "hinge", {"learning_rate": 0.1}),
    ("normalized", "logistic", {"learning_rate": 0.5, "rank": 4}),
    ("normalized", "squared", {"learning_rate": 0.3, "l2_factors": 0.02}),
    ("normalized", "hinge", {"learning_rate": 0.5, "l2": 0.001}),
    ("normalized", "logistic", {"learning_rate": 0.5, "initial_t": 1.0, "power_t": 0.4}),
]


@pytest.mark.parametrize("kind", ["fm", "ffm"])
@pytest.mark.parametrize(("optimizer", "loss", "hyper"), CASES, ids=lambda v: str(v)[:40])
def test_factor_kernel_matches_the_pairwise_reference(
    kind: str, optimizer: str, loss: str, hyper: dict[str, float]
) -> None:
    rows = examples(kind, loss, seed=len(optimizer) * 7 + len(loss))
    model = Model(spec_of(kind), config(kind, optimizer, loss, **hyper))
    start = model.weights.copy()
    ref = reference(model)
    for r, y, iw in rows:
        ref.learn(r, y, iw)
    progress = model.learn(to_batch(kind, rows))
    assert_matches(model, ref, rows, kind)
    assert progress.loss == pytest.approx(ref.loss_sum / ref.weight_sum, rel=1e-6)
    width = model.width
    moved = (model.weights != start).reshape(model.spec.size, width)
    assert moved[IN_FIELDS, 1:].mean() > 0.5  # the factors learned
    assert not moved[CONSTANT, 1:].any()  # the constant has no factors
    assert moved[CONSTANT, 0]  # but a linear weight
    if kind == "ffm":  # a namespace in no field: linear only
        seen = sorted({j for r, _, _ in rows for j, f, _ in r if j in OUTSIDE})
        assert seen and not moved[seen, 1:].any() and moved[seen, 0].mean() > 0.5
    pairs = [ref.pairs(r) for r, _, _ in rows]
    assert np.abs(pairs).max() > 0.05  # the interactions are a real part of the margins


@pytest.mark.parametrize("kind", ["fm", "ffm"])
def test_holdout_rows_are_scored_not_learned(kind: str) -> None:
    """Held-out rows (by a hash of the row) add to the holdout loss and move nothing: scored by
    the model itself, or by a frozen copy (a previous pass's model)."""
    rows = examples(kind, "logistic", seed=5)
    model = Model(spec_of(kind), config(kind, "adagrad", "logistic", learning_rate=0.2))
    ref = reference(model)
    batch = to_batch(kind, rows)
    held = np.zeros(len(rows), dtype=np.bool_)
    slots = np.array([j for r, _, _ in rows for j, _, _ in r], dtype=np.uint32)
    kernels.held_out_rows(batch.indptr, slots, batch.values, batch.labels, 4, held)
    assert 20 < held.sum() < 120
    first = model.learn(batch, holdout_period=4)
    for (r, y, iw), h in zip(rows, held, strict=True):
        ref.learn(r, y, iw, held_by=ref if h else None)
    assert_matches(model, ref, rows, kind)
    assert first.holdout_examples == ref.held == held.sum()
    assert first.examples == ref.learned == len(rows) - held.sum()
    assert first.holdout_loss == pytest.approx(ref.ho_loss_sum / ref.ho_weight_sum, rel=1e-6)

    frozen, frozen_ref = model.copy(), copy.deepcopy(ref)
    before = (ref.ho_loss_sum, ref.ho_weight_sum)
    second = model.learn(batch, holdout_period=4, holdout_model=frozen)
    for (r, y, iw), h in zip(rows, held, strict=True):
        ref.learn(r, y, iw, held_by=frozen_ref if h else None)
    assert_matches(model, ref, rows, kind)
    ho_loss = (ref.ho_loss_sum - before[0]) / (ref.ho_weight_sum - before[1])
    assert second.holdout_loss == pytest.approx(ho_loss, rel=1e-6)
    assert second.holdout_loss != pytest.approx(first.holdout_loss, rel=1e-3)
    scored = Progress()  # how training scores a pass's model: the same rows, the same loss
    frozen.score_holdout(batch, 4, scored)
    assert scored.holdout_examples == second.holdout_examples
    assert scored.holdout_loss == pytest.approx(second.holdout_loss, rel=1e-9)


def test_importance_weights_scale_every_step() -> None:
    """An example of weight 2 is not one of weight 1: the weights are part of what the
    reference comparison proves, so check they differ here, or it would prove nothing."""
    rows = examples("fm", "logistic", seed=9)
    assert len({iw for _, _, iw in rows}) > 2
    ones = [(r, y, 1.0) for r, y, _ in rows]
    cfg = config("fm", "sgd", "logistic", learning_rate=0.2)
    a, b = Model(spec_of("fm"), cfg), Model(spec_of("fm"), cfg)
    a.learn(to_batch("fm", rows))
    b.learn(to_batch("fm", ones))
    assert np.abs(a.weights - b.weights).reshape(64, -1)[:, 1:].max() > 1e-3


@pytest.mark.parametrize("kind", ["fm", "ffm"])
def test_the_start_is_drawn_from_the_seed(kind: str) -> None:
    """Factors start N(0, init_scale**2) from the spec's seed, linear weights at 0: the same
    seed gives the same bytes (before and after learning), another seed another start."""
    cfg = config(kind, "adagrad", "logistic", init_scale=0.05, rank=4)
    big = FeatureSpec(bits=12, seed=3, fields=FIELDS if kind == "ffm" else ())
    m = Model(big, cfg)
    grid = m.weights.reshape(big.size, m.width)
    assert not grid[:, 0].any()
    assert abs(grid[:, 1:].mean()) < 0.002 and grid[:, 1:].std() == pytest.approx(0.05, rel=0.03)
    assert Model(big, cfg).to_bytes() == m.to_bytes()
    other = Model(FeatureSpec(bits=12, seed=4, fields=big.fields), cfg)
    assert (other.weights != m.weights).mean() > 0.7

    rows = examples(kind, "logistic", seed=1)
    a, b, c = (Model(spec_of(kind, seed), cfg) for seed in (1, 1, 2))
    for model in (a, b, c):
        model.learn(to_batch(kind, rows))
    assert a.to_bytes() == b.to_bytes()
    assert a.to_bytes() != c.to_bytes()


@pytest.mark.parametrize("kind", ["fm", "ffm"])
def test_predict_is_the_margin_learning_saw(kind: str) -> None:
    """Each row's progressive loss is the loss of ``decision_function`` just before it is
    learned; learning rows one by one is learning them as one batch, to the bit."""
    rows = examples(kind, "logistic", seed=2, n=120)
    cfg = config(kind, "normalized", "logistic", learning_rate=0.5)
    whole, one = Model(spec_of(kind), cfg), Model(spec_of(kind), cfg)
    progress = whole.learn(to_batch(kind, rows))
    seen = Progress()
    losses = []
    for ex in rows:
        b = to_batch(kind, [ex])
        losses.append(ex[2] * loss_grad("logistic", float(one.decision_function(b)[0]), ex[1])[0])
        one.learn(b, progress=seen)
        assert one.predict(b)[0] == pytest.approx(1 / (1 + np.exp(-one.decision_function(b)[0])))
    assert whole.to_bytes() == one.to_bytes()
    assert seen.stats.tolist() == progress.stats.tolist()
    assert progress.stats[kernels.LOSS_SUM] == pytest.approx(sum(losses), rel=1e-12)


@pytest.mark.parametrize("kind", ["fm", "ffm"])
def test_a_step_too_steep_for_the_factors_stops_before_it(kind: str) -> None:
    """Values of 1e9 keep ``g x`` (the linear step) under ``MAX_STEP``, but a factor's gradient
    is ``g x (sum of v x)``: its square would overflow the float32 sum of squares, and leave a
    model that cannot be loaded. Learning stops at that row, as for a linear step too steep."""
    rows = examples(kind, "logistic", seed=6, n=20)
    r, y, iw = rows[7]
    r = [(j, f, x * 1e9 if f == 0 else x) for j, f, x in r]
    model = Model(spec_of(kind), config(kind, "adagrad", "logistic", learning_rate=0.2))
    before = model.copy()
    before.learn(to_batch(kind, rows[:7]))
    wrong = -np.sign(before.decision_function(to_batch(kind, [(r, y, iw)]))[0])  # |gradient| 1
    rows[7] = (r, float(wrong), iw)
    with pytest.raises(StepTooLarge) as err:
        model.learn(to_batch(kind, rows))
    assert err.value.row == 7
    assert model.to_bytes() == before.to_bytes()  # the rows before it, and nothing else
    assert Model.from_bytes(model.to_bytes()).examples_learned == 7
