"""``then``: a future of what a function makes of another future's result.

The calls that cross a process or a machine (the learner's RPC, a replica's leader) answer
with plain data; ``then`` turns it into what the local call returns (a ``Version``, the
``seqs`` of a learn), passing any error on as it is.

>>> from concurrent.futures import Future
>>> f: Future[dict] = Future()
>>> seqs = then(f, lambda body: body["seqs"])
>>> f.set_result({"seqs": [7]})
>>> seqs.result()
[7]
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def then(fut: Future[T], fn: Callable[[T], U]) -> Future[U]:
    """A future of ``fn(fut.result())``; ``fut``'s exception, or ``fn``'s, if either raises."""
    out: Future[U] = Future()

    def done(f: Future[T]) -> None:
        exc = f.exception()
        if exc is not None:
            out.set_exception(exc)
            return
        try:
            out.set_result(fn(f.result()))
        except Exception as e:
            out.set_exception(e)

    fut.add_done_callback(done)
    return out
