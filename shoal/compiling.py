"""Saying so while numba compiles kernels, and for how long (the ``shoal`` command only).

A first run (a fresh clone, a new numba, an edited kernel) compiles the kernels a command
calls: tens of seconds in which nothing else is printed. numba fires a ``numba:compile`` event
around every real compilation, and none when a kernel loads from its on-disk cache, so the
notice appears exactly when compiling happens, whichever thread compiles (parser threads do).

>>> notice = CompileNotice(None)
>>> notice.seconds, notice.compiled
(0.0, False)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from numba.core import event

MESSAGE = "shoal: compiling kernels (first run only: later runs load them from numba's cache)"


class CompileNotice(event.Listener):
    """Prints ``MESSAGE`` on the first compilation and adds up the seconds spent compiling."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.seconds = 0.0
        self.compiled = False
        self._depth = 0
        self._start = 0.0
        self._lock = threading.Lock()  # numba compiles under its own global lock; this is cheap

    def on_start(self, ev: Any) -> None:
        with self._lock:
            if self._depth == 0:
                self._start = time.perf_counter()
                if not self.compiled and self.stream is not None:
                    print(MESSAGE, file=self.stream, flush=True)
                self.compiled = True
            self._depth += 1

    def on_end(self, ev: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self.seconds += time.perf_counter() - self._start


_current: CompileNotice | None = None


def seconds_compiling() -> float:
    """Seconds spent compiling so far under the ``compile_notice`` in force (0 without one)."""
    return _current.seconds if _current is not None else 0.0


@contextmanager
def compile_notice(stream: TextIO | None) -> Iterator[CompileNotice]:
    """While the block runs, announce compilations; after it, say how long they took."""
    global _current
    notice = CompileNotice(stream)
    _current = notice
    try:
        with event.install_listener("numba:compile", notice):
            yield notice
    finally:
        _current = None
    if notice.compiled and stream is not None:
        print(f"shoal: kernels compiled in {notice.seconds:.1f} s", file=stream, flush=True)
