"""One file of the binary cache: the hashed batches of one input part, memory-mapped back.

The file holds plain little-endian arrays, so that reading it back is one ``mmap`` and a few
``numpy.frombuffer`` views per batch: the learner's kernel reads the page cache directly, with
no parsing, no copy and no Python per row. Layout (documented for users in
``docs/distributed.md``; every array starts at a multiple of 64 bytes):

- bytes 0-63: ``MAGIC``, the format version (uint32), zeros;
- the batches, one after another; a batch of ``n`` rows, ``nnz`` features and ``t`` tag bytes
  is ``indptr`` int64[n+1] (from 0), ``indices`` uint32[nnz], ``values`` float32[nnz],
  ``labels`` float64[n], ``weights`` float32[n], ``lines`` int64[n], and when ``t`` > 0
  ``tag_offsets`` int64[n+1] and ``tag_bytes`` uint8[t];
- the table: one ``TABLE`` record per batch (where it is, its size, its checksum, and the
  reader's counts after it: rows, lines, skipped lines, bytes of text);
- the footer: UTF-8 JSON (the key the file was written for, the input's identity, the table's
  place and checksum, the reader's totals);
- the last 32 bytes: the footer's offset, length and checksum (uint64 each), ``END``.

A file is written under a temporary name, synced, and renamed to its final name only once
complete (``CacheWriter``): a file under its final name is whole unless something damaged it
afterwards, which ``CacheFile.open`` detects (every byte it uses is covered by a checksum).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import secrets
import socket
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shoal.data.batch import Batch
from shoal.data.checksum import hash_bytes, hex64
from shoal.errors import DataError, ShoalError

MAGIC = b"SHOALBC\x00"
END = b"SHOALBCE"
VERSION = 1
HEAD = 64
ALIGN = 64
TRAILER = 32
TABLE = np.dtype(
    [(name, "<u8") for name in ("offset", "length", "rows", "nnz", "tag_bytes", "hash",
                                "read_rows", "read_lines", "read_skipped", "read_bytes")]
)  # fmt: skip
_ARRAYS = (  # name, dtype, length as a function of (rows, nnz, tag bytes)
    ("indptr", np.int64, lambda n, z, t: n + 1),
    ("indices", np.uint32, lambda n, z, t: z),
    ("values", np.float32, lambda n, z, t: z),
    ("labels", np.float64, lambda n, z, t: n),
    ("weights", np.float32, lambda n, z, t: n),
    ("lines", np.int64, lambda n, z, t: n),
    ("tag_offsets", np.int64, lambda n, z, t: n + 1 if t else 0),
    ("tag_bytes", np.uint8, lambda n, z, t: t),
)


class CacheInvalid(ShoalError):
    """A cache file that must not be used (stale, foreign, damaged); ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cache file {path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _layout(n: int, nnz: int, tags: int) -> list[tuple[str, np.dtype, int, int]]:
    """(name, dtype, count, offset within the batch) of a batch's arrays, and its length last."""
    out, pos = [], 0
    for name, dtype, count in _ARRAYS:
        c = count(n, nnz, tags)
        out.append((name, np.dtype(dtype), c, pos))
        pos = _align(pos + c * np.dtype(dtype).itemsize)
    out.append(("", np.dtype(np.uint8), 0, pos))
    return out


@dataclass
class CacheWriter:
    """Writes one cache file: ``append`` each batch with the reader's counts so far, then
    ``commit`` (synced, renamed into place) or ``discard``. Leaving the ``with`` block by an
    exception discards; a killed process leaves only a temporary file, which no reader opens.

    Batches are laid out, checksummed and written by a thread of their own (copying, hashing
    and writing release the GIL), a batch or two behind: the learner does not wait for the
    disk. An error there (a full disk) is raised by the next ``append`` or by ``commit``.
    """

    path: Path
    _tmp: Path = field(init=False)
    _f: Any = field(init=False)
    _rows: list[tuple[int, ...]] = field(default_factory=list, init=False)
    _pool: ThreadPoolExecutor = field(init=False)
    _pending: deque[Future[None]] = field(default_factory=deque, init=False)
    _buf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8), init=False)

    def __post_init__(self) -> None:
        self._tmp = temp_name(self.path)
        self._f = open(self._tmp, "xb")  # noqa: SIM115 -- closed by commit or discard
        self._f.write(MAGIC + VERSION.to_bytes(4, "little") + bytes(HEAD - len(MAGIC) - 4))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-cache-write")

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._f.closed:
            self.discard()

    def append(self, batch: Batch, read: tuple[int, int, int, int]) -> None:
        """Write ``batch``; ``read`` is the reader's (rows, lines, skipped, bytes) after it."""
        if batch.initial is not None:  # the format has no place for them (yet): never drop them
            i = int(np.argmax(batch.initial != 0))
            raise DataError(
                batch.source, int(batch.lines[i]), "the cache (--cache) does not keep initial "
                "predictions (the label's third number): train without --cache",
            )  # fmt: skip
        n, nnz, t = len(batch), batch.nnz, len(batch.tag_bytes)
        layout = _layout(n, nnz, t)
        arrays = []
        for name, dtype, count, off in layout[:-1]:
            src = np.ascontiguousarray(getattr(batch, name))
            if count and (src.dtype != dtype or len(src) != count):  # converting would change it
                raise ShoalError(
                    f"cannot cache a batch whose {name} is {len(src)} {src.dtype}, not {count} "
                    f"{dtype}: train without --cache and report this"
                )
            arrays.append((src, off, count * dtype.itemsize))
        self._pending.append(self._pool.submit(self._write, arrays, layout[-1][3], read, n, nnz, t))
        while len(self._pending) > 2:
            self._pending.popleft().result()

    def _write(self, arrays: list, length: int, read: tuple[int, ...], *sizes: int) -> None:
        """Lay a batch out in the buffer, checksum it, write it (the writer thread)."""
        if len(self._buf) < length:
            self._buf = np.zeros(max(length, 2 * len(self._buf)), dtype=np.uint8)
        chunk = self._buf[:length]
        pos = 0
        for src, off, nbytes in arrays:
            chunk[pos:off] = 0  # the padding before an array
            if nbytes:
                chunk[off : off + nbytes] = src.view(np.uint8)
            pos = off + nbytes
        chunk[pos:] = 0
        offset = self._f.tell()
        self._f.write(chunk.data)
        self._rows.append((offset, length, *sizes, hash_bytes(chunk), *read))

    def commit(self, meta: dict[str, Any]) -> int:
        """Write the table and the footer, sync, rename into place; return the file's size."""
        while self._pending:
            self._pending.popleft().result()
        self._pool.shutdown()
        f = self._f
        f.write(bytes(_align(f.tell()) - f.tell()))
        table = np.array(self._rows, dtype=TABLE) if self._rows else np.zeros(0, dtype=TABLE)
        tbytes = table.view(np.uint8)
        doc = {**meta, "version": VERSION, "batches": len(table), "table_offset": f.tell(),
               "table_hash": hex64(hash_bytes(tbytes))}  # fmt: skip
        f.write(tbytes.data)
        footer = json.dumps(doc, sort_keys=True).encode()
        at = f.tell()
        f.write(footer)
        f.write(np.array([at, len(footer), hash_bytes(np.frombuffer(footer, np.uint8))],
                         dtype="<u8").tobytes() + END)  # fmt: skip
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
        f.close()
        os.replace(self._tmp, self.path)
        _sync_dir(self.path.parent)
        return size

    def discard(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True)  # the batch being written, if any, finishes first
        self._pending.clear()
        self._f.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def temp_name(path: Path) -> Path:
    """Where ``path`` is written before it is complete: ``.NAME.HOST.PID.RANDOM.tmp``."""
    host = socket.gethostname().replace(".", "_")
    return path.with_name(f".{path.name}.{host}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _sync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (where the platform lets a directory be synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class CacheFile:
    """A verified cache file, memory-mapped: its footer (``meta``), table and batches.

    ``open`` checks everything before anything is used: the magic numbers, the footer's,
    table's and every batch's checksum, and that the table describes the file. The batches
    are views of the mapping, made once; reading them again costs nothing but the learning.
    """

    path: str
    size: int
    meta: dict[str, Any]
    table: np.ndarray
    _map: mmap.mmap
    _tags: np.ndarray

    @classmethod
    def open(cls, path: str, threads: int = 1) -> CacheFile:
        """Map and verify ``path``; ``CacheInvalid`` says why it cannot be used."""
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < HEAD + TRAILER:
                    raise CacheInvalid(path, f"damaged: truncated ({size} bytes)")
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise CacheInvalid(path, f"cannot be read: {exc.strerror or exc}") from None
        buf = np.frombuffer(mm, dtype=np.uint8)
        meta = _footer(path, buf)
        table = _table(path, buf, meta)
        _check_batches(path, buf, table, threads)
        tags = np.zeros(int(table["rows"].max(initial=0)) + 1, dtype=np.int64)
        return cls(path, size, meta, table, mm, tags)

    def batch(self, i: int, source: str) -> Batch:
        """Batch ``i``: views of the mapped file, named as read from ``source``."""
        rec = self.table[i]
        n, nnz, t, base = int(rec["rows"]), int(rec["nnz"]), int(rec["tag_bytes"]), rec["offset"]
        arrays = {
            name: np.frombuffer(self._map, dtype=dtype, count=count, offset=int(base) + off)
            for name, dtype, count, off in _layout(n, nnz, t)[:-1]
        }
        if not t:
            arrays["tag_offsets"] = self._tags[: n + 1]
        return Batch(**arrays, source=source)

    def __len__(self) -> int:
        return len(self.table)


def _footer(path: str, buf: np.ndarray) -> dict[str, Any]:
    if bytes(buf[: len(MAGIC)]) != MAGIC:
        raise CacheInvalid(path, "not a shoal cache file (no magic number)")
    if bytes(buf[-len(END) :]) != END:
        raise CacheInvalid(path, "damaged: truncated (no end marker)")
    version = int(buf[len(MAGIC) : len(MAGIC) + 4].view("<u4")[0])
    if version != VERSION:
        raise CacheInvalid(path, f"written in cache format {version}; this shoal reads {VERSION}")
    at, length, want = (int(x) for x in buf[-TRAILER : -len(END)].view("<u8"))
    if not HEAD <= at <= at + length <= len(buf) - TRAILER:
        raise CacheInvalid(path, "damaged: the trailer points outside the file")
    raw = buf[at : at + length]
    if hash_bytes(raw) != want:
        raise CacheInvalid(path, "damaged: the footer's checksum does not match")
    try:
        meta = json.loads(bytes(raw))
    except ValueError:
        raise CacheInvalid(path, "damaged: the footer is not JSON") from None
    if not isinstance(meta, dict):
        raise CacheInvalid(path, "damaged: the footer is not a JSON object")
    return meta


def _table(path: str, buf: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    try:
        n, at, want = int(meta["batches"]), int(meta["table_offset"]), str(meta["table_hash"])
    except (KeyError, TypeError, ValueError):
        raise CacheInvalid(path, "damaged: the footer does not describe the table") from None
    end = at + n * TABLE.itemsize
    if n < 0 or not HEAD <= at <= end <= len(buf) - TRAILER:
        raise CacheInvalid(path, "damaged: the table lies outside the file")
    raw = buf[at:end]
    if hex64(hash_bytes(raw)) != want:
        raise CacheInvalid(path, "damaged: the table's checksum does not match")
    table = raw.view(TABLE)
    pos = HEAD
    for i, rec in enumerate(table):
        length = _layout(int(rec["rows"]), int(rec["nnz"]), int(rec["tag_bytes"]))[-1][3]
        if rec["offset"] != pos or rec["length"] != length:
            raise CacheInvalid(path, f"damaged: batch {i} is not where the table says")
        pos += length
    if pos > at:
        raise CacheInvalid(path, "damaged: the batches overlap the table")
    return table


def _check_batches(path: str, buf: np.ndarray, table: np.ndarray, threads: int) -> None:
    """Every batch's checksum, on ``threads`` threads (the hash releases the GIL)."""

    def ok(i: int) -> bool:
        a, n = int(table["offset"][i]), int(table["length"][i])
        return hash_bytes(buf[a : a + n]) == int(table["hash"][i])

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="shoal-hash") as pool:
        good = list(pool.map(ok, range(len(table))))
    if not all(good):
        raise CacheInvalid(
            path, f"damaged: batch {good.index(False)}'s checksum does not match (a changed byte)"
        )
