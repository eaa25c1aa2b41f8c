"""Text files in blocks of whole lines: gzip on the fly, byte ranges cut at record boundaries,
and parsing a few blocks ahead on threads.

Every line-oriented format (VW, svmlight, CSV/TSV, JSON lines) is read this way, from a local
path or a URI alike (``files.open_input``), so each of them can be cut into byte ranges by the
planner and read with bounded memory.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, BinaryIO, NamedTuple, TypeVar, cast

import numpy as np

from shoal.data import files
from shoal.data.batch import Batch
from shoal.errors import ShoalError

T = TypeVar("T")
SKIP_HINT = "use --on-bad-record skip to skip such lines"
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark


class Parsed(NamedTuple):
    """What a block parser returns: the rows of a ``Batch`` and the first bad line, if any.

    ``lines`` are 0-based line numbers within the block; ``n_lines`` counts every line of the
    block (blank and skipped ones too); ``problem`` describes line ``err_line`` ("" if none);
    ``initial`` holds the rows' initial predictions (``Batch.initial``), or None.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    tag_offsets: np.ndarray
    tag_bytes: np.ndarray
    lines: np.ndarray
    n_lines: int
    skipped: int
    err_line: int
    problem: str
    initial: np.ndarray | None = None

    def batch(self, source: str, first_line: int) -> Batch:
        """The rows as a Batch of ``source``, whose block starts at line ``first_line``."""
        return Batch(
            indptr=self.indptr,
            indices=self.indices,
            values=self.values,
            labels=self.labels,
            weights=self.weights,
            tag_offsets=self.tag_offsets,
            tag_bytes=self.tag_bytes,
            lines=self.lines + first_line,
            source=source,
            initial=self.initial,
        )


@contextmanager
def open_file(path: str) -> Iterator[BinaryIO]:
    """The bytes of a local file or a URI, gzip decompressed on the fly.

    gzip is told by its magic bytes, not by the name. A gzip stream cannot be entered in the
    middle, and neither can a file that its file system only streams (``whole_only``).
    """
    with files.open_input(path) as raw:
        if raw.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw


def whole_only(f: BinaryIO) -> str:
    """Why ``f`` cannot be read from a byte offset ("" if it can)."""
    if isinstance(f, gzip.GzipFile):
        return "is gzip-compressed"
    return "" if f.seekable() else "is only streamed by its file system"


@contextmanager
def _reading(path: str) -> Iterator[None]:
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated gzip stream
        raise ShoalError(f"{path}: cannot read: {exc}") from None


def read_bytes(f: BinaryIO, n: int, path: str) -> bytes:
    with _reading(path):
        return f.read(n)


def skip_bom(f: BinaryIO, path: str) -> None:
    """Step over a UTF-8 byte-order mark at the start of ``f`` (Excel and Notepad write one);
    ``peek`` consumes nothing else, so a pipe loses nothing."""
    with _reading(path):
        if cast(io.BufferedReader, f).peek(3)[:3] == BOM:  # a gzip file peeks too
            f.read(3)


def seek_record(f: BinaryIO, start: int, path: str) -> None:
    """Position ``f`` at the first record that begins at or after byte ``start``.

    A record begins at 0 or right after a newline: look at byte start-1 and, unless it is a
    newline, skip to the end of the record that crosses ``start``.
    """
    if start <= 0:
        return
    f.seek(start - 1)
    if read_bytes(f, 1, path) == b"\n":
        return
    while True:
        chunk = read_bytes(f, 1 << 16, path)
        if not chunk:
            return
        nl = chunk.find(b"\n")
        if nl >= 0:
            f.seek(nl + 1 - len(chunk), os.SEEK_CUR)
            return


def blocks(
    f: BinaryIO, block_bytes: int, path: str, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Blocks of whole lines; the last block may lack its final newline.

    With a byte range, the blocks hold exactly the records that begin in ``[start, end)``: from
    the first record starting at or after ``start`` to the end of the record that crosses
    ``end``. Every record of a file cut into adjacent ranges is thus read exactly once.
    """
    seek_record(f, start, path)
    pos = f.tell() if end is not None else 0  # file offset of data[0]: a range needs it
    tail = b""
    while True:
        chunk = read_bytes(f, block_bytes, path)
        if not chunk:
            if tail and (end is None or pos < end):
                yield tail
            return
        data = tail + chunk if tail else chunk
        if end is not None and pos + len(data) >= end:
            # the record holding byte end-1 is the last one: it ends at the next newline
            cut = data.find(b"\n", max(0, end - 1 - pos))
            if cut >= 0:
                if end > pos:
                    yield data[: cut + 1]
                return
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data  # a line longer than a block: keep reading
            continue
        tail = data[cut + 1 :]
        pos += cut + 1
        yield data[: cut + 1]


def count_lines(path: str | os.PathLike[str], upto: int) -> int:
    """Number of newlines in the first ``upto`` bytes of an uncompressed file."""
    n = 0
    with open_file(str(path)) as f:
        left = upto
        while left > 0:
            chunk = read_bytes(f, min(left, 1 << 22), str(path))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def ordered_map(
    fn: Callable[[T], Any], items: Iterator[T], threads: int
) -> Iterator[tuple[T, Any]]:
    """``(item, fn(item))`` in input order, computed by ``threads`` threads a few items ahead.

    The parser kernels release the GIL, so blocks are parsed in parallel on several cores while
    the consumer (the learner) works on earlier ones. Memory stays bounded: at most
    ``2 * threads`` blocks are in flight.
    """
    if threads <= 1:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[T, Future[Any]]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shoal-parse") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= 2 * threads:
                    head, fut = pending.popleft()
                    yield head, fut.result()
            while pending:
                head, fut = pending.popleft()
                yield head, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
