"""Training in one process: the default holdout of several passes, and early stopping that keeps
the best pass's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal.data.reader import TextReader
from shoal.data.synthetic import generate_clicks
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec
from shoal.model.model import Model, Progress
from shoal.train.single import EarlyStop, TrainOptions, train


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("single") / "clicks.vw"
    generate_clicks(path, 3000)
    return path


def fresh() -> Model:
    return Model(FeatureSpec(bits=12))


def holdout_loss(model: Model, path: Path, period: int) -> float:
    prog = Progress()
    for batch in TextReader(spec=model.spec, threads=1).read(path):
        model.score_holdout(batch, period, prog)
    return prog.holdout_loss


def test_several_passes_hold_out_one_row_in_ten_by_default() -> None:
    assert TrainOptions().holdout_period == 0
    assert TrainOptions(passes=3).holdout_period == 10
    assert TrainOptions(passes=3).stops_early
    assert TrainOptions(passes=3, holdout=0.0).holdout_period == 0
    assert not TrainOptions(passes=3, holdout=0.0).stops_early
    assert not TrainOptions(passes=3, early_stop=0).stops_early
    with pytest.raises(ConfigError, match="early_stop"):
        TrainOptions(early_stop=-1)


def test_patience_counts_the_passes_in_a_row_without_a_better_loss() -> None:
    """A pass that does better again starts the count over, a NaN (nothing held out) counts for
    nothing, and a run resumed from the losses so far (``replay``) takes the same decisions."""
    losses = [0.5, 0.52, float("nan"), 0.45, 0.47, 0.45, 0.48]
    early = EarlyStop(patience=2)
    stops = [early.after_pass(i, loss, copy=lambda i=i: i) for i, loss in enumerate(losses)]
    assert stops == [False, False, False, False, False, True, True]
    assert (early.best_pass, early.best_model, early.best_loss) == (3, 3, 0.45)
    for judged in range(len(losses)):
        again = EarlyStop.replay(2, losses[:judged])
        assert again.best_pass == max((i for i in (0, 3) if i < judged), default=-1)
        rest = [again.after_pass(i, losses[i], copy=lambda: None) for i in range(judged, 7)]
        assert rest == stops[judged:]


def test_early_stopping_keeps_the_best_pass(clicks: Path) -> None:
    """On this set the second pass is the best on the held-out rows, the next two are worse:
    training stops after patience 2 is spent and returns the second pass's model, bit for bit."""
    model = fresh()
    report = train(model, [clicks], TrainOptions(passes=8, early_stop=2, parse_threads=1))
    losses = report.holdout_losses
    best = int(np.argmin(losses))
    assert report.best_pass == best == 1 and len(losses) == 4
    assert report.passes == 5 < 8  # pass 4 ran before pass 3's model was judged
    assert losses[best] < losses[0] and losses[best] < losses[-1]
    assert report.holdout_loss == losses[best]
    assert holdout_loss(model, clicks, 10) == pytest.approx(losses[best], rel=1e-9)
    same = fresh()  # best + 1 passes, the same holdout, no early stopping
    train(same, [clicks], TrainOptions(passes=best + 1, holdout=0.1, early_stop=0, parse_threads=1))
    assert same.to_bytes() == model.to_bytes()


def test_several_passes_never_end_worse_than_one(clicks: Path) -> None:
    one, many = fresh(), fresh()
    train(one, [clicks], TrainOptions(passes=1, holdout=0.1, parse_threads=1))
    train(many, [clicks], TrainOptions(passes=6, parse_threads=1))
    assert holdout_loss(many, clicks, 10) <= holdout_loss(one, clicks, 10)


def test_without_early_stopping_the_last_pass_is_kept(clicks: Path) -> None:
    model = fresh()
    report = train(model, [clicks], TrainOptions(passes=4, early_stop=0, parse_threads=1))
    assert report.passes == 4 and report.best_pass == -1 and report.holdout_losses == []
    assert report.holdout_examples > 0


def test_a_set_too_small_to_hold_anything_out_keeps_the_last_pass(tmp_path: Path) -> None:
    path = tmp_path / "tiny.vw"
    path.write_text("1 | a b\n-1 | c\n")
    model = fresh()
    report = train(model, [path], TrainOptions(passes=5, parse_threads=1))
    assert report.holdout_examples == 0 and report.best_pass == -1 and report.passes == 5
    assert model.examples_learned == 10
