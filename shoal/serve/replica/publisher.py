"""The learner's side of replication: every snapshot it writes is published to the shelf.

``--publish URI`` makes every snapshot (``--snapshot-every-events`` / ``--snapshot-every-seconds``
set how often; manual snapshots, rollbacks and loads count too) a published one. Publishing runs
in a thread of its own, in order, so a slow object store never holds up learning; a snapshot
that could not be published is reported and the next one goes (the newest is what counts).
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from shoal.serve.replica.shelf import Shelf

log = logging.getLogger("shoal.serve")


class SnapshotPublisher:
    """``offer(version, ...)`` from the learner thread; ``close()`` publishes what is queued."""

    def __init__(self, shelf: Shelf, snapshots: Path, name: str) -> None:
        self.shelf = shelf
        self.name = name
        self.snapshots = snapshots
        self.published = 0
        self.failed = 0
        self.last_version = 0
        self._queue: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="shoal-publish", daemon=True)
        self._thread.start()

    def offer(self, version: int, applied_seq: int, logged_seq: int) -> None:
        """A new version was written: publish it (once per version)."""
        if version != self.last_version:
            self.last_version = version
            self._queue.put((version, applied_seq, logged_seq))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            version, applied, logged = item
            try:
                payload = (self.snapshots / f"v{version:08d}.shoal").read_bytes()
                self.shelf.put(payload, version=version, applied_seq=applied, logged_seq=logged,
                               name=self.name)  # fmt: skip
                self.published += 1
            except Exception as exc:  # a full disk, an unreachable bucket: the next one goes
                self.failed += 1
                log.error("publishing version %d to %s failed: %s", version, self.shelf.uri, exc)
