"""Merging a round's results: order-free, exact where one task speaks, weighted where many do;
for linear models and for FMs and FFMs (whose factors merge as AdaGrad's weights do)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from shoal.data.reader import TextReader
from shoal.data.synthetic import generate_clicks
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.kernels import N_COUNTERS
from shoal.model.model import Model
from shoal.model.optimizers import state_tensors
from shoal.train.merge import merge
from shoal.train.plan import Shard, plan
from shoal.train.task import Task, TaskResult, TaskSpec, run_task
from tests.train.models import KINDS, model_of

OPTIMIZERS = ["normalized", "sgd", "adagrad", "ftrl"]
EXAMPLES = 1  # index of the example count in Model.counters


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Shard]:
    path = tmp_path_factory.mktemp("merge") / "clicks.vw"
    generate_clicks(path, 3000)
    out = plan([path], 5)
    assert len(out) == 5
    return out


def new_model(optimizer: str, kind: str) -> Model:
    """A small model (tasks collide on slots); FMs and FFMs of rank 2."""
    # l1 makes FTRL keep some weights at exactly zero, which its merge must respect
    l1 = 0.5 if optimizer == "ftrl" else 0.0
    return model_of(kind, bits=12, rank=2, optimizer=optimizer, l1=l1)


def round_of(
    optimizer: str, shards: list[Shard], kind: str = "linear"
) -> tuple[Model, list[TaskResult]]:
    """A base model that already learned shard 0, and the results of tasks on the others."""
    base = new_model(optimizer, kind)
    run = run_task(Task(0, shards[0], TaskSpec()), base)
    base = merge(base, [run])
    return base, [run_task(Task(1, s, TaskSpec()), base) for s in shards[1:]]


def learned_alone(base: Model, shard: Shard) -> Model:
    """What one process learning ``shard`` from ``base`` ends with."""
    model = base.copy()
    reader = TextReader(spec=model.spec)
    for batch in reader.read(
        shard.path, start=shard.start, end=shard.end, first_line=shard.first_line
    ):
        model.learn(batch)
    return model


def linear_coords(model: Model) -> np.ndarray:
    """Which coordinates of ``model.weights`` are linear weights (the others are factors)."""
    n = len(model.weights)
    return np.arange(n) % model.width == 0 if model.config.factorized else np.ones(n, dtype=bool)


def ftrl_weights(model: Model, z: np.ndarray, n: np.ndarray) -> np.ndarray:
    """FTRL-Proximal's closed form (McMahan et al., 2013) of the weights given ``z`` and ``n``."""
    cfg = model.config
    z64, n64 = z.astype(np.float64), n.astype(np.float64)
    w = -(z64 - np.sign(z64) * cfg.l1) / ((cfg.ftrl_beta + np.sqrt(n64)) / cfg.rate + cfg.l2)
    return np.where(np.abs(z64) <= cfg.l1, 0.0, w)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_task_is_a_pure_function_of_model_and_shard(
    optimizer: str, shards: list[Shard], kind: str
) -> None:
    """What lets the coordinator retry and duplicate tasks without changing the model."""
    base, results = round_of(optimizer, shards, kind)
    again = run_task(Task(1, shards[2], TaskSpec()), base)
    first = results[1]
    assert np.array_equal(again.changed, first.changed)
    assert again.weights.tobytes() == first.weights.tobytes()
    assert all(again.state[k].tobytes() == v.tobytes() for k, v in first.state.items())
    assert again.counters.tobytes() == first.counters.tobytes()
    assert len(first.changed) > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_merge_does_not_depend_on_the_order_of_results(
    optimizer: str, shards: list[Shard], kind: str
) -> None:
    base, results = round_of(optimizer, shards, kind)
    before = base.to_bytes()
    expected = merge(base, results).to_bytes()
    orders = list(itertools.permutations(results))
    for order in random.Random(0).sample(orders, 8):
        assert merge(base, list(order)).to_bytes() == expected
    assert base.to_bytes() == before  # the base is left alone
    assert expected != before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_merging_one_result_gives_that_tasks_model(
    optimizer: str, shards: list[Shard], kind: str
) -> None:
    base, results = round_of(optimizer, shards, kind)
    alone = learned_alone(base, shards[3])
    merged = merge(base, [results[2]])
    assert np.array_equal(merged.counters, alone.counters)
    assert np.array_equal(merged.weights, alone.weights)
    for name in state_tensors(optimizer, base.config.factorized):  # SGD's factors' s1 too
        if name != "ftrl_z":
            assert np.array_equal(merged.state[name], alone.state[name]), name
    if optimizer == "ftrl":
        # z is rebuilt from the merged weight: it need not be the task's bits, but it must
        # give the same weights through FTRL's closed form; factors have no z of their own
        lin = linear_coords(base)
        w = ftrl_weights(merged, merged.state["ftrl_z"], merged.state["ftrl_n"])
        np.testing.assert_allclose(w[lin], alone.weights[lin], rtol=1e-5, atol=1e-7)
        assert np.array_equal(merged.state["ftrl_z"][~lin], alone.state["ftrl_z"][~lin])


def test_merging_nothing_changes_nothing(shards: list[Shard]) -> None:
    base, _ = round_of("adagrad", shards)
    assert merge(base, []).to_bytes() == base.to_bytes()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_counters_add_up_and_untouched_coordinates_keep_their_values(
    optimizer: str, shards: list[Shard], kind: str
) -> None:
    base, results = round_of(optimizer, shards, kind)
    merged = merge(base, results)
    assert merged.counters.shape == (N_COUNTERS,)
    np.testing.assert_array_equal(
        merged.counters, base.counters + np.sum([r.counters for r in results], axis=0)
    )
    assert merged.examples_learned == base.examples_learned + sum(r.rows for r in results)
    touched = np.zeros(len(base.weights), dtype=bool)
    for r in results:
        touched[r.changed] = True
    assert 0 < touched.sum() < len(touched)
    assert np.array_equal(merged.weights[~touched], base.weights[~touched])
    for k, v in base.state.items():
        assert np.array_equal(merged.state[k][~touched], v[~touched])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_coordinate_takes_a_weighted_average_of_the_tasks_that_changed_it(
    optimizer: str, shards: list[Shard], kind: str
) -> None:
    base, results = round_of(optimizer, shards, kind)
    merged = merge(base, results)
    names = state_tensors(optimizer, base.config.factorized)
    key = names[0] if names else None
    owners: dict[int, list[tuple[TaskResult, int]]] = {}
    for r in results:
        for pos, slot in enumerate(r.changed.tolist()):
            owners.setdefault(slot, []).append((r, pos))
    alone = shared = 0
    for slot, tasks in owners.items():
        new = [float(r.weights[pos]) for r, pos in tasks]
        if optimizer == "normalized":  # each task's weight on the merged (largest) scale
            top = float(merged.state["feature_scale"][slot])
            scales = [float(r.state["feature_scale"][pos]) for r, pos in tasks]
            assert top == max([*scales, float(base.state["feature_scale"][slot])])
            new = [w * (s / top if s > 0 else 1.0) for w, s in zip(new, scales, strict=True)]
        got = float(merged.weights[slot])
        if len(tasks) == 1:
            alone += 1
            assert got == pytest.approx(new[0], rel=1e-6, abs=1e-9)
        else:
            shared += 1
            spread = 1e-6 * max(abs(x) for x in new) + 1e-9
            assert min(new) - spread <= got <= max(new) + spread
        if key:  # the sums of squared gradients add up (SGD's: its factors')
            b = float(base.state[key][slot])
            total = b + sum(float(r.state[key][pos]) - b for r, pos in tasks)
            assert float(merged.state[key][slot]) == pytest.approx(total, rel=1e-6)
    assert alone > 0 and shared > 0
    if optimizer == "ftrl":
        lin = linear_coords(base)
        w = ftrl_weights(merged, merged.state["ftrl_z"], merged.state["ftrl_n"])
        np.testing.assert_allclose(w[lin], merged.weights[lin], rtol=1e-5, atol=1e-7)
        assert (merged.weights[lin] == 0).any() and (merged.weights[lin] != 0).any()
        assert not merged.state["ftrl_z"][~lin].any()  # the learner never gives factors a z


def result(
    shard: int, slots: list[int], weights: list[float], examples: int, **state: list[float]
) -> TaskResult:
    counters = np.zeros(N_COUNTERS)
    counters[EXAMPLES] = examples
    return TaskResult(
        shard=shard,
        step=0,
        changed=np.array(slots, dtype=np.int64),
        weights=np.array(weights, dtype=np.float32),
        state={k: np.array(v, dtype=np.float32) for k, v in state.items()},
        counters=counters,
        rows=examples,
    )


def test_sgd_weighs_tasks_by_their_examples() -> None:
    base = Model(FeatureSpec(bits=4), LearnerConfig(optimizer="sgd"))
    base.weights[3] = 1.0
    merged = merge(base, [result(0, [3, 5], [2.0, 4.0], 30), result(1, [3], [0.0], 10)])
    assert merged.weights[3] == pytest.approx((30 * 2.0 + 10 * 0.0) / 40)
    assert merged.weights[5] == 4.0  # only task 0 changed it
    assert merged.examples_learned == 40


def test_adagrad_weighs_tasks_by_their_squared_gradients() -> None:
    base = Model(FeatureSpec(bits=4), LearnerConfig(optimizer="adagrad"))
    base.state["sum_sq_grad"][3] = 1.0
    merged = merge(
        base,
        [
            result(0, [3], [2.0], 5, sum_sq_grad=[4.0]),  # increment 3
            result(1, [3], [-1.0], 500, sum_sq_grad=[2.0]),  # increment 1
        ],
    )
    assert merged.weights[3] == pytest.approx((3 * 2.0 + 1 * -1.0) / 4)
    assert merged.state["sum_sq_grad"][3] == 5.0


def test_normalized_takes_the_largest_scale_and_adds_the_normalizer_sums() -> None:
    """A weight learned under a smaller feature scale is put on the merged one, as the update
    rescales a weight when a larger value shows up (w * N_old / N_new at power_t 0.5)."""
    base = Model(FeatureSpec(bits=4), LearnerConfig())
    base.weights[3], base.state["sum_sq_grad"][3], base.state["feature_scale"][3] = 1.0, 1.0, 2.0
    a = result(0, [3], [2.0], 5, sum_sq_grad=[4.0], feature_scale=[2.0])  # increment 3
    b = result(1, [3], [-1.0], 7, sum_sq_grad=[2.0], feature_scale=[8.0])  # increment 1
    a.counters[2:] = [10.0, 5.0]  # S and T of task a
    b.counters[2:] = [3.0, 7.0]
    merged = merge(base, [b, a])
    # on scale 8: base 1 -> 0.25, task a 2 -> 0.5, task b -1 (its own scale)
    assert merged.weights[3] == pytest.approx(0.25 + (3 * (0.5 - 0.25) + 1 * (-1.0 - 0.25)) / 4)
    assert merged.state["feature_scale"][3] == 8.0
    assert merged.state["sum_sq_grad"][3] == 5.0
    assert merged.counters[2:].tolist() == [13.0, 12.0]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_factors_weigh_tasks_by_their_squared_gradients_under_every_optimizer(
    optimizer: str,
) -> None:
    """Factors learn with AdaGrad whatever the optimizer: a factor is averaged with each task's
    increment of ``s1`` as its weight, not by examples, and the increments add up (SGD's too);
    the slot's linear weight merges as its optimizer's do, and FTRL's ``z`` and the normalized
    scale stay off the factors."""
    base = model_of("fm", bits=4, rank=2, optimizer=optimizer)
    s1 = state_tensors(optimizer, True)[0]
    # slot 3: its linear weight is coordinate 9, its factors 10 and 11
    base.weights[9:12] = [1.0, 0.5, -0.5]
    base.state[s1][9:12] = 1.0
    lin_s1 = ([1.0], [1.0]) if optimizer == "sgd" else ([4.0], [2.0])  # increments 3 and 1
    a = {s1: [*lin_s1[0], 4.0]}  # factor: increment 3, 10 examples
    b = {s1: [*lin_s1[1], 2.0]}  # factor: increment 1, 30 examples
    if optimizer == "normalized":
        base.state["feature_scale"][9] = 2.0
        a["feature_scale"], b["feature_scale"] = [2.0, 0.0], [8.0, 0.0]
    if optimizer == "ftrl":
        a["ftrl_z"], b["ftrl_z"] = [-3.0, 0.0], [1.0, 0.0]
    merged = merge(
        base, [result(0, [9, 10], [2.0, 1.5], 10, **a), result(1, [9, 10], [0.0, -0.5], 30, **b)]
    )
    assert merged.weights[10] == pytest.approx(0.5 + (3 * (1.5 - 0.5) + 1 * (-0.5 - 0.5)) / 4)
    assert merged.state[s1][10] == 5.0
    assert merged.weights[11] == -0.5  # no task changed it
    linear = {
        "sgd": (10 * 2.0 + 30 * 0.0) / 40,  # by examples
        "adagrad": 1.0 + (3 * (2.0 - 1.0) + 1 * (0.0 - 1.0)) / 4,
        "ftrl": 1.0 + (3 * (2.0 - 1.0) + 1 * (0.0 - 1.0)) / 4,
        "normalized": 0.25 + (3 * (0.5 - 0.25) + 1 * (0.0 - 0.25)) / 4,  # on scale 8
    }[optimizer]
    assert merged.weights[9] == pytest.approx(linear)
    if optimizer == "normalized":
        assert merged.state["feature_scale"][9:11].tolist() == [8.0, 0.0]
    if optimizer == "ftrl":
        assert merged.state["ftrl_z"][9] != 0.0  # the linear weight's, from its closed form
        assert merged.state["ftrl_z"][10] == 0.0


def test_a_change_too_small_for_the_float32_sum_is_kept_by_examples() -> None:
    """Late in a run a factor's gradient can be too small to change its float32 ``s1`` yet
    move the factor: with no increment to weigh by, the tasks' changes average by examples."""
    base = model_of("fm", bits=4, rank=2, optimizer="adagrad")
    base.weights[10], base.state["sum_sq_grad"][10] = 0.5, 100.0
    merged = merge(
        base,
        [
            result(0, [10], [0.6], 10, sum_sq_grad=[100.0]),
            result(1, [10], [0.2], 30, sum_sq_grad=[100.0]),
        ],
    )
    assert merged.weights[10] == pytest.approx(0.5 + (10 * 0.1 + 30 * -0.3) / 40)
    assert merged.state["sum_sq_grad"][10] == 100.0


def test_ftrl_averages_the_z_of_a_zero_weight_whose_n_did_not_grow_by_examples() -> None:
    """FTRL's z moves with every gradient, n only when the square survives float32: a zero
    weight's z, with no increment of n to weigh by, is the tasks' z averaged by examples."""
    base = model_of("linear", bits=4, optimizer="ftrl", l1=1.0)
    base.state["ftrl_n"][3], base.state["ftrl_z"][3] = 100.0, 0.5  # |z| <= l1: the weight is 0
    merged = merge(
        base,
        [
            result(0, [3], [0.0], 10, ftrl_n=[100.0], ftrl_z=[0.7]),
            result(1, [3], [0.0], 30, ftrl_n=[100.0], ftrl_z=[0.9]),
        ],
    )
    assert merged.weights[3] == 0.0
    assert merged.state["ftrl_z"][3] == pytest.approx((10 * 0.7 + 30 * 0.9) / 40)
    assert merged.state["ftrl_n"][3] == 100.0
