"""Where a front end runs the model's work: on the event loop when it is small, else in a thread;
and how small predictions on the loop are batched.

Scoring or logging a few records takes tens of microseconds, less than the hop to a worker
thread and back (measured: ~0.35 ms per request on 2 busy cores, which halved the rate of
single-record HTTP predictions). Larger calls go to a thread, so that no request holds up the
loop for long -- and there, concurrent calls meet in the service's dynamic batching.

Small calls meet too: a ``LoopTurn`` gathers those that come in one turn of the event loop
(with many clients, many requests are read in one turn) into one call, after the requests read
in that turn had their chance to join: ``Predictions`` for HTTP's predictions, the TCP server
for its lines. The wait is bounded by that turn; a batch of predictions by the service's
``batch_max_records``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from shoal.serve.learning.service import ModelService
from shoal.serve.reading.scoring import Prediction

T = TypeVar("T")
Request = TypeVar("Request")
Result = TypeVar("Result")

INLINE_RECORDS = 64  # calls over up to this many records run on the event loop...
INLINE_BYTES = 64 << 10  # ...if the request is no larger than this (one record can be 7 MB)


def inline(records: Sequence[Any], nbytes: int) -> bool:
    """Whether a call on ``records`` (from a request of ``nbytes``) is small enough for the
    event loop: decided by bytes as well as records, as one huge record takes as long."""
    return len(records) <= INLINE_RECORDS and nbytes <= INLINE_BYTES


async def on_records(
    call: Callable[[Sequence[Any]], T], records: Sequence[Any], nbytes: int = 0
) -> T:
    """``call(records)``: on the event loop for a small request, else in a thread."""
    if inline(records, nbytes):
        return call(records)
    return await asyncio.to_thread(call, records)


class LoopTurn(Generic[Request, Result]):
    """Calls made in one turn of the event loop, gathered into one call of ``run``.

    ``run`` takes the requests and returns each one's result, or an exception in its place;
    it runs on the loop, after the callbacks that were ready in the turn of the first call.
    """

    def __init__(self, run: Callable[[list[Request]], Sequence[Result | BaseException]]) -> None:
        self._run = run
        self._waiting: list[tuple[Request, asyncio.Future[Result]]] = []

    async def __call__(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if not self._waiting:  # the first of this turn: run them all once the turn is over
            loop.call_soon(self._flush)
        self._waiting.append((request, future))
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        outcomes: Sequence[Result | BaseException]
        try:
            outcomes = self._run([request for request, _ in waiting])
        except Exception as exc:  # the service is closing: every request's answer
            outcomes = [exc] * len(waiting)
        for (_, future), outcome in zip(waiting, outcomes, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


class Predictions:
    """Predictions for the requests of one event loop: small ones gathered per loop turn."""

    def __init__(self) -> None:
        self._turns: dict[ModelService, LoopTurn[Sequence[Any], Prediction]] = {}

    async def __call__(
        self, service: ModelService, records: Sequence[Any], nbytes: int = 0
    ) -> Prediction:
        if not inline(records, nbytes):
            return await asyncio.to_thread(service.predict, records)
        turn = self._turns.get(service)
        if turn is None:
            turn = self._turns[service] = LoopTurn(service.predict_many)
        return await turn(records)
