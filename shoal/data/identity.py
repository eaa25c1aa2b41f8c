"""What a cache file's batches came from: an input part's size, time and checksum.

A part is a whole input file, or the records of a file that begin in a byte range (a shard).
Its identity is the file's size and modification time, which are cheap to look at, and a
checksum (``checksum.py``) of exactly the bytes its reader depends on, which catches an edit
that keeps both: for a whole file every byte; for a text range the byte before it (whether the
range starts at a record), every byte up to the end of the record that crosses its end, and for
CSV and TSV the header line (it maps the fields to the schema's columns). Local files are
memory-mapped and hashed on several threads; a URI is read in the same pieces, so both give the
same checksum.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.vw"
>>> _ = p.write_text("1 |f a\\n-1 |f b\\n1 |f c\\n")
>>> Part(str(p), "vw", 0, None).hash(threads=1)[:2], Part(str(p), "vw", 3, 9).hash(threads=1)[:2]
((0, 22), (2, 15))
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass

import numpy as np

from shoal.data import files
from shoal.data.checksum import CHUNK, checksum, combine, hash_bytes
from shoal.errors import ConfigError


@dataclass(frozen=True)
class Part:
    """The bytes of an input that a part's records come from, for its checksum."""

    name: str
    format: str
    start: int
    end: int | None

    def hash(self, threads: int) -> tuple[int, int, int]:
        """(first byte, end byte, checksum) of what the reader of this part depends on: the
        whole file, or for a text range the byte before it (is it a record's start?) to the end
        of the record that crosses its end, and for CSV and TSV the header line too (it maps
        the fields to the schema's columns)."""
        ranged = (self.start > 0 or self.end is not None) and self.format != "parquet"
        a, b, digest = (
            hash_stream(self.name, self.start, self.end, ranged)
            if files.is_uri(self.name)
            else hash_local(self.name, self.start, self.end, ranged, threads)
        )
        if ranged and a > 0 and self.format in ("csv", "tsv"):
            with files.open_input(self.name) as f:
                header = f.readline()
            digest = combine([hash_bytes(np.frombuffer(header, np.uint8)), digest], b - a)
        return a, b, digest


def hash_local(
    name: str, start: int, end: int | None, ranged: bool, threads: int
) -> tuple[int, int, int]:
    """``Part.hash`` of a local file, memory-mapped, on ``threads`` threads."""
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, 0, checksum(np.zeros(0, dtype=np.uint8))
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    with contextlib.closing(mm):
        a, b = 0, size
        if ranged:
            a = max(0, start - 1)
            if end is not None and end < size:
                nl = mm.find(b"\n", max(0, end - 1))
                b = size if nl < 0 else nl + 1
        view = np.frombuffer(mm, dtype=np.uint8)[a:b]
        try:
            return a, b, checksum(view, threads)
        finally:
            del view  # the mapping closes only without views of it


def hash_stream(name: str, start: int, end: int | None, ranged: bool) -> tuple[int, int, int]:
    """``Part.hash`` of a URI, read in ``CHUNK`` pieces (the same pieces as a local file's)."""
    a = max(0, start - 1) if ranged else 0
    hashes, pos = [], a
    with files.open_input(name) as f:
        if a:
            f.seek(a)
        while True:
            piece = f.read(CHUNK)
            done = not piece
            if ranged and end is not None and piece and pos + len(piece) >= end:
                nl = piece.find(b"\n", max(0, end - 1 - pos))
                if nl >= 0:
                    piece, done = piece[: nl + 1], True
            if piece:
                hashes.append(hash_bytes(np.frombuffer(piece, dtype=np.uint8)))
                pos += len(piece)
            if done:
                break
    return a, pos, combine(hashes or [hash_bytes(np.zeros(0, np.uint8))], pos - a)


def stamp_of(name: str) -> tuple[int, int]:
    """(size, modification time in ns) of an input; a URI's time where its store gives one."""
    if not files.is_uri(name):
        info = os.stat(name)
        return info.st_size, info.st_mtime_ns
    import pyarrow.fs as pafs

    fs, inner = files.arrow_filesystem(name)
    got = fs.get_file_info(inner)
    if got.type == pafs.FileType.NotFound:
        raise ConfigError("cache", f"{name}: no such file")
    return int(got.size or 0), int(got.mtime_ns or 0)
