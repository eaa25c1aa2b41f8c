"""Where a front end runs the model's work: on the event loop when it is small, else in a thread;
and how small predictions on the loop are batched.

Scoring or logging a few records takes tens of microseconds, less than the hop to a worker
thread and back (measured: ~0.35 ms per request on 2 busy cores, which halved the rate of
single-record HTTP predictions). Larger calls go to a thread, so that no request holds up the
loop for long -- and there, concurrent calls meet in the service's dynamic batching.

Small predictions meet too: ``Predictions`` gathers those that come in one turn of the event
loop (with many clients, many requests are read in one turn) and scores them in one call of the
service, after the requests read in that turn had their chance to join. The wait is bounded by
that turn; the batch by the service's ``batch_max_records``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shoal.serve.service import ModelService, Prediction

T = TypeVar("T")

INLINE_RECORDS = 64  # calls over up to this many records run on the event loop


async def on_records(call: Callable[..., T], records: Sequence[Any], **kw: Any) -> T:
    """``call(records, **kw)``: on the event loop for a few records, else in a thread."""
    if len(records) <= INLINE_RECORDS:
        return call(records, **kw)
    return await asyncio.to_thread(call, records, **kw)


class Predictions:
    """Predictions for the requests of one event loop: small ones gathered per loop turn."""

    def __init__(self) -> None:
        self._waiting: dict[ModelService, list[tuple[Sequence[Any], asyncio.Future[Any]]]] = {}

    async def __call__(self, service: ModelService, records: Sequence[Any]) -> Prediction:
        if len(records) > INLINE_RECORDS:
            return await asyncio.to_thread(service.predict, records)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        waiting = self._waiting.setdefault(service, [])
        if not waiting:  # the first of this turn: score them all once the turn is over
            loop.call_soon(self._score, service)
        waiting.append((records, future))
        return await future

    def _score(self, service: ModelService) -> None:
        waiting = self._waiting.pop(service, [])
        try:
            outcomes = service.predict_many([records for records, _ in waiting])
        except Exception as exc:  # the service is closing: every request's answer
            outcomes = [exc] * len(waiting)
        for (_, future), outcome in zip(waiting, outcomes, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
