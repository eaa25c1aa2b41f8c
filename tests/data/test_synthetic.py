import math
import pathlib
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from shoal.data.synthetic import generate_clicks
from shoal.errors import ConfigError

ROWS = 5_000
LINE = re.compile(
    r"(1|-1) \|c"
    + "".join(rf" {chr(ord('a') + f)}=(0|[1-9][0-9]*)" for f in range(26))
    + r" \|n"
    + "".join(rf" i{k}:(0|[1-9][0-9]*)(\.[0-9]{{0,3}}[1-9])?" for k in range(9))
)


def entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_same_arguments_give_the_same_bytes(tmp_path: pathlib.Path) -> None:
    first = generate_clicks(tmp_path / "a.vw", ROWS)
    second = generate_clicks(tmp_path / "b.vw", ROWS)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.optimal_log_loss == second.optimal_log_loss
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vw", "b.vw"]  # no temporary left


def test_seeds_change_the_rows_and_the_model(tmp_path: pathlib.Path) -> None:
    base = generate_clicks(tmp_path / "base.vw", ROWS).path.read_bytes()
    other_data = generate_clicks(tmp_path / "data.vw", ROWS, data_seed=2).path.read_bytes()
    other_model = generate_clicks(tmp_path / "model.vw", ROWS, model_seed=1).path.read_bytes()
    assert other_data != base
    # The features depend on data_seed alone; the model changes only the labels.
    strip = re.compile(rb"^-?1 ", re.MULTILINE)
    assert strip.sub(b"", other_model) == strip.sub(b"", base)
    assert other_model != base


def test_a_shorter_file_is_a_prefix_of_a_longer_one(tmp_path: pathlib.Path) -> None:
    short = generate_clicks(tmp_path / "short.vw", 1_000).path.read_bytes()
    long = generate_clicks(tmp_path / "long.vw", 70_000).path.read_bytes()  # > one block
    assert long.startswith(short)
    assert long.count(b"\n") == 70_000


def test_every_line_follows_the_grammar(tmp_path: pathlib.Path) -> None:
    clicks = generate_clicks(tmp_path / "clicks.vw", ROWS)
    lines = clicks.path.read_text().splitlines()
    assert len(lines) == clicks.rows == ROWS
    bad = [line for line in lines if not LINE.fullmatch(line)]
    assert bad == []
    assert all(len(line.split()) == 1 + 2 + 35 for line in lines)
    positives = sum(line.startswith("1 ") for line in lines)
    assert positives / ROWS == clicks.positive_rate


def test_rates_and_optimum(tmp_path: pathlib.Path) -> None:
    for model_seed in range(3):
        clicks = generate_clicks(tmp_path / "clicks.vw", ROWS, model_seed=model_seed)
        assert 0.2 <= clicks.positive_rate <= 0.3
        assert 0.3 < clicks.optimal_log_loss < entropy(clicks.positive_rate) - 0.1


@pytest.mark.parametrize(
    ("rows", "seeds"), [(0, {}), (10, {"model_seed": -1}), (10, {"data_seed": -2})]
)
def test_bad_arguments(tmp_path: pathlib.Path, rows: int, seeds: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="must be"):
        generate_clicks(tmp_path / "x.vw", rows, **seeds)


def one_hot(
    path: pathlib.Path, columns: dict[str, int], grow: bool
) -> tuple[Any, npt.NDArray[np.bool_]]:
    """Tokens of namespace c as indicator columns, numerics of namespace n as value columns."""
    from scipy import sparse

    rows, cols, values, labels = [], [], [], []
    for i, line in enumerate(path.read_text().splitlines()):
        label, categorical, numeric = line.split(" |")
        labels.append(label == "1")
        for token in categorical.split()[1:]:
            if grow:
                columns.setdefault(token, len(columns))
            if token in columns:
                rows.append(i)
                cols.append(columns[token])
                values.append(1.0)
        for token in numeric.split()[1:]:
            name, value = token.split(":")
            rows.append(i)
            cols.append(columns.setdefault(name, len(columns)))
            values.append(float(value))
    matrix = sparse.csr_array((values, (rows, cols)), shape=(len(labels), len(columns)))
    return matrix, np.array(labels)


@pytest.mark.slow
def test_logistic_regression_nearly_reaches_the_optimum(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    train = generate_clicks(tmp_path / "train.vw", 20_000, data_seed=1)
    test = generate_clicks(tmp_path / "test.vw", 20_000, data_seed=2)
    columns: dict[str, int] = {}
    x_train, y_train = one_hot(train.path, columns, grow=True)
    x_test, y_test = one_hot(test.path, columns, grow=False)
    # Numeric scales span 0.05 .. 20; bring them to unit variance so one C suits all weights.
    numeric = [columns[f"i{k}"] for k in range(9)]
    scale = np.ones(len(columns))
    scale[numeric] = 1.0 / x_train[:, numeric].toarray().std(axis=0)
    model = LogisticRegression(C=0.1, max_iter=2_000)
    model.fit(x_train.multiply(scale).tocsr(), y_train)
    loss = log_loss(y_test, model.predict_proba(x_test.multiply(scale).tocsr())[:, 1])
    # Learned from 20k rows it is a little worse than the truth; it cannot be much better.
    assert test.optimal_log_loss - 0.01 < loss < test.optimal_log_loss + 0.03
    assert loss < entropy(test.positive_rate) - 0.08


FM_LINE = re.compile(
    " ".join(rf"\|{ns}" + "".join(rf" {ns}{n}=(0|[1-9][0-9]*)" for n in range(4)) for ns in "uic")
)


def test_a_hidden_fm_writes_three_namespaces_of_categorical_fields(
    tmp_path: pathlib.Path,
) -> None:
    first = generate_clicks(tmp_path / "a.vw", ROWS, model="fm")
    assert (
        first.path.read_bytes()
        == generate_clicks(tmp_path / "b.vw", ROWS, model="fm").path.read_bytes()
    )
    lines = first.path.read_text().splitlines()
    bad = [line for line in lines if not re.fullmatch(r"-?1 " + FM_LINE.pattern, line)]
    assert bad == []
    assert 0.2 <= first.positive_rate <= 0.3
    assert 0.3 < first.optimal_log_loss < entropy(first.positive_rate) - 0.1
    # Its rank is part of the hidden model: the labels change, the features do not.
    other = generate_clicks(tmp_path / "c.vw", ROWS, model="fm", rank=2).path.read_bytes()
    strip = re.compile(rb"^-?1 ", re.MULTILINE)
    assert other != first.path.read_bytes()
    assert strip.sub(b"", other) == strip.sub(b"", first.path.read_bytes())


def fm_logits(path: pathlib.Path, model_seed: int, rank: int) -> npt.NDArray[np.float64]:
    """The hidden FM's logits of the rows of a file, pair by pair (no sum-of-squares trick)."""
    from shoal.data import synthetic

    linear, vectors = synthetic._fm_tables(model_seed, rank)
    starts = np.concatenate([[0], np.cumsum(synthetic._FM_VOCAB)[:-1]])
    hidden = synthetic._hidden("fm", model_seed, rank)
    bias = synthetic._bias(model_seed, hidden)
    out = []
    for line in path.read_text().splitlines():
        ranks = [int(tok.split("=")[1]) for tok in line.split() if "=" in tok]
        rows = starts + np.array(ranks)
        z = bias + linear[rows].sum()
        for f in range(len(rows)):
            for g in range(f + 1, len(rows)):
                z += float(vectors[rows[f]] @ vectors[rows[g]])
        out.append(z)
    return np.array(out)


def test_the_hidden_fm_reaches_the_reported_optimum(tmp_path: pathlib.Path) -> None:
    clicks = generate_clicks(tmp_path / "fm.vw", 20_000, model="fm", model_seed=3, rank=5)
    z = fm_logits(clicks.path, 3, 5)
    y = np.array([line.startswith("1 ") for line in clicks.path.read_text().splitlines()])
    losses = np.logaddexp(0.0, z) - y * z
    # The labels are drawn from these probabilities: their log loss is the mean entropy, the
    # reported optimum, within sampling error (the loss of one row has a spread of ~0.5).
    error = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - clicks.optimal_log_loss) < 4 * error
    p = 1.0 / (1.0 + np.exp(-z))
    assert abs(y.mean() - p.mean()) < 4 * math.sqrt(0.25 * 0.75 / len(y))


@pytest.mark.slow
def test_an_fm_learns_what_a_linear_model_cannot(tmp_path: pathlib.Path) -> None:
    from shoal.data.reader import TextReader
    from shoal.features.spec import FeatureSpec
    from shoal.model import metrics
    from shoal.model.config import LearnerConfig
    from shoal.model.model import Model
    from shoal.train.single import TrainOptions, train

    rows = 200_000
    train_set = generate_clicks(tmp_path / "train.vw", rows, model="fm", data_seed=1)
    test_set = generate_clicks(tmp_path / "test.vw", rows // 5, model="fm", data_seed=2)
    y = np.where(
        [line.startswith("1 ") for line in test_set.path.read_text().splitlines()], 1.0, -1.0
    )
    loss = {}
    for kind in ("linear", "fm"):
        model = Model(FeatureSpec(), LearnerConfig(model=kind))
        train(model, [train_set.path], TrainOptions())
        batches = TextReader(spec=model.spec).read(test_set.path)
        loss[kind] = metrics.log_loss(np.concatenate([model.predict_proba(b) for b in batches]), y)
    assert loss["fm"] < test_set.optimal_log_loss * 1.04
    assert loss["linear"] > test_set.optimal_log_loss * 1.1
