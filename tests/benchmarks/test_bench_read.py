"""The reading benchmark runs with a work folder that does not exist yet (it crashed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_workdir_is_created(tmp_path: Path) -> None:
    workdir = tmp_path / "new" / "folder"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_read.py"), "--rows", "200",
         "--repeat", "1", "--workdir", str(workdir)],
        cwd=REPO / "benchmarks",
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")])},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "clicks-seed1-200.vw").exists()
