"""The project's own set-up: a bare ``pytest`` finds the test helpers as ``python -m pytest``
does (it failed with ``No module named 'tests'``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bare_pytest_collects_tests_that_import_their_helpers() -> None:
    pytest_bin = Path(sys.executable).parent / "pytest"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(pytest_bin), "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/serve/learning/test_batcher.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No module named 'tests'" not in proc.stdout
