"""The shared weights: what the learner writes in place, every reader sees; a swap is a new
segment that readers map at their next batch; the weights exist once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal import FeatureSpec, LearnerConfig, Model
from shoal.serve.cluster.shmweights import Control, Publisher, Reader
from shoal.serve.errors import Unavailable
from shoal.serve.reading.records import parse_lines

LINES = ["1 |u a b |v x:0.5", "-1 |u c", "1 |v x:2 y"]


def trained(lines: list[str], kind: str = "linear") -> Model:
    """A linear model (-q uv), or an FM or FFM (fields u and v) of rank 4, taught ``lines``."""
    spec = FeatureSpec(bits=8, interactions=("uv",) if kind != "ffm" else (),
                       fields=("u", "v") if kind == "ffm" else ())  # fmt: skip
    rank = 4 if kind != "linear" else 0
    model = Model(spec, LearnerConfig(loss="logistic", model=kind, rank=rank))
    model.learn(parse_lines(model.spec, lines))
    return model


@pytest.fixture
def rundir(tmp_path: Path) -> Path:
    Control.create(tmp_path / "control")
    return tmp_path


@pytest.mark.parametrize("kind", ["linear", "fm", "ffm"])  # the header says how to read them
def test_readers_see_the_learners_updates_in_place(rundir: Path, kind: str) -> None:
    model = trained(LINES, kind)
    expected = model.copy()
    publisher = Publisher(rundir)
    reader = Reader(rundir)
    with pytest.raises(Unavailable, match="not published yet"):
        reader.current()
    publisher.publish(model, version=1, applied_seq=3)
    shared, version, applied = reader.current()
    batch = parse_lines(model.spec, LINES)
    assert (version, applied) == (1, 3)
    assert np.array_equal(shared.predict(batch), expected.predict(batch))
    assert not shared.weights.flags.writeable  # a front end cannot write the weights

    more = parse_lines(model.spec, ["-1 |u a b", "1 |u c |v y"])
    model.learn(more)  # the learner's update lands in the segment
    expected.learn(more)
    publisher.publish(model, version=1, applied_seq=5)
    again, _, applied = reader.current()
    assert again is shared and applied == 5  # no new mapping for an update
    assert np.array_equal(shared.predict(batch), expected.predict(batch))
    assert shared.examples_learned == expected.examples_learned


def test_a_swap_is_a_new_segment_and_the_old_one_goes(rundir: Path) -> None:
    publisher = Publisher(rundir)
    reader = Reader(rundir)
    first, second = trained(LINES), trained(LINES[:1])
    publisher.publish(first, version=1, applied_seq=3)
    old, _, _ = reader.current()
    publisher.publish(second, version=2, applied_seq=3)
    assert sorted(p.name for p in rundir.glob("w*")) == ["w00000002"]
    new, version, _ = reader.current()
    batch = parse_lines(first.spec, LINES)
    assert version == 2 and new is not old
    assert np.array_equal(new.predict(batch), trained(LINES[:1]).predict(batch))
    assert np.array_equal(old.predict(batch), trained(LINES).predict(batch))  # still mapped


def test_a_restarted_learner_goes_on_from_the_last_generation(rundir: Path) -> None:
    Publisher(rundir).publish(trained(LINES), version=4, applied_seq=3)
    reader = Reader(rundir)
    reader.current()
    restarted = Publisher(rundir)  # a new learner process, same run directory
    restarted.publish(trained(LINES[:2]), version=5, applied_seq=3)
    assert reader.current()[1] == 5 and reader.generation == 2


def test_the_weights_exist_once(rundir: Path) -> None:
    """The segment holds the weights and counters, not the optimizer's state; a reader's
    weights are a view of the file, not a copy."""
    model = Model(FeatureSpec(bits=16), LearnerConfig(optimizer="adagrad"))
    Publisher(rundir).publish(model, version=1, applied_seq=0)
    size = (rundir / "w00000001").stat().st_size
    assert model.weights.nbytes <= size < model.weights.nbytes + 8192
    shared, _, _ = Reader(rundir).current()
    assert not shared.weights.flags.owndata and shared.state == {}


def test_a_write_that_died_half_way_is_repaired_by_the_next(rundir: Path) -> None:
    control = Control(rundir / "control", writable=True)
    control._map[8:16] = (7).to_bytes(8, "little")  # an odd counter: a writer died mid-write
    with pytest.raises(Unavailable, match="being rewritten"):
        Control(rundir / "control").read()
    control.write(3, 2, 10, 99)
    assert Control(rundir / "control").read() == (3, 2, 10, 99)
