"""Predictions' features on their way to the event log, bounded in bytes and in rows.

Each prediction's features are kept for its feedback. They wait here for the event log's writer,
which takes them all in its next transaction, and at the latest ``DELAY`` seconds after the
first of them came (the writer is woken for it when idle). What a client can make the server
hold this way is bounded: past ``max_bytes`` of features (or ``MAX_ROWS`` predictions) waiting,
a prediction's features are not kept -- it is still answered, its event id says so (it ends in
``DROPPED``), its feedback gets 410, and ``shoal_feedback_features_dropped`` counts it. A single
prediction whose features are over the bound is never kept.

>>> buffer = FeatureBuffer(max_bytes=64)
>>> buffer.add([("a", "| x", 1.0), ("b", "| " + "y" * 40, 1.0)]), buffer.dropped
([True, False], 1)
>>> [row[0] for row in buffer.take()], buffer.bytes
(['a'], 0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

DELAY = 0.05  # seconds features may wait for a transaction
MAX_ROWS = 200_000  # predictions whose features may wait at once
DROPPED = "x"  # the last character of the event id of a prediction whose features were dropped

Row = tuple[str, str, float]  # event id, features, expiry time


class FeatureBuffer:
    """Rows of (event id, features, expires) waiting for the writer; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0  # predictions whose features were not kept
        self._rows: list[Row] = []
        self._since = 0.0  # monotonic time the oldest waiting row came
        self._lock = threading.Lock()

    def add(self, rows: Sequence[Row]) -> list[bool]:
        """Keep what fits, in order; whether each row was kept."""
        kept = []
        with self._lock:
            for row in rows:
                size = len(row[0]) + len(row[1]) + 32
                ok = self.bytes + size <= self.max_bytes and len(self._rows) < MAX_ROWS
                if ok:
                    if not self._rows:
                        self._since = time.monotonic()
                    self._rows.append(row)
                    self.bytes += size
                else:
                    self.dropped += 1
                kept.append(ok)
        return kept

    def take(self) -> list[Row]:
        """Every waiting row; the buffer is empty after."""
        with self._lock:
            rows, self._rows, self.bytes = self._rows, [], 0
        return rows

    def wait(self) -> float | None:
        """Seconds until the waiting rows are due for a transaction (None: none wait)."""
        with self._lock:
            if not self._rows:
                return None
            return max(0.0, self._since + DELAY - time.monotonic())

    def __len__(self) -> int:
        return len(self._rows)
