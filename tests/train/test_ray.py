"""The ray engine: same bytes as the local engine (FMs and FFMs too), survives killed actors,
stops on bad data.

One local Ray instance serves the whole module (each start costs seconds); the executors under
test find it initialised, use it, and leave it running when they close. The CLI test starts
shoal's own private instance in a subprocess.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'shoal[ray]')")

from shoal.data.synthetic import generate_clicks  # noqa: E402
from shoal.errors import ShoalError  # noqa: E402
from shoal.model.model import Model  # noqa: E402
from shoal.train.coordinator import (  # noqa: E402
    ClusterOptions,
    Coordinator,
    TaskFailedError,
    train_cluster,
)
from shoal.train.plan import plan  # noqa: E402
from shoal.train.ray_executor import RayExecutor, _check_reachable  # noqa: E402
from shoal.train.single import TrainOptions  # noqa: E402
from shoal.train.task import Task, TaskSpec  # noqa: E402
from tests.train.models import model_of  # noqa: E402

ROWS = 20_000
PASSES = TrainOptions(passes=2, holdout=0.0)  # every row learned (no default holdout)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with 2 CPUs, started once for the module."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "c.vw"
    generate_clicks(path, ROWS)
    return path


@pytest.fixture(scope="module")
def local_bytes(clicks) -> bytes:
    """The local engine's model: the reference every ray run must match bit for bit."""
    model, _ = train_cluster(Model(), [clicks], PASSES, ClusterOptions(workers=2))
    return model.to_bytes()


def _ray_cluster(address: str, **kw) -> ClusterOptions:
    return ClusterOptions(engine="ray", workers=2, address=address, **kw)


def test_ray_engine_matches_local_engine(ray_address, clicks, local_bytes):
    """Reading the data through a URI, cut into the byte ranges of its path."""
    uri = f"file://{clicks}"
    model, report = train_cluster(Model(), [uri], PASSES, _ray_cluster(ray_address))
    assert model.to_bytes() == local_bytes
    assert report.examples == PASSES.passes * ROWS
    assert (report.worker_deaths, report.retries) == (0, 0)
    assert ray.is_initialized(), "the executor shut down a Ray instance it did not start"


def test_ray_stops_early_where_local_does(ray_address, tmp_path):
    """Early stopping: the same passes' losses to the bit, the same stop, the same model."""
    data = tmp_path / "small.vw"
    generate_clicks(data, 3000)
    options = TrainOptions(passes=6, early_stop=1)
    local, want = train_cluster(Model(), [data], options, ClusterOptions(workers=2))
    model, report = train_cluster(Model(), [data], options, _ray_cluster(ray_address))
    assert 0 <= want.best_pass < want.passes < options.passes  # it stopped early
    assert (report.passes, report.best_pass) == (want.passes, want.best_pass)
    assert [x.hex() for x in report.holdout_losses] == [x.hex() for x in want.holdout_losses]
    assert model.to_bytes() == local.to_bytes()


def test_ray_engine_matches_local_engine_for_factor_models(ray_address, clicks, tmp_path):
    """An FFM (an FM is an FFM of one field: the same kernels and merge), on fewer rows."""
    data = tmp_path / "few.vw"
    data.write_text("".join(clicks.read_text().splitlines(keepends=True)[:4_000]))
    local, _ = train_cluster(model_of("ffm"), [data], PASSES, ClusterOptions(workers=2))
    model, report = train_cluster(model_of("ffm"), [data], PASSES, _ray_cluster(ray_address))
    assert model.to_bytes() == local.to_bytes()
    assert (report.examples, report.worker_deaths, report.retries) == (8_000, 0, 0)


class _KillingExecutor(RayExecutor):
    """Kills the actor of attempt ``victim`` with SIGKILL right after submitting it.

    The attempt is then in flight (submitted, no result collected), whatever the actor had
    reached, so its death must be reported and the shard retried elsewhere.
    """

    def __init__(self, workers: int, address: str, victim: int) -> None:
        super().__init__(workers, address)
        self.victim = victim
        self.killed: list[int] = []

    def submit(self, attempt: int, task: Task) -> None:
        before = set(self.busy_pids())
        super().submit(attempt, task)
        if attempt == self.victim:
            (pid,) = set(self.busy_pids()) - before
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)


def test_killed_actor_is_replaced_and_the_model_is_unchanged(ray_address, clicks, local_bytes):
    cluster = _ray_cluster(ray_address)
    ex = _KillingExecutor(2, ray_address, victim=3)  # round 2: the model is a merged one
    model, report = Coordinator(Model(), [clicks], PASSES, cluster, executor=ex).run()
    assert len(ex.killed) == 1
    assert report.worker_deaths >= 1
    assert report.retries >= 1
    assert model.to_bytes() == local_bytes


def test_executor_replaces_a_killed_actor(ray_address, clicks):
    """Directly on the protocol: a death is an event, then the pool is whole again."""
    ex = RayExecutor(2, ray_address)
    ex.start()
    try:
        pids = ex.pids()
        assert len(set(pids)) == 2 and ex.alive() == 2
        shard = plan([clicks], 1)[0]
        ex.broadcast(0, Model().to_bytes())
        ex.submit(7, Task(0, shard, TaskSpec()))
        (victim,) = ex.busy_pids()
        os.kill(victim, signal.SIGKILL)
        events = ex.poll(timeout=60.0)  # the first event ends the wait
        assert [(e.attempt, e.kind) for e in events] == [(7, "died")]
        assert str(victim) in events[0].error
        assert ex.alive() == 2  # replaced at once, but idle only once its actor is up
        deadline = time.monotonic() + 60.0
        while ex.idle() < 2:
            assert time.monotonic() < deadline, "the replacement actor never came up"
            assert ex.poll(timeout=1.0) == []
        assert victim not in ex.pids()
    finally:
        ex.close()
    assert ray.is_initialized()


def test_failing_task_stops_the_run_naming_the_shard(ray_address, tmp_path):
    path = tmp_path / "bad.vw"
    generate_clicks(path, 2_000)
    with path.open("a") as f:
        f.write("1 |a x:abc\n")  # line 2001: not a number; the default policy stops
    cluster = _ray_cluster(ray_address, max_attempts=2, task_timeout=60.0)
    uri = f"file://{path}"
    with pytest.raises(TaskFailedError) as info:
        train_cluster(Model(), [uri], TrainOptions(), cluster)
    err = info.value
    assert uri in err.shard and err.attempts == 1
    assert f"line 2001 of {uri}" in err.cause and "not a finite number" in err.cause


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now raises ImportError
    ex = RayExecutor(2, None)
    with pytest.raises(ShoalError, match=r"pip install 'shoal\[ray\]'"):
        ex.start()
    ex.close()  # nothing was started: a no-op


def test_an_address_where_nothing_listens_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        address = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(ShoalError, match=r"no Ray cluster answers at 127\.0\.0\.1"):
            _check_reachable(address)
    _check_reachable("auto")  # Ray's own forms are left to Ray


def _python(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False, **kw
    )


def test_importing_shoal_does_not_import_ray():
    code = (
        "import sys, shoal, shoal.cli, shoal.train.coordinator, shoal.train.ray_executor; "
        "print('ray' in sys.modules)"
    )
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_cli_starts_its_own_ray(clicks, tmp_path, local_bytes):
    """``shoal train --engine ray`` without --address starts a private instance, then stops it."""
    out = tmp_path / "m.shoal"
    args = ["-m", "shoal.cli", "train", str(clicks), "--passes", "2", "--holdout", "0"]
    done = _python(*args, "--engine", "ray", "--workers", "2", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 ray worker(s)" in done.stdout
    assert Model.load(out).to_bytes() == local_bytes
