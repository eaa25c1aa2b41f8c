"""The coordinator with real worker processes: killed, frozen and failing workers, a killed
coordinator, and the same model bytes whatever happened on the way; for linear models, FMs and
FFMs.

Every wait here waits on a condition with a deadline; a run that hangs fails its test instead of
hanging the suite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from shoal.cli import main
from shoal.data.reader import TextReader
from shoal.data.synthetic import generate_clicks
from shoal.errors import ShoalError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.evaluate import evaluate
from shoal.model.model import Model
from shoal.train.coordinator import (
    CHECKPOINT,
    ClusterOptions,
    ClusterReport,
    Coordinator,
    RoundStatus,
    TaskFailedError,
    train_cluster,
)
from shoal.train.local import LocalExecutor
from shoal.train.plan import plan
from shoal.train.single import TrainOptions, train
from shoal.train.task import Task, TaskResult, TaskSpec, run_task
from tests.train.models import KINDS, model_of

ROWS = 20_000
FACTOR_ROWS = 4_000  # FMs and FFMs learn from the first rows of the same data
OPTIONS = TrainOptions(passes=2, holdout=0.0)  # every row learned (no default holdout)
CLUSTER = ClusterOptions(workers=2, shards=8, tasks_per_round=2)  # 8 rounds in all
DEADLINE = 120.0  # seconds: far beyond what a healthy run takes, short of a hung CI job

T = TypeVar("T")


def new_model(kind: str = "linear") -> Model:
    return model_of(kind, bits=18 if kind == "linear" else 16)


def wait_for(condition: Callable[[], T], what: str, deadline: float = DEADLINE) -> T:
    """Poll ``condition`` until it returns something true; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"gave up after {deadline:.0f}s waiting for {what}")
        time.sleep(0.005)  # a polling interval, not a synchronisation


def run_bounded(coord: Coordinator, deadline: float = DEADLINE) -> tuple[Model, ClusterReport]:
    """``coord.run()`` in a thread: its result or its exception, or a failure if it hangs."""
    out: list[tuple[Model, ClusterReport]] = []
    err: list[BaseException] = []

    def target() -> None:
        try:
            out.append(coord.run())
        except BaseException as exc:
            err.append(exc)

    thread = threading.Thread(target=target, daemon=True, name="coordinator")
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"the run did not finish within {deadline:.0f}s")
    if err:
        raise err[0]
    return out[0]


class Rounds:
    """An ``on_round`` callback that lets other threads wait for the run to reach a round."""

    def __init__(self) -> None:
        self.done = 0
        self.finished = threading.Event()

    def __call__(self, status: RoundStatus) -> None:
        self.done = status.step
        if status.step == status.steps:
            self.finished.set()


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clicks") / "clicks.vw"
    generate_clicks(path, ROWS)
    return path


@pytest.fixture(scope="module")
def reference(clicks: Path) -> bytes:
    """The model bytes of an undisturbed run of the standard configuration."""
    model, report = run_bounded(Coordinator(new_model(), [clicks], OPTIONS, CLUSTER))
    assert report.examples == 2 * ROWS
    assert (report.rounds, report.retries, report.worker_deaths, report.duplicates) == (8, 0, 0, 0)
    assert model.examples_learned == 2 * ROWS
    assert report.pass_losses[1] < report.pass_losses[0] < 0.56  # it learned something
    return model.to_bytes()


@dataclasses.dataclass(frozen=True)
class Case:
    """A kind of model, its data and the bytes of its undisturbed standard run."""

    kind: str
    data: Path
    rows: int
    reference: bytes


@pytest.fixture(scope="module", params=KINDS)
def case(
    request: pytest.FixtureRequest,
    clicks: Path,
    reference: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Case:
    kind = request.param
    if kind == "linear":
        return Case(kind, clicks, ROWS, reference)
    data = tmp_path_factory.mktemp(kind) / "few.vw"
    data.write_text("".join(clicks.read_text().splitlines(keepends=True)[:FACTOR_ROWS]))
    model, report = run_bounded(Coordinator(new_model(kind), [data], OPTIONS, CLUSTER))
    assert (report.rounds, report.retries, report.worker_deaths, report.examples) == (
        8,
        0,
        0,
        2 * FACTOR_ROWS,
    )
    assert report.pass_losses[1] < report.pass_losses[0]  # it learned something
    return Case(kind, data, FACTOR_ROWS, model.to_bytes())


@pytest.fixture
def no_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Workers' scratch files go to a fresh folder, which must be empty again at the end."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    yield scratch
    assert list(scratch.iterdir()) == []


# -- determinism -----------------------------------------------------------------------------


def test_two_runs_give_identical_bytes(clicks: Path, reference: bytes, no_leftovers: Path) -> None:
    model, _ = train_cluster(new_model(), [clicks], OPTIONS, CLUSTER)
    assert model.to_bytes() == reference


def test_the_model_depends_on_the_plan_not_on_who_ran_it(case: Case) -> None:
    """One worker doing every task of the plan of two gives the same bits."""
    executor = LocalExecutor(1)
    coord = Coordinator(new_model(case.kind), [case.data], OPTIONS, CLUSTER, executor=executor)
    model, report = run_bounded(coord)
    assert model.to_bytes() == case.reference
    assert report.examples == 2 * case.rows


@pytest.mark.parametrize("threads", [1, 3])
def test_parse_threads_and_block_size_change_nothing(
    clicks: Path, reference: bytes, threads: int
) -> None:
    """Workers parse ahead in threads (64 KiB blocks: many per shard); learning stays in order."""
    opts = dataclasses.replace(OPTIONS, parse_threads=threads, block_bytes=1 << 16)
    model, _ = run_bounded(Coordinator(new_model(), [clicks], opts, CLUSTER))
    assert model.to_bytes() == reference


# -- workers that die, fail and freeze ---------------------------------------------------------


class KillingExecutor(LocalExecutor):
    """Kills the worker of chosen attempts right after handing them over: always mid-task."""

    def __init__(self, workers: int, doomed: set[int]) -> None:
        super().__init__(workers)
        self.doomed = doomed
        self.forced: list[int] = []

    def submit(self, attempt: int, task: Task) -> None:
        super().submit(attempt, task)
        if attempt in self.doomed:
            pid = next(p for p, a in self.attempts().items() if a == attempt)
            with contextlib.suppress(ProcessLookupError):  # the random killer was first:
                os.kill(pid, signal.SIGKILL)  # it died mid-task all the same
            self.forced.append(pid)


def test_workers_killed_mid_task_change_nothing(case: Case) -> None:
    rng = random.Random(7)
    cluster = ClusterOptions(workers=2, shards=8, tasks_per_round=2, max_attempts=10)
    # two kills certain to land mid-task, and more at random moments from another thread
    executor = KillingExecutor(2, doomed={1, 5})
    rounds = Rounds()
    model0 = new_model(case.kind)
    coord = Coordinator(model0, [case.data], OPTIONS, cluster, executor, on_round=rounds)
    killed: list[int] = []

    def killer() -> None:
        # a random busy worker at a random moment of its task, at most once a round (so no
        # shard runs out of attempts)
        round_ = rng.randrange(2)
        while len(killed) < 3:
            while rounds.done < round_ or not executor.busy_pids():
                if rounds.finished.wait(0.002):
                    return
            if rounds.finished.wait(rng.uniform(0.0, 0.03)):
                return
            busy = executor.busy_pids()
            if busy:
                pid = rng.choice(busy)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue  # it died already (a forced kill): pick again
                killed.append(pid)
                round_ = rounds.done + 1

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    model, report = run_bounded(coord)
    rounds.finished.set()
    thread.join(DEADLINE)
    killed += executor.forced
    assert len(executor.forced) == 2
    assert report.worker_deaths >= 2
    assert report.retries >= report.worker_deaths
    assert model.to_bytes() == case.reference
    for pid in killed:
        with pytest.raises(ProcessLookupError):  # reaped, not left as zombies
            os.kill(pid, 0)


def test_a_frozen_worker_is_outrun_by_a_duplicate(clicks: Path, reference: bytes) -> None:
    cluster = ClusterOptions(workers=2, shards=8, tasks_per_round=2, straggler_min_seconds=0.5)
    executor = LocalExecutor(2)
    rounds = Rounds()
    alive_after: list[list[int]] = []

    def on_round(status: RoundStatus) -> None:
        alive_after.append(executor.pids())
        rounds(status)

    coord = Coordinator(new_model(), [clicks], OPTIONS, cluster, executor, on_round=on_round)
    frozen: list[int] = []

    def freezer() -> None:
        # after the first round (both workers warm): freeze one that holds a task
        while rounds.done < 1 or not executor.busy_pids():
            if rounds.finished.wait(0.002):
                return
        pid = executor.busy_pids()[0]
        os.kill(pid, signal.SIGSTOP)
        frozen.append(pid)

    thread = threading.Thread(target=freezer, daemon=True)
    thread.start()
    try:
        model, report = run_bounded(coord)
        thread.join(DEADLINE)
        assert len(frozen) == 1
        assert report.duplicates >= 1
        assert report.worker_deaths == 0
        assert model.to_bytes() == reference
        # the coordinator killed the loser during the run: it is gone before the last round
        assert frozen[0] not in alive_after[-1]
        with pytest.raises(ProcessLookupError):
            os.kill(frozen[0], 0)
    finally:
        for pid in frozen:  # never leave a stopped process behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_task_that_always_fails_stops_the_run(
    clicks: Path, tmp_path: Path, no_leftovers: Path
) -> None:
    lines = clicks.read_text().splitlines(keepends=True)[:4000]
    bad = 2718  # 0-based: line 2719 of the file
    lines[bad] = "abc |c a=1\n"
    path = tmp_path / "bad.vw"
    path.write_text("".join(lines))
    offset = sum(len(line) for line in lines[:bad])
    shard = next(
        s for s in plan([path], 4) if s.start <= offset and (s.end is None or offset < s.end)
    )
    executor = LocalExecutor(2)
    coord = Coordinator(new_model(), [path], OPTIONS, ClusterOptions(workers=2, shards=4), executor)
    with pytest.raises(TaskFailedError) as info:
        run_bounded(coord)
    err = info.value
    assert err.shard == shard.describe()
    assert err.attempts == 1  # a bad record fails the same way every time: no retries
    assert err.cause.startswith(f"line {bad + 1} of {path}: label 'abc' is not a number")
    assert str(err).startswith(f"shard {shard.index} ({path}, bytes {shard.start}-{shard.end})")
    assert isinstance(err, ShoalError)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again)) == (TaskFailedError, str(err))
    assert executor.pids() == []  # the executor was closed: no worker outlives the run


def test_a_task_failing_on_every_retry_stops_the_run(
    clicks: Path, tmp_path: Path, no_leftovers: Path
) -> None:
    path = tmp_path / "vanishing.vw"
    path.write_bytes(clicks.read_bytes()[: 1 << 20])

    class Vanishing(LocalExecutor):
        def start(self, deadline: float = 120.0) -> None:
            path.unlink()  # planned, then gone: every attempt fails, not because of the data
            super().start(deadline)

    executor = Vanishing(2)
    coord = Coordinator(new_model(), [path], OPTIONS, ClusterOptions(workers=2, shards=4), executor)
    with pytest.raises(TaskFailedError) as info:
        run_bounded(coord)
    assert info.value.attempts == 4
    assert "no such file" in info.value.cause
    assert executor.pids() == []


# -- a killed coordinator ------------------------------------------------------------------------


def shoal(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``shoal`` command in a fresh interpreter, as a user would."""
    cmd = [sys.executable, "-m", "shoal.cli", *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=DEADLINE, check=False, env=env
    )


# the command line of each kind's standard model, and settings its checkpoint must not resume
CLI_MODELS = {
    "linear": [],
    "fm": ["--model", "fm", "--rank", "4", "--bits", "16"],
}
CLI_CHANGES = {
    "linear": [["--passes", "4"], ["--shards", "4"], ["--learning-rate", "0.2"], ["--model", "fm"]],
    "fm": [
        ["--rank", "2"], ["--factor-rate", "0.2"], ["--l2-factors", "0.01"],
        ["--model", "ffm", "--fields", "cn"],
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def cli_references(
    clicks: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[Path, str]]:
    """Undisturbed runs of ``shoal train --workers 2`` (no checkpoints), one per kind of model
    when first asked for: their model files and outputs."""
    runs: dict[str, tuple[Path, str]] = {}

    def reference(kind: str) -> tuple[Path, str]:
        if kind not in runs:
            out = tmp_path_factory.mktemp("cli") / f"{kind}.shoal"
            args = ["--workers", "2", "--passes", "3", "--holdout", "0", *CLI_MODELS[kind]]
            done = shoal("train", clicks, *args, "-o", out)
            assert done.returncode == 0, done.stderr
            runs[kind] = (out, done.stdout)
        return runs[kind]

    return reference


@pytest.fixture(scope="module")
def cli_reference(cli_references: Callable[[str], tuple[Path, str]]) -> tuple[Path, str]:
    return cli_references("linear")


def test_cli_trains_on_workers_and_eval_reads_the_model(
    cli_reference: tuple[Path, str], clicks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_file, stdout = cli_reference
    lines = stdout.splitlines()
    assert lines[0].startswith(f"trained on {3 * ROWS:,} examples in 3 pass(es)")
    assert f"model written to {model_file}" in lines
    assert lines[-1] == (
        "2 local worker(s), 12 round(s); survived 0 worker death(s), 0 retried task(s), "
        "0 straggler duplicate(s)"
    )
    assert main(["eval", str(model_file), str(clicks), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == ROWS
    assert metrics["log_loss"] < 0.5  # the base rate's is 0.56
    assert Model.load(model_file).examples_learned == 3 * ROWS


def test_workers_read_a_file_uri_shard_by_shard_to_the_same_bytes(
    cli_reference: tuple[Path, str], clicks: Path, tmp_path: Path
) -> None:
    """A URI is cut into byte ranges as its path is (12 rounds: 8 shards a pass), so the plan,
    hence the model, is the same; the workers read their ranges themselves."""
    model_file, stdout = cli_reference
    out = tmp_path / "uri.shoal"
    done = shoal(
        "train", f"file://{clicks}", "--workers", "2", "--passes", "3", "--holdout", "0", "-o", out
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == stdout.splitlines()[-1]
    assert out.read_bytes() == model_file.read_bytes()


@pytest.mark.parametrize("kind", ["linear", "fm"])  # an FFM's --fields: in CHANGES below
def test_a_killed_coordinator_resumes_to_the_same_bytes(
    kind: str,
    cli_references: Callable[[str], tuple[Path, str]],
    clicks: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = tmp_path / "ckpt"
    out = tmp_path / "model.shoal"
    args = [
        "train",
        str(clicks),
        "--workers",
        "2",
        "--passes",
        "3",
        "--holdout",
        "0",
        "--checkpoint-dir",
        str(ckpt),
        *CLI_MODELS[kind],
    ]
    cmd = [sys.executable, "-m", "shoal.cli", *args, "-o", str(out)]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the killed workers' files stay behind
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env
    )
    try:
        wait_for(lambda: (ckpt / CHECKPOINT).exists() or proc.poll() is not None, "a checkpoint")
        assert proc.poll() is None, proc.communicate()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its workers
        proc.communicate(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, "the killed workers to go")

    done = shoal(*args, "-o", out, env=env)
    assert done.returncode == 0, done.stderr
    resumed = re.search(r"resumed at round (\d+)$", done.stdout)
    assert resumed is not None, done.stdout
    assert 1 <= int(resumed.group(1)) < 12
    assert out.read_bytes() == cli_references(kind)[0].read_bytes()

    # the checkpoint belongs to this run: other data or settings are refused, in one line
    other = tmp_path / "other.vw"
    other.write_text("".join(clicks.read_text().splitlines(keepends=True)[:5000]))
    for changed in CLI_CHANGES[kind]:
        assert main([*args, *changed, "-o", str(tmp_path / "x.shoal")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith(
            f"shoal: error: checkpoint {ckpt / CHECKPOINT} belongs to another run"
        )
    assert main(["train", str(other), *args[2:], "-o", str(tmp_path / "x.shoal")]) == 2
    assert "belongs to another run" in capsys.readouterr().err
    assert not (tmp_path / "x.shoal").exists()


# -- accuracy ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_workers_learn_as_well_as_one_process_on_a9a(data_dir: Path) -> None:
    train_file, test_file = data_dir / "a9a" / "a9a", data_dir / "a9a" / "a9a.t"

    def test_loss(model: Model) -> float:
        return evaluate(model, TextReader(spec=model.spec).read(test_file))["log_loss"]

    single = Model()
    train(single, [train_file], OPTIONS)
    expected = test_loss(single)
    for workers in (2, 4):
        coord = Coordinator(Model(), [train_file], OPTIONS, ClusterOptions(workers=workers))
        model, report = run_bounded(coord)
        assert report.examples == 2 * 32_561
        assert test_loss(model) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("kind", ["fm", "ffm"])
def test_workers_learn_factors_as_well_as_one_worker(
    kind: str, clicks: Path, tmp_path: Path
) -> None:
    """One pass over the click data: two workers' FM or FFM is within 4% of one worker's
    (rounds of one task: sequential learning) in log loss on other rows of the same source
    (measured: +1.6% and +3.0% on these 20,000 rows; a linear model's: +2.6%)."""
    test_file = tmp_path / "test.vw"
    generate_clicks(test_file, 5_000, data_seed=2)
    opts = TrainOptions(passes=1, holdout=0.0)

    def test_loss(workers: int) -> float:
        cluster = ClusterOptions(workers=workers)
        model, _ = run_bounded(Coordinator(new_model(kind), [clicks], opts, cluster))
        return evaluate(model, TextReader(spec=model.spec).read(test_file))["log_loss"]

    one = test_loss(1)
    assert one < 0.5  # the base rate's is 0.56
    assert test_loss(2) == pytest.approx(one, rel=0.04)


# -- what a checkpoint must match ----------------------------------------------------------------

SMALL = ClusterOptions(workers=1, shards=2, tasks_per_round=1)
CSV_SCHEMA = "label,I1:num,C1:cat"


def csv_model(schema: str = CSV_SCHEMA) -> Model:
    return Model(FeatureSpec(bits=16, schema=ColumnSchema.parse(schema)), LearnerConfig())


def other_fields() -> Model:
    model = new_model("ffm")  # fields c and n
    return Model(dataclasses.replace(model.spec, fields=("n", "c")), model.config)


def other_initial_model() -> Model:
    model = new_model()
    model.weights[7] = 0.5  # as --initial-model with another file would
    return model


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "small.csv"
    rng = random.Random(3)
    lines = [f"{rng.choice('01')},{rng.randrange(100)},c{rng.randrange(20)}\n" for _ in range(600)]
    path.write_text("".join(lines))
    return path


# (name, the first run's model, options and data, the second run's) for every setting the run
# key must cover; the second run must be refused
Run = tuple[Callable[[], Model], TrainOptions, str, Callable[[], Model], TrainOptions]
CHANGES: dict[str, Run] = {
    "initial-model": (new_model, OPTIONS, "vw", other_initial_model, OPTIONS),
    "holdout": (new_model, OPTIONS, "vw", new_model, dataclasses.replace(OPTIONS, holdout=0.1)),
    "format": (new_model, OPTIONS, "vw", new_model, dataclasses.replace(OPTIONS, format="vw")),
    "on-bad-record": (
        new_model, OPTIONS, "vw", new_model, dataclasses.replace(OPTIONS, on_bad_record="skip")
    ),
    "schema": (
        csv_model, OPTIONS, "csv", lambda: csv_model("label,I1:num:log1p,C1:cat"), OPTIONS
    ),
    "fields": (lambda: new_model("ffm"), OPTIONS, "vw", other_fields, OPTIONS),
}  # fmt: skip


@pytest.mark.parametrize("setting", list(CHANGES))
def test_a_checkpoint_of_other_settings_is_refused(
    setting: str, clicks: Path, csv_file: Path, tmp_path: Path
) -> None:
    first_model, first_opts, kind, second_model, second_opts = CHANGES[setting]
    data = clicks if kind == "vw" else csv_file
    cluster = dataclasses.replace(SMALL, checkpoint_dir=str(tmp_path / "ckpt"))
    if kind == "vw":  # a few thousand rows are enough
        data = tmp_path / "small.vw"
        data.write_text("".join(clicks.read_text().splitlines(keepends=True)[:3000]))
    run_bounded(Coordinator(first_model(), [data], first_opts, cluster))
    # the same run again is resumed (finished: nothing left to do) ...
    _, again = run_bounded(Coordinator(first_model(), [data], first_opts, cluster))
    assert again.resumed_from_step == again.rounds > 0
    # ... and the run with the one setting changed is not
    with pytest.raises(ShoalError, match="belongs to another run"):
        run_bounded(Coordinator(second_model(), [data], second_opts, cluster))


# -- FTRL across workers -------------------------------------------------------------------------


def ftrl_merge(base: Model, results: list[TaskResult]) -> Model:
    """The documented merge of FTRL-Proximal results, written out plainly: per coordinate, the
    tasks' new weights averaged with their increments of ``n`` as weights (where no task's
    increment survived float32, with their examples as weights), the increments of ``n`` added
    up, ``z`` the value that FTRL's closed form (McMahan et al., 2013) maps to the merged weight
    (for a zero weight: the same average of the tasks' ``z``, clipped to [-l1, l1]); coordinates
    no task changed keep every value."""
    cfg = base.config
    out = base.copy()
    w0 = base.weights.astype(np.float64)
    n0 = base.state["ftrl_n"].astype(np.float64)
    # per coordinate, weighing by n or by examples: the sums of weight x change, weight, weight x z
    by_n = np.zeros((3, len(w0)))
    by_examples = np.zeros((3, len(w0)))
    for r in sorted(results, key=lambda r: r.shard):
        out.counters += r.counters
        inc = r.state["ftrl_n"].astype(np.float64) - n0[r.changed]
        examples = max(1.0, float(r.counters[1]))
        change = r.weights.astype(np.float64) - w0[r.changed]
        for sums, weight in ((by_n, inc), (by_examples, np.full(len(inc), examples))):
            sums[0, r.changed] += weight * change
            sums[1, r.changed] += weight
            sums[2, r.changed] += weight * r.state["ftrl_z"]
    for slot in np.flatnonzero(by_examples[1] > 0).tolist():
        num, den, zsum = by_n[:, slot] if by_n[1, slot] > 0 else by_examples[:, slot]
        w = w0[slot] + num / den
        n = n0[slot] + by_n[1, slot]
        if w == 0:
            z = min(cfg.l1, max(-cfg.l1, zsum / den))
        else:
            z = -w * ((cfg.ftrl_beta + math.sqrt(n)) / cfg.rate + cfg.l2) - math.copysign(cfg.l1, w)
        out.weights[slot], out.state["ftrl_n"][slot], out.state["ftrl_z"][slot] = w, n, z
    return out


def test_ftrl_across_workers_is_the_merge_of_its_rounds(clicks: Path, tmp_path: Path) -> None:
    """Two workers, four rounds of FTRL-Proximal (L1: some weights stay zero): the model is what
    the documented merge of each round's tasks gives, including the ``z`` of coordinates that a
    round left alone (which keep theirs)."""
    data = tmp_path / "small.vw"
    data.write_text("".join(clicks.read_text().splitlines(keepends=True)[:3000]))
    initial = Model(FeatureSpec(bits=14), LearnerConfig(optimizer="ftrl", l1=0.5))
    cluster = ClusterOptions(workers=2, shards=6, tasks_per_round=3)  # 2 rounds a pass
    got, report = run_bounded(Coordinator(initial, [data], OPTIONS, cluster))
    assert report.rounds == 4

    expected = initial
    shards = plan([data], 6)
    for step in range(4):
        round_ = shards[3 * (step % 2) : 3 * (step % 2) + 3]
        results = [run_task(Task(step, s, TaskSpec()), expected) for s in round_]
        expected = ftrl_merge(expected, results)
    touched = np.zeros(len(expected.weights), dtype=bool)
    for r in results:
        touched[r.changed] = True
    # coordinates with a z of their own that the last round left alone: a lost z would show
    assert np.count_nonzero(expected.state["ftrl_z"][~touched]) > 0
    assert (expected.weights == 0).any() and (expected.weights != 0).any()
    np.testing.assert_array_equal(got.counters, expected.counters)
    np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-5, atol=1e-6)
    for k in ("ftrl_n", "ftrl_z"):
        np.testing.assert_allclose(got.state[k], expected.state[k], rtol=1e-5, atol=1e-6, err_msg=k)
