"""Helpers of the server's tests: records, the offline reference, waiting on conditions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shoal import Model, TrainOptions, train

BASE = [f"{1 if i % 7 < 3 else -1} |u id{i % 7} d{i % 3} |v x:{(i % 5) / 4:.2f}" for i in range(60)]


def event(i: int, label: int | None = None) -> str:
    """A distinct labeled VW record."""
    y = label if label is not None else (1 if i % 5 < 2 else -1)
    return f"{y} |u id{i % 11} e{i} |v x:{(i % 9) / 8:.3f}"


def offline(base: Path, records: Sequence[str], tmp: Path) -> Model:
    """``shoal train`` of ``base`` continued on ``records``, in order."""
    model = Model.load(base)
    if records:
        data = tmp / f"events-{time.monotonic_ns()}.vw"
        data.write_text("".join(r + "\n" for r in records))
        train(model, [data], TrainOptions(parse_threads=1))
    return model


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


class Clock:
    """Wall time that tests move by hand (feedback expiry)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now
