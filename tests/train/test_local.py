"""``LocalExecutor``: worker processes that start, say they are ready, die and are replaced."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.model.model import Model
from shoal.train.local import LocalExecutor

DEADLINE = 60.0


def poll_until(executor: LocalExecutor, condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"gave up after {DEADLINE:.0f}s waiting for {what}")
        assert executor.poll(timeout=0.05) == []  # no attempt was submitted: no event


def test_a_worker_takes_attempts_only_once_it_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starting worker is not idle, so its start-up never counts as an attempt's time (else
    a straggler check shorter than a start-up would kill every replacement worker in turn)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    executor = LocalExecutor(1)
    executor.start()  # returns once every worker is ready
    try:
        assert (executor.idle(), executor.alive()) == (1, 1)
        [first] = executor.pids()
        os.kill(first, signal.SIGKILL)
        poll_until(executor, lambda: executor.pids() != [first], "a replacement")
        assert executor.idle() == 0  # replaced, but not ready yet
        poll_until(executor, lambda: executor.idle() == 1, "the replacement to be ready")
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)  # the dead worker was reaped
    finally:
        executor.close()
    assert executor.pids() == []
    assert list(tmp_path.iterdir()) == []  # the workers' scratch folder is gone


def test_relative_paths_are_the_coordinators_wherever_it_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork server (kept between runs) started in another directory: a worker reads the
    relative path of the coordinator's directory now, as the coordinator planned it."""
    from shoal.data.synthetic import generate_clicks
    from shoal.train.coordinator import ClusterOptions, train_cluster

    executor = LocalExecutor(1)
    executor.start()  # a fork server started here, kept for the next run
    executor.close()
    (tmp_path / "data").mkdir()
    generate_clicks(tmp_path / "data" / "part.vw", 2000)
    monkeypatch.chdir(tmp_path)
    _, report = train_cluster(Model(), ["data/part.vw"], cluster=ClusterOptions(workers=1))
    assert report.examples == 2000
