"""Early stopping in distributed training: each pass's model judged on every shard's held-out
rows, the best pass's model kept, and the same stop and the same bytes whoever ran which task,
whatever order the results came in, with workers killed and after coordinator restarts."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shoal.data.reader import TextReader
from shoal.data.synthetic import generate_clicks
from shoal.features.spec import FeatureSpec
from shoal.model.model import Model, Progress
from shoal.train.coordinator import BEST, ClusterOptions, ClusterReport, Coordinator, RoundStatus
from shoal.train.executor import Event
from shoal.train.local import LocalExecutor
from shoal.train.single import TrainOptions, train
from shoal.train.task import Task

PATIENCE = 2
OPTIONS = TrainOptions(passes=8, early_stop=PATIENCE, parse_threads=1)  # one row in 10 held out
CLUSTER = ClusterOptions(workers=2, shards=8, tasks_per_round=4)  # 2 rounds a pass, then a judge
PER_PASS = 3
DEADLINE = 120.0  # seconds: far beyond what a healthy run takes, short of a hung CI job


def fresh() -> Model:
    return Model(FeatureSpec(bits=12))


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("early") / "clicks.vw"
    generate_clicks(path, 3000)
    return path


@pytest.fixture(scope="module")
def reference(clicks: Path) -> tuple[bytes, ClusterReport]:
    """An undisturbed run with two workers: its model's bytes and its report."""
    model, report = Coordinator(fresh(), [clicks], OPTIONS, CLUSTER).run()
    return model.to_bytes(), report


def same_run(model: Model, report: ClusterReport, reference: tuple[bytes, ClusterReport]) -> None:
    """The same stop, the same losses to the bit, the same model bytes."""
    want_bytes, want = reference
    assert (report.passes, report.best_pass) == (want.passes, want.best_pass)
    assert [x.hex() for x in report.holdout_losses] == [x.hex() for x in want.holdout_losses]
    assert report.holdout_loss == want.holdout_loss
    assert model.to_bytes() == want_bytes


def test_workers_stop_early_and_keep_the_best_pass(
    clicks: Path, reference: tuple[bytes, ClusterReport]
) -> None:
    """Training stops once ``PATIENCE`` passes in a row did no better, and the model is the best
    pass's, bit for bit the model of a run of that many passes without early stopping."""
    model_bytes, report = reference
    losses = report.holdout_losses
    best = int(np.argmin(losses))
    assert report.best_pass == best >= 1  # more passes helped, then stopped helping
    assert report.passes == len(losses) == best + 1 + PATIENCE < OPTIONS.passes
    assert report.rounds == PER_PASS * report.passes
    assert report.holdout_loss == losses[best] and report.holdout_examples > 0
    plain = TrainOptions(passes=best + 1, holdout=0.1, early_stop=0, parse_threads=1)
    model, _ = Coordinator(fresh(), [clicks], plain, CLUSTER).run()
    assert model.to_bytes() == model_bytes
    prog = Progress()  # the kept model, scored in one process, has the best pass's loss
    for batch in TextReader(spec=model.spec, threads=1).read(clicks):
        model.score_holdout(batch, OPTIONS.holdout_period, prog)
    assert prog.holdout_loss == pytest.approx(losses[best], rel=1e-12)


def test_one_worker_stops_where_one_process_does(clicks: Path) -> None:
    """One task a round: every shard learns from the model the last one left, as one process
    learns its file, and the merge of one result is that result. The passes' losses are those
    of one process but for the order of additions; the stop, the best pass and the model are
    the same (one process reads a pass more: it judges a pass while learning the next)."""
    single = fresh()
    want = train(single, [clicks], OPTIONS)
    cluster = ClusterOptions(workers=1, shards=4, tasks_per_round=1)
    model, report = Coordinator(fresh(), [clicks], OPTIONS, cluster).run()
    assert report.best_pass == want.best_pass >= 1
    assert report.holdout_losses == pytest.approx(want.holdout_losses, rel=1e-12)
    assert report.passes == want.passes - 1 == len(want.holdout_losses)
    assert model.to_bytes() == single.to_bytes()


class LastFirst(LocalExecutor):
    """Holds results back while workers are busy, then hands them over last submitted first:
    the coordinator sees the shards of a step out of their order."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.held: list[Event] = []

    def poll(self, timeout: float) -> list[Event]:
        events = super().poll(timeout)
        self.held += [e for e in events if e.kind == "done"]
        others = [e for e in events if e.kind != "done"]
        if self.busy_pids() or not self.held:
            return others
        out, self.held = sorted(self.held, key=lambda e: -e.attempt), []
        return others + out


@pytest.mark.parametrize("executor", [LocalExecutor, LastFirst], ids=["one-worker", "last-first"])
def test_the_stop_depends_on_the_plan_not_on_who_ran_it(
    clicks: Path, reference: tuple[bytes, ClusterReport], executor: type[LocalExecutor]
) -> None:
    workers = 1 if executor is LocalExecutor else 4
    model, report = Coordinator(fresh(), [clicks], OPTIONS, CLUSTER, executor(workers)).run()
    same_run(model, report, reference)


class KillingExecutor(LocalExecutor):
    """Kills the worker of the first ``kills`` attempts of each kind (learning, judging) right
    after handing them over: always mid-task."""

    def __init__(self, workers: int, kills: int) -> None:
        super().__init__(workers)
        self.kills = {False: kills, True: kills}
        self.killed = 0

    def submit(self, attempt: int, task: Task) -> None:
        super().submit(attempt, task)
        if self.kills[task.spec.score] > 0:
            self.kills[task.spec.score] -= 1
            pid = next(p for p, a in self.attempts().items() if a == attempt)
            os.kill(pid, signal.SIGKILL)
            self.killed += 1


def test_workers_killed_mid_task_change_nothing(
    clicks: Path, reference: tuple[bytes, ClusterReport]
) -> None:
    cluster = dataclasses.replace(CLUSTER, max_attempts=4)
    executor = KillingExecutor(2, kills=2)
    model, report = Coordinator(fresh(), [clicks], OPTIONS, cluster, executor).run()
    assert executor.killed == 4 and report.worker_deaths >= 4
    same_run(model, report, reference)


class Crash(Exception):
    """The coordinator stops dead after a checkpoint, as if killed."""


def crash_after(steps: int, coord: Coordinator) -> Callable[[RoundStatus], None]:
    """An ``on_round`` that stops ``coord`` once it has run ``steps`` steps."""

    def on_round(status: RoundStatus) -> None:
        if status.step < status.steps and status.step == coord.report.resumed_from_step + steps:
            raise Crash

    return on_round


def test_a_restarted_coordinator_makes_the_same_decisions(
    clicks: Path, reference: tuple[bytes, ClusterReport], tmp_path: Path
) -> None:
    """Restarts after every other step, from the checkpoint: each resumed run must recall the
    passes judged so far and the best one's model (the last run starts past the best pass, so
    the model it keeps is one it has only from the checkpoint)."""
    cluster = dataclasses.replace(CLUSTER, checkpoint_dir=str(tmp_path))
    starts: list[int] = []
    while True:
        coord = Coordinator(fresh(), [clicks], OPTIONS, cluster)
        coord.on_round = crash_after(2, coord)
        try:
            model, report = coord.run()
            break
        except Crash:
            starts.append(coord.report.resumed_from_step)
    assert starts == list(range(0, reference[1].rounds - 2, 2))
    assert report.resumed_from_step > PER_PASS * (reference[1].best_pass + 1)
    same_run(model, report, reference)
    kept = sorted(p.name for p in tmp_path.glob(BEST.format("*")))
    assert kept == [BEST.format(report.best_pass)]
    # the finished run's checkpoint: nothing left to do, the same model and decision
    again, report = Coordinator(fresh(), [clicks], OPTIONS, cluster).run()
    assert report.resumed_from_step == report.rounds and report.seconds == 0
    same_run(again, report, reference)


def shoal(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "shoal.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=False)


@pytest.mark.slow
def test_a_killed_shoal_train_resumes_to_the_same_stop_and_bytes(tmp_path: Path) -> None:
    """``shoal train`` killed with SIGKILL (workers and all) once a pass after the first has been
    judged the best so far, perhaps before the checkpoint names it; rerun, it ends as a run
    never interrupted: the same line about the kept pass, the same model file."""
    data = tmp_path / "clicks.vw"
    generate_clicks(data, 10_000)
    ckpt = tmp_path / "ckpt"
    args = [data, "--workers", "2", "--shards", "8", "--tasks-per-round", "4", "--passes", "8",
            "--early-stop", "2"]  # fmt: skip
    undisturbed = shoal("train", *args, "-o", tmp_path / "reference.shoal")
    assert undisturbed.returncode == 0, undisturbed.stderr
    kept = re.search(r"\(pass (\d+) of (\d+), the best", undisturbed.stdout)
    assert kept is not None and 2 <= int(kept[1]) < int(kept[2]) < 8, undisturbed.stdout

    out = tmp_path / "model.shoal"
    cmd = [sys.executable, "-m", "shoal.cli", "train", *map(str, args), "-o", str(out),
           "--checkpoint-dir", str(ckpt)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        end = time.monotonic() + DEADLINE
        while not (ckpt / BEST.format(1)).exists() and proc.poll() is None:
            assert time.monotonic() < end, "no second pass judged the best"
            time.sleep(0.002)  # a polling interval, not a synchronisation
        assert proc.poll() is None, proc.communicate()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its workers
        proc.communicate(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL and not out.exists()

    done = shoal("train", *args, "-o", out, "--checkpoint-dir", ckpt)
    assert done.returncode == 0, done.stderr
    assert re.search(r"resumed at round [1-9]", done.stdout), done.stdout
    assert kept[0] in done.stdout
    assert out.read_bytes() == (tmp_path / "reference.shoal").read_bytes()
