"""The ``Executor`` interface: how the coordinator drives workers, wherever they run.

An executor runs task attempts on its workers and reports what happened to each: done (with
its result), failed (with the error), or died with its worker. Scheduling, retries, duplicates
of stragglers and deadlines are the coordinator's: executors stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from shoal.errors import ConfigError, DataError, ShoalError
from shoal.train.task import Task, TaskResult

EventKind = Literal["done", "failed", "died"]


@dataclass
class Event:
    """What happened to attempt ``attempt``."""

    attempt: int
    kind: EventKind
    result: TaskResult | None = None
    error: str = ""
    fatal: bool = False  # the same attempt would fail again (bad data or settings): no retry


def failure(attempt: int, exc: BaseException) -> Event:
    """The ``failed`` event for an exception raised by a task.

    Bad records and invalid settings fail the same way on every attempt, so they are fatal: the
    run stops at once instead of reading the shard again.
    """
    text = str(exc) if isinstance(exc, ShoalError) else f"{type(exc).__name__}: {exc}"
    return Event(attempt, "failed", error=text, fatal=isinstance(exc, DataError | ConfigError))


class Executor(Protocol):
    def launch(self) -> None:
        """Begin starting the workers, without waiting (they start while the data is planned);
        may do nothing, leaving it all to ``start``."""

    def start(self) -> None:
        """Start the workers (unless launched) and wait until they are ready; on failure,
        release whatever was started."""

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
