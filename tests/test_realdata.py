"""Accuracy on the real data sets in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.data.reader import TextReader
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.evaluate import evaluate
from shoal.model.model import Model
from shoal.train.single import TrainOptions, train

pytestmark = pytest.mark.realdata


def fit_and_score(train_file: Path, test_file: Path, cfg: LearnerConfig, passes: int = 1) -> dict:
    model = Model(FeatureSpec(bits=18), cfg)
    train(model, [train_file], TrainOptions(passes=passes))
    return evaluate(model, TextReader(spec=model.spec).read(test_file))


@pytest.mark.parametrize("optimizer", ["adagrad", "ftrl", "sgd"])
def test_a9a(data_dir: Path, optimizer: str) -> None:
    result = fit_and_score(
        data_dir / "a9a" / "a9a", data_dir / "a9a" / "a9a.t", LearnerConfig(optimizer=optimizer)
    )
    assert result["examples"] == 16281
    assert result["accuracy"] >= 0.845
    assert result["auc"] >= 0.90


def test_rcv1_small(data_dir: Path) -> None:
    d = data_dir / "vw_rcv1_small"
    result = fit_and_score(
        d / "rcv1_small.train.vw", d / "rcv1_small.test.vw", LearnerConfig(), passes=10
    )
    assert result["examples"] == 500
    # 0.874-0.878 is what Vowpal Wabbit and a fully converged scikit-learn LogisticRegression
    # reach on this set (see BENCHMARKS.md); 0.90 is out of reach of a linear model here.
    assert result["accuracy"] >= 0.87


def test_agaricus_is_separable(data_dir: Path) -> None:
    d = data_dir / "agaricus"
    result = fit_and_score(
        d / "agaricus.txt.train", d / "agaricus.txt.test", LearnerConfig(), passes=5
    )
    assert result["accuracy"] >= 0.99
