"""The FM benchmark runs end to end on a few generated rows, and its peers see the same data:
shoal's and VW's ``-q`` (the same update) get the same test loss. No timing is asserted."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_tool_runs_and_the_q_crosses_agree(tmp_path: Path) -> None:
    pytest.importorskip("vowpalwabbit")
    pytest.importorskip("river")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_fm.py"), "--rows", "2000",
         "--river-rows", "200", "--workdir", str(tmp_path / "work"), "--only",
         "generate --model fm"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| gen")]
    loss = {cells[1].split(" (")[0]: float(cells[3]) for cells in rows}
    assert sorted(loss) == sorted([
        "shoal linear", "shoal -q", "shoal fm rank 8", "shoal ffm rank 8", "vw -q",
        "vw --lrq rank 8", "river fm rank 8",
    ])  # fmt: skip
    assert all(math.isfinite(v) and 0.0 < v < 1.0 for v in loss.values()), loss
    assert loss["shoal -q"] == pytest.approx(loss["vw -q"], abs=1e-3)
    assert loss["shoal -q"] != pytest.approx(loss["shoal linear"], abs=1e-3)
    assert "trains" in proc.stdout and "as fast as River's FM" in proc.stdout
