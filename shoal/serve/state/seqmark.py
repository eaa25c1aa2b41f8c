"""The highest event sequence number ever acknowledged, in a file of its own (``DIR/seq``).

The event log's own counter lives in the database, and a damaged write-ahead log (cut short
after a crash, restored from an old copy) takes it back with the events it loses: SQLite then
opens a log that looks whole, and the next events would reuse the lost numbers. This file is
written after each commit and synced before any of the commit's events is acknowledged, so at
start-up a log that ends below it has lost acknowledged events -- the server says which, and
stops (``recovery.py``). It is overwritten in place with a number of fixed width: a full disk
cannot fail the write for want of a new block.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "seq"
>>> mark = SeqMark(path)
>>> mark.open(), mark.write(42), mark.close(), SeqMark(path).open()
(0, None, None, 42)
"""

from __future__ import annotations

import os
from pathlib import Path

from shoal.serve.errors import StateDirError

_WIDTH = 20  # digits: any 64-bit sequence number


class SeqMark:
    """``open()`` (the mark, 0 for a new file), ``write(seq)`` (durable on return), ``close()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = 0
        self._fd: int | None = None

    def open(self) -> int:
        new = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            text = os.pread(self._fd, 64, 0).decode("ascii", "replace").strip()
            if new:  # the file's name must survive a crash too
                _sync_dir(self.path.parent)
        except OSError as exc:
            raise StateDirError(f"cannot use {self.path}: {exc.strerror}") from None
        if text and not (text.isascii() and text.isdigit() and len(text) <= _WIDTH):
            self.close()
            raise StateDirError(
                f"{self.path} is damaged ({text[:30]!r}): it holds the highest event sequence "
                "number acknowledged; write that number in it (see the event log), or remove it "
                "if none is known"
            )
        self.value = int(text or 0)
        return self.value

    def write(self, seq: int) -> None:
        """Record ``seq`` durably (raises ``OSError`` if the disk refuses)."""
        assert self._fd is not None, "SeqMark.open() first"
        os.pwrite(self._fd, f"{seq:0{_WIDTH}d}\n".encode(), 0)
        os.fdatasync(self._fd)
        self.value = seq

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
