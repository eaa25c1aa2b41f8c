"""A thread-safe histogram of plain counts, for the numbers ``/metrics`` reads from a service.

The services know nothing of Prometheus (see ``metrics.py``): they count into these, and the
collector turns them into Prometheus histograms when scraped.

>>> h = Histogram((1, 10, float("inf")))
>>> for x in (0.5, 3, 3, 50):
...     h.observe(x)
>>> h.cumulative(), h.sum
([(1, 1), (10, 3), (inf, 4)], 56.5)
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence


class Histogram:
    """Counts of observations by upper bound (the last bound should be infinity)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * len(self.bounds)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, x: float) -> None:
        i = min(bisect.bisect_left(self.bounds, x), len(self.bounds) - 1)
        with self._lock:
            self._counts[i] += 1
            self.sum += x

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper bound, observations <= it), ...]``, as Prometheus buckets count."""
        with self._lock:
            counts = list(self._counts)
        total, out = 0, []
        for bound, n in zip(self.bounds, counts, strict=True):
            total += n
            out.append((bound, total))
        return out
