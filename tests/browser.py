"""A real headless browser for the tests of shoal's pages: Chromium, driven from its command
line (``--dump-dom`` after the page's scripts ran, ``--screenshot``), with its console on stderr
so that an uncaught script error fails the test.

``make test`` installs Chromium from the OS packages when it is missing and it runs as root (CI
does; see the Makefile); elsewhere, without Chromium, these tests skip and say how to get it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on PATH (make unit installs it with apt-get as root)")


@dataclass(frozen=True)
class Page:
    dom: str  # the document after its scripts ran
    console: str  # what the page wrote to its console, with uncaught errors


def render(url: str, screenshot: Path, budget_ms: int = 6000) -> Page:
    """Load ``url`` in headless Chromium, let its scripts run for ``budget_ms`` of virtual time,
    keep a screenshot at ``screenshot`` and return the resulting DOM and console output."""
    common = [
        chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--virtual-time-budget={budget_ms}",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
    ]
    shot = subprocess.run(
        [*common, "--window-size=1300,900", f"--screenshot={screenshot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dump = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    assert screenshot.exists(), f"Chromium made no screenshot: {shot.stderr[-2000:]}"
    console = "\n".join(
        line
        for line in (shot.stderr + dump.stderr).splitlines()
        if "CONSOLE" in line or "Uncaught" in line
    )
    return Page(dump.stdout, console)
