"""Helpers of the server's tests: records, the offline reference, waiting on conditions, a
client of the TCP line protocol."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shoal import Model, TrainOptions, train
from shoal.serve import ModelService

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


def log_contents(state: Path | str) -> list[tuple[int, str]]:
    """The event log's (seq, record) rows, in order."""
    with sqlite3.connect(Path(state) / "events.sqlite") as db:
        return [
            (int(s), str(r)) for s, r in db.execute("SELECT seq, record FROM events ORDER BY seq")
        ]


def newest_snapshot(state: Path) -> Path:
    return sorted((state / "snapshots").glob("v*.shoal"))[-1]


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


def live_model(service: ModelService) -> Model:
    """The service's live model, once every logged event is in it."""
    learner = service.learner
    learner.wait_applied(service.info()["logged_seq"]).result(timeout=20)
    return learner.live.model


def tcp_address(url: str) -> tuple[str, int]:
    """``("127.0.0.1", 41234)`` from ``tcp://127.0.0.1:41234``."""
    host, _, port = url.removeprefix("tcp://").rpartition(":")
    return host.strip("[]"), int(port)


class LineClient:
    """A client of the line protocol on a blocking socket: send lines, read the replies."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *lines: str | bytes) -> None:
        self.sock.sendall(b"".join((x.encode() if isinstance(x, str) else x) + b"\n"
                                   for x in lines))  # fmt: skip

    def read(self, n: int) -> list[str]:
        """The next ``n`` reply lines (without their line ends); fails if the server closes."""
        out = []
        for _ in range(n):
            line = self.file.readline()
            if not line.endswith(b"\n"):
                raise ConnectionError(f"the server closed the connection after {out}{line!r}")
            out.append(line[:-1].decode())
        return out

    def ask(self, *lines: str) -> list[str]:
        """Send the lines, then read a reply for each one that is not blank."""
        self.send(*lines)
        return self.read(sum(1 for x in lines if x.strip()))

    def rest(self) -> list[str]:
        """Every reply line until the server closes the connection."""
        return [x.decode().removesuffix("\n") for x in self.file.readlines()]

    def close(self) -> None:
        self.file.close()
        self.sock.close()
