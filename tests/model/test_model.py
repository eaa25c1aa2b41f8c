"""The conformance suite every model configuration passes, and the model file's guarantees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from shoal.data.batch import Batch
from shoal.errors import ConfigError, DataError, ModelFileError, StepTooLarge
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model

CONFIGS = [
    LearnerConfig(loss=loss, optimizer=opt, learning_rate=0.1 if loss == "squared" else 0.5)  # type: ignore[arg-type]
    for loss in ("logistic", "squared", "hinge")
    for opt in ("normalized", "sgd", "adagrad", "ftrl")
] + [
    LearnerConfig(loss="multiclass", classes=3, optimizer=opt)  # type: ignore[arg-type]
    for opt in ("normalized", "sgd", "adagrad", "ftrl")
]
IDS = [f"{c.loss}-{c.optimizer}" for c in CONFIGS]


def random_batch(cfg: LearnerConfig, seed: int, n: int = 200, bits: int = 10) -> Batch:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        k = int(rng.integers(1, 12))
        idx = rng.choice(1 << bits, size=k, replace=False).tolist()
        rows.append((idx, rng.normal(size=k).round(4).tolist()))
        if cfg.loss == "multiclass":
            labels.append(float(rng.integers(1, cfg.classes + 1)))
        elif cfg.loss == "squared":
            labels.append(float(rng.normal()))
        else:
            labels.append(float(rng.choice([-1.0, 1.0])))
    weights = rng.choice([1.0, 0.5, 3.0], size=n).tolist()
    return Batch.from_rows(rows, labels=labels, weights=weights)


def fresh(cfg: LearnerConfig) -> Model:
    return Model(FeatureSpec(bits=10), cfg)


def assert_same_state(a: Model, b: Model) -> None:
    assert np.array_equal(a.weights, b.weights)
    assert a.state.keys() == b.state.keys()
    for k in a.state:
        assert np.array_equal(a.state[k], b.state[k]), k
    assert np.array_equal(a.counters, b.counters)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_batch_equals_row_by_row(cfg: LearnerConfig) -> None:
    batch = random_batch(cfg, 1)
    whole, rowwise = fresh(cfg), fresh(cfg)
    whole.learn(batch)
    for i in range(len(batch)):
        rowwise.learn(batch.slice(i, i + 1))
    assert_same_state(whole, rowwise)
    assert np.count_nonzero(whole.weights) > 0


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_save_load_round_trip(cfg: LearnerConfig, tmp_path: Path) -> None:
    batch = random_batch(cfg, 2)
    m = fresh(cfg)
    m.learn(batch)
    m.save(tmp_path / "m.shoal")
    back = Model.load(tmp_path / "m.shoal")
    assert back.spec == m.spec and back.config == m.config
    assert_same_state(m, back)
    assert np.array_equal(m.predict(batch), back.predict(batch))


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_continued_training_equals_one_run(cfg: LearnerConfig, tmp_path: Path) -> None:
    a, b = random_batch(cfg, 3), random_batch(cfg, 4)
    one = fresh(cfg)
    one.learn(a)
    one.learn(b)
    first = fresh(cfg)
    first.learn(a)
    first.save(tmp_path / "a.shoal")
    resumed = Model.load(tmp_path / "a.shoal")
    resumed.learn(b)
    assert_same_state(one, resumed)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_feature_order_does_not_matter(cfg: LearnerConfig) -> None:
    batch = random_batch(cfg, 5)
    rng = np.random.default_rng(0)
    perm_idx = batch.indices.copy()
    perm_val = batch.values.copy()
    for i in range(len(batch)):
        a, b = batch.indptr[i], batch.indptr[i + 1]
        order = rng.permutation(b - a) + a
        perm_idx[a:b], perm_val[a:b] = batch.indices[order], batch.values[order]
    shuffled = Batch(
        indptr=batch.indptr,
        indices=perm_idx,
        values=perm_val,
        labels=batch.labels,
        weights=batch.weights,
        tag_offsets=batch.tag_offsets,
        tag_bytes=batch.tag_bytes,
        lines=batch.lines,
    )
    x, y = fresh(cfg), fresh(cfg)
    x.learn(batch)
    y.learn(shuffled)
    # distinct indices within a row: each coordinate gets the same update in any order
    np.testing.assert_allclose(x.weights, y.weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(x.decision_function(batch), y.decision_function(shuffled), atol=1e-6)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_unseen_features_do_not_change_the_margin(cfg: LearnerConfig) -> None:
    m = fresh(cfg)
    seen = Batch.from_rows([([1, 2, 3], [1.0, 1.0, 1.0])] * 20, labels=[1.0] * 20)
    m.learn(seen)
    plus_unseen = Batch.from_rows([([1, 2, 3, 900], [1.0, 1.0, 1.0, 5.0])])
    np.testing.assert_array_equal(m.decision_function(seen)[:1], m.decision_function(plus_unseen))


def test_unlabeled_rows_are_not_learned() -> None:
    m = fresh(LearnerConfig())
    prog = m.learn(Batch.from_rows([([1], [1.0])]))
    assert prog.unlabeled == 1 and prog.examples == 0
    assert not m.weights.any()


def test_holdout_rows_are_predicted_not_learned() -> None:
    cfg = LearnerConfig()
    batch = random_batch(cfg, 6, n=400)
    m = fresh(cfg)
    prog = m.learn(batch, holdout_period=4)
    assert 50 < prog.holdout_examples < 150
    assert prog.examples + prog.holdout_examples == 400
    assert m.examples_learned == prog.examples
    # the same rows are held out again: a second pass holds out exactly as many
    prog2 = m.learn(batch, holdout_period=4)
    assert prog2.holdout_examples == prog.holdout_examples


@pytest.mark.parametrize(
    ("cfg", "label"),
    [
        (LearnerConfig(loss="logistic"), 2.0),
        (LearnerConfig(loss="hinge"), 0.5),
        (LearnerConfig(loss="multiclass", classes=3), 4.0),
        (LearnerConfig(loss="multiclass", classes=3), 1.5),
        (LearnerConfig(loss="multiclass", classes=3), 0.0),
    ],
)
def test_bad_labels_name_the_line(cfg: LearnerConfig, label: float) -> None:
    batch = Batch.from_rows([([1], [1.0]), ([2], [1.0])], labels=[1.0, label])
    with pytest.raises(DataError, match="line 2 of"):
        fresh(cfg).learn(batch)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_a_step_too_large_stops_before_the_row_and_keeps_the_model_finite(
    cfg: LearnerConfig,
) -> None:
    """A value of 1e30 (finite in float32) would make the squared gradients overflow."""
    good = random_batch(cfg, 3, n=5)
    huge = Batch.from_rows([([7, 8], [1.0, 1e30])], labels=[good.labels[0]])
    batch = Batch.concat([good, huge, good])
    model, reference = fresh(cfg), fresh(cfg)
    with pytest.raises(StepTooLarge, match=r"line 1 of <input>: .*step beyond 1e\+15") as info:
        model.learn(batch)
    assert info.value.row == 5
    reference.learn(good)
    assert_same_state(model, reference)  # the five rows above it, and nothing else
    assert all(np.isfinite(t).all() for t in (model.weights, *model.state.values()))


def test_a_diverging_learner_stops_with_an_error() -> None:
    """Squared loss, plain SGD at rate 0.5 on values near 1000: each step overshoots."""
    rows = [([1], [1000.0 + i]) for i in range(200)]
    batch = Batch.from_rows(rows, labels=[5000.0 + 5 * i for i in range(200)])
    model = fresh(LearnerConfig(loss="squared", optimizer="sgd", learning_rate=0.5))
    with pytest.raises(StepTooLarge) as info:
        model.learn(batch)
    assert 0 < info.value.row < 200
    assert np.isfinite(model.weights).all()


def test_multiclass_predicts_classes_and_probabilities() -> None:
    cfg = LearnerConfig(loss="multiclass", classes=3)
    rows = [([10 * c + 1], [1.0]) for c in range(3)] * 30
    batch = Batch.from_rows(rows, labels=[1.0, 2.0, 3.0] * 30)
    m = fresh(cfg)
    m.learn(batch)
    assert m.predict(batch)[:3].tolist() == [1, 2, 3]
    proba = m.predict_proba(batch)
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


# -- model files ----------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    m = fresh(LearnerConfig(optimizer="ftrl"))
    m.learn(random_batch(m.config, 7))
    m.save(tmp_path / "m.shoal")
    return tmp_path / "m.shoal"


def test_truncated_file_is_refused(saved: Path) -> None:
    data = saved.read_bytes()
    for cut in (0, 5, 100, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=str(saved)):
            Model.load(saved)


def test_a_flipped_bit_in_a_tensor_is_refused(saved: Path) -> None:
    """safetensors has no checksum; the metadata's CRC-32 of the data section catches it."""
    data = bytearray(saved.read_bytes())
    for at in (len(data) - 1, len(data) - 4000, len(data) // 2 + 100):
        damaged = data.copy()
        damaged[at] ^= 0x10  # a weight, a state value or a counter, still finite
        saved.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError, match="damaged: its tensors do not match"):
            Model.load(saved)


def test_a_file_written_before_checksums_still_loads(saved: Path) -> None:
    model = Model.load(saved)
    n = int.from_bytes(saved.read_bytes()[:8], "little")
    header = json.loads(saved.read_bytes()[8 : 8 + n])
    del header["__metadata__"]["data_crc32"]
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    saved.write_bytes(len(raw).to_bytes(8, "little") + raw + saved.read_bytes()[8 + n :])
    assert Model.load(saved).to_bytes() == model.to_bytes()


def test_garbage_file_is_refused(saved: Path) -> None:
    saved.write_bytes(b"not a model at all, just some text\n" * 10)
    with pytest.raises(ModelFileError):
        Model.load(saved)


def test_foreign_safetensors_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "other.safetensors"
    p.write_bytes(st_save({"x": np.zeros(3, dtype=np.float32)}))
    with pytest.raises(ModelFileError, match="not a shoal model"):
        Model.load(p)


def _rewrite(saved: Path, tensors: dict[str, np.ndarray], meta_patch: dict[str, str]) -> None:
    payload = saved.read_bytes()
    n = int.from_bytes(payload[:8], "little")
    meta = json.loads(payload[8 : 8 + n])["__metadata__"]
    meta.update(meta_patch)
    meta.pop("data_crc32", None)  # made by another writer: the checks after the checksum's run
    saved.write_bytes(st_save(tensors, metadata=meta))


def test_wrong_shapes_and_tensors_are_refused(saved: Path) -> None:
    m = Model.load(saved)
    good = {"weights": m.weights.reshape(-1, 1), "counters": m.counters}
    good.update({k: v.reshape(-1, 1) for k, v in m.state.items()})
    _rewrite(saved, {**good, "weights": np.zeros((10, 1), dtype=np.float32)}, {})
    with pytest.raises(ModelFileError, match="weights"):
        Model.load(saved)
    _rewrite(saved, {k: v for k, v in good.items() if k != "ftrl_z"}, {})
    with pytest.raises(ModelFileError, match="ftrl_z"):
        Model.load(saved)
    bad = dict(good)
    bad["weights"] = good["weights"].astype(np.float64)
    _rewrite(saved, bad, {})
    with pytest.raises(ModelFileError, match="float32"):
        Model.load(saved)
    nan = dict(good)
    nan["weights"] = good["weights"].copy()
    nan["weights"][3] = np.nan
    _rewrite(saved, nan, {})
    with pytest.raises(ModelFileError, match="NaN"):
        Model.load(saved)
    _rewrite(saved, good, {"spec": '{"bits": 99}'})
    with pytest.raises(ModelFileError, match="bits"):
        Model.load(saved)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        Model.load(tmp_path / "nope.shoal")


def test_wrong_kinds_of_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="spec: must be a FeatureSpec"):
        Model("nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="classes: is for the multiclass loss"):
        LearnerConfig(classes=5)
    model = fresh(LearnerConfig())
    for label in ("1", "yes"):
        with pytest.raises(ConfigError, match="labels: must be numbers"):
            model.learn_one({"a": 1.0}, label)  # type: ignore[arg-type]
    model.learn_one({"a": 1.0}, None)  # type: ignore[arg-type]  # unlabeled: not learned
    assert model.examples_learned == 0
