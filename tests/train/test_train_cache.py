"""Training from the binary cache: the model of the text, to the bit, in one process and on
workers; a cache writer killed mid-write leaves nothing a later run trusts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from shoal.cli import main
from shoal.data.cache import _OPEN
from shoal.data.cachefile import CacheFile
from shoal.data.synthetic import generate_clicks
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from shoal.train.coordinator import ClusterOptions, train_cluster
from shoal.train.single import TrainOptions, train

T = TypeVar("T")
DEADLINE = 120.0


def wait_for(condition: Callable[[], T], what: str) -> T:
    """Poll ``condition`` until it returns something true; fail after ``DEADLINE`` seconds."""
    end = time.monotonic() + DEADLINE
    while not (value := condition()):
        if time.monotonic() > end:
            pytest.fail(f"gave up after {DEADLINE:.0f}s waiting for {what}")
        time.sleep(0.002)  # a polling interval, not a synchronisation
    return value


def new_model(optimizer: str = "adagrad") -> Model:
    return Model(FeatureSpec(bits=18), LearnerConfig(optimizer=optimizer))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("clicks")
    generate_clicks(root / "a.vw", 12_000, data_seed=1)
    generate_clicks(root / "b.vw.gz", 4_000, data_seed=2)  # a gzip file: cached whole
    return [root / "a.vw", root / "b.vw.gz"]


@pytest.mark.parametrize("optimizer", ["adagrad", "ftrl"])
def test_one_process_from_the_cache_is_the_text_model_to_the_bit(
    clicks: list[Path], tmp_path: Path, optimizer: str
) -> None:
    opts = TrainOptions(passes=3, holdout=0.1, block_bytes=1 << 16)
    text = new_model(optimizer)
    want = train(text, clicks, opts)
    cache = tmp_path / "cache"
    for run in ("writes", "reads"):
        model = new_model(optimizer)
        held = set(_OPEN)
        report = train(model, clicks, TrainOptions(**{**opts.__dict__, "cache": cache}))
        assert model.to_bytes() == text.to_bytes(), run
        assert report.pass_losses == want.pass_losses
        assert (report.holdout_loss, report.bytes_read) == (want.holdout_loss, want.bytes_read)
        assert report.cache is not None and len(report.cache.files) == 2
        assert report.cache.bytes == sum(p.stat().st_size for p in cache.glob("*.cache"))
        written = 2 if run == "writes" else 0
        # passes 2 and 3, and early stopping's scoring of the last pass, read every file
        assert (report.cache.written, report.cache.reads) == (written, 8 - written)
        assert set(_OPEN) <= held  # the run's files are no longer held


def test_workers_read_their_shards_from_the_cache_to_the_same_bytes(
    clicks: list[Path], tmp_path: Path
) -> None:
    opts = TrainOptions(passes=3)
    cluster = ClusterOptions(workers=2, shards=4, tasks_per_round=2)
    text, _ = train_cluster(new_model(), clicks, opts, cluster)
    cached = TrainOptions(passes=3, cache=tmp_path / "cache")
    first, report = train_cluster(new_model(), clicks, cached, cluster)
    assert first.to_bytes() == text.to_bytes()
    assert report.cache is not None
    shards = len(report.cache.files)
    assert shards >= 3 and report.cache.written == shards  # one file per shard
    # passes 2 and 3, and early stopping's judging of the model of each of the 3 passes
    assert report.cache.reads == 5 * shards
    again, report = train_cluster(new_model(), clicks, cached, cluster)
    assert again.to_bytes() == text.to_bytes()
    assert report.cache is not None
    assert (report.cache.written, report.cache.reads) == (0, 6 * shards)


def shoal(*args: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "shoal.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=False)


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_nothing_trusted(tmp_path: Path) -> None:
    data = tmp_path / "big.vw"
    generate_clicks(data, 150_000)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "shoal.cli", "train", str(data), "-o", str(tmp_path / "k.shoal"),
           "--cache", str(cache), "--passes", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def writing() -> list[Path]:
        temps = [p for p in cache.glob(".*.tmp") if p.stat().st_size > 1 << 18]
        return temps if temps or proc.poll() is not None else []

    try:
        temps = wait_for(writing, "the cache writer to be half way")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL
    # the half-written file stays behind under its temporary name; a file under its final name
    # (only if the kill came right after the rename, microseconds after the check) is whole
    caught = temps[0].exists()
    assert len(list(cache.glob("*.cache"))) == (0 if caught else 1)
    for done in cache.glob("*.cache"):
        CacheFile.open(str(done))

    out = shoal("train", data, "-o", tmp_path / "c.shoal", "--cache", cache, "--passes", "2")
    assert out.returncode == 0, out.stderr
    # pass 2 and early stopping's scoring of it read the cache too (2 passes: a holdout)
    done = "1 written, 2 read(s)" if caught else "0 written, 3 read(s)"
    assert "cache: 1 file(s)" in out.stdout and done in out.stdout, out.stdout
    assert not temps[0].exists()  # the dead writer's file is swept
    text = Model(FeatureSpec(), LearnerConfig())  # the command's defaults
    train(text, [data], TrainOptions(passes=2))
    assert Model.load(tmp_path / "c.shoal").to_bytes() == text.to_bytes()


def test_a_cache_that_cannot_work_is_refused_in_one_line(
    clicks: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="must name a directory"):
        TrainOptions(cache="")
    root = clicks[0].parent
    out = tmp_path / "m.shoal"
    assert main(["train", str(root), "-o", str(out), "--cache", str(root / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is inside the input directory" in err, err
    assert not out.exists() and not (root / "cache").exists()
