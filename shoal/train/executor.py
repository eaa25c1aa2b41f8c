"""The ``Executor`` interface: how the coordinator drives workers, wherever they run.

An executor runs task attempts on its workers and reports what happened to each: done (with
its result), failed (with the error), or died with its worker. Scheduling, retries, duplicates
of stragglers and deadlines are the coordinator's: executors stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from shoal.train.task import Task, TaskResult

EventKind = Literal["done", "failed", "died"]


@dataclass
class Event:
    """What happened to attempt ``attempt``."""

    attempt: int
    kind: EventKind
    result: TaskResult | None = None
    error: str = ""


class Executor(Protocol):
    def start(self) -> None:
        """Start the workers; on failure, release whatever was started."""

    def broadcast(self, step: int, model: bytes) -> None:
        """Make the global model of ``step`` (a model file's bytes) available to workers."""

    def idle(self) -> int:
        """Workers free to take an attempt now."""

    def alive(self) -> int:
        """Workers running."""

    def submit(self, attempt: int, task: Task) -> None:
        """Run ``task`` on an idle worker as attempt number ``attempt``."""

    def poll(self, timeout: float) -> list[Event]:
        """Events that happened, waiting at most ``timeout`` seconds for the first."""

    def cancel(self, attempt: int) -> None:
        """Stop attempt ``attempt`` (its worker is replaced if need be); no event follows."""

    def close(self) -> None:
        """Stop every worker."""
