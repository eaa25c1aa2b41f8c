"""Dynamic batching: concurrent calls gathered into one call over all their requests.

Each prediction request pays a fixed price (parsing set-up, two kernel dispatches, the SQLite
write that keeps its features for feedback) that does not grow with its records, so under load
many small requests are cheaper as one batch. ``Batcher`` does this without a thread of its
own (leader and followers): a caller that finds no batch being gathered becomes the leader,
takes every request queued by then (up to ``max_rows`` records, waiting at most ``max_wait``
seconds for more), runs them in one ``run`` call and hands each caller its result; callers that
come meanwhile queue up for the next batch, whose leader is one of them. With ``max_wait`` 0 (the
default) nothing waits on purpose: a request alone runs at once, and under load the requests
that arrive while a batch runs form the next one.

>>> b = Batcher(lambda requests: [sum(r) for r in requests], size=len, max_rows=64)
>>> b.submit([1, 2, 3])
6
>>> b.batches, b.sizes.cumulative()[-1]
(1, (inf, 1))
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shoal.serve.histogram import Histogram

Request = TypeVar("Request")
Result = TypeVar("Result")

# upper bounds of the batch-size histogram (records per batch), as Prometheus buckets
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, float("inf"))


@dataclass
class _Call(Generic[Request, Result]):
    request: Request
    rows: int
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None

    def outcome_or_error(self) -> Result | BaseException:
        return self.error if self.error is not None else self.result  # type: ignore[return-value]


class Batcher(Generic[Request, Result]):
    """Gathers concurrent ``submit`` calls into one ``run`` call; thread-safe.

    ``run`` takes the gathered requests and returns one result per request, in order; it may
    put an exception in a request's place (that caller gets it raised) or raise itself (every
    caller of the batch gets it). ``size`` counts a request's records.
    """

    def __init__(
        self,
        run: Callable[[list[Request]], Sequence[Result | BaseException]],
        *,
        size: Callable[[Request], int],
        max_rows: int,
        max_wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._size = size
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[_Call[Request, Result]] = deque()
        self._leading = False
        self.sizes = Histogram(BUCKETS)  # records per batch

    @property
    def batches(self) -> int:
        """Batches run so far."""
        return self.sizes.cumulative()[-1][1]

    def submit(self, request: Request) -> Result:
        """Run ``request`` in the next batch; returns its result (or raises its error)."""
        (outcome,) = self.submit_many([request])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def submit_many(self, requests: Sequence[Request]) -> list[Result | BaseException]:
        """Run ``requests`` in the next batch(es); returns each one's result or error."""
        calls = [_Call[Request, Result](r, self._size(r)) for r in requests]
        with self._cond:
            self._queue.extend(calls)
            self._cond.notify_all()  # a leader waiting for more rows may have enough now
            while self._leading and not all(c.done for c in calls):
                self._cond.wait()
            if all(c.done for c in calls):
                return [c.outcome_or_error() for c in calls]
            self._leading = True
        try:
            while not all(c.done for c in calls):  # calls queued before ours come first
                self._execute(self._gather())
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()  # a follower whose call is still queued leads next
        return [c.outcome_or_error() for c in calls]

    def _gather(self) -> list[_Call[Request, Result]]:
        with self._cond:
            deadline = self._clock() + self.max_wait
            while sum(c.rows for c in self._queue) < self.max_rows:
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            calls = [self._queue.popleft()]  # one request larger than max_rows runs alone
            rows = calls[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_rows:
                rows += self._queue[0].rows
                calls.append(self._queue.popleft())
            return calls

    def _execute(self, calls: list[_Call[Request, Result]]) -> None:
        try:
            results: Sequence[Result | BaseException] = self._run([c.request for c in calls])
        except BaseException as exc:
            results = [exc] * len(calls)
        self.sizes.observe(sum(c.rows for c in calls))  # before any caller of it returns
        with self._cond:
            for call, result in zip(calls, results, strict=True):
                if isinstance(result, BaseException):
                    call.error = result
                else:
                    call.result = result
                call.done = True
            self._cond.notify_all()


def split(values: Sequence[Any], sizes: Sequence[int]) -> list[list[Any]]:
    """``values`` cut into consecutive parts of ``sizes``.

    >>> split([1, 2, 3, 4], [1, 0, 3])
    [[1], [], [2, 3, 4]]
    """
    out, start = [], 0
    for n in sizes:
        out.append(list(values[start : start + n]))
        start += n
    return out
