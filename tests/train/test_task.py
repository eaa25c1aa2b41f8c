"""A task on a range of a file whose lines the plan did not count: a bad record is still named
by its true line, whether it stops the task or is skipped."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shoal.errors import DataError
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from shoal.train.plan import Shard, plan
from shoal.train.task import Task, TaskSpec, run_task


@pytest.fixture
def bad_file(tmp_path: Path) -> tuple[Path, int]:
    rng = random.Random(1)
    lines = [
        f"{rng.choice('01')} |a x{rng.randrange(50)} y:{rng.random():.3f}\n" for _ in range(900)
    ]
    bad = 700  # 0-based: line 701 of the file
    lines[bad] = "abc |a x\n"
    path = tmp_path / "bad.vw"
    path.write_text("".join(lines))
    return path, bad + 1


def shard_with(path: Path, line: int) -> Shard:
    data = path.read_bytes()
    offset = sum(len(x) for x in data.splitlines(keepends=True)[: line - 1])
    shards = plan([path], 4)
    shard = next(s for s in shards if s.start <= offset and (s.end is None or offset < s.end))
    assert shard.start > 0 and shard.first_line is None  # a cut whose lines were not counted
    return shard


def test_a_bad_record_stops_the_task_naming_its_true_line(bad_file: tuple[Path, int]) -> None:
    path, line = bad_file
    shard = shard_with(path, line)
    with pytest.raises(DataError) as info:
        run_task(Task(0, shard, TaskSpec()), Model(FeatureSpec(bits=12), LearnerConfig()))
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line} of {path}: label 'abc' is not a number")


def test_a_skipped_record_is_named_by_its_true_line(bad_file: tuple[Path, int]) -> None:
    path, line = bad_file
    shard = shard_with(path, line)
    spec = TaskSpec(on_bad_record="skip")
    result = run_task(Task(0, shard, spec), Model(FeatureSpec(bits=12), LearnerConfig()))
    assert result.skipped == 1
    assert result.first_skipped.startswith(f"line {line} of {path}: label 'abc'")
