"""Planning: input paths -> shards (whole files, or byte ranges cut at record boundaries).

Workers read their shards themselves, local paths and URIs (``s3://...``) alike; a shard is
only a path and a byte range. Planning is O(shards): an uncompressed text file larger than a
shard is cut at the first record boundary after each multiple of the shard size, found by a
seek and a short read, so every range starts exactly at a record. Line numbers are not counted
ahead: a worker counts the lines before its range only when an error must name a true line
(``Shard.lines_before``). Files no larger than a shard are not read at all (their sizes come
from the file system), so a data set of many part files behind a URI is planned without
downloading it. Parquet files are cut between row groups (from
their footers; a range reads the row groups that begin in it). gzip files are not splittable
and stay whole, as do files that their file system only streams.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from shoal.data import files as data_files
from shoal.data.blocks import open_file, whole_only
from shoal.errors import ShoalError

_SCAN = 1 << 16  # bytes read at a time to find the end of the line a cut falls in


@dataclass(frozen=True)
class Shard:
    """Records of ``path`` that begin in bytes ``[start, end)`` (``end`` None: to the end).

    ``first_line``: the lines (Parquet: rows) before ``start``; None when not counted (a text
    file's cut: ``lines_before`` counts them when an error needs a true line number).
    """

    index: int
    path: str
    start: int = 0
    end: int | None = None
    first_line: int | None = 0

    def lines_before(self) -> int:
        """The lines before ``start``, counted now if the plan did not (reads that far)."""
        if self.first_line is not None:
            return self.first_line
        from shoal.data.blocks import count_lines

        return count_lines(self.path, self.start)

    def describe(self) -> str:
        if self.start == 0 and self.end is None:
            return f"shard {self.index} ({self.path})"
        return f"shard {self.index} ({self.path}, bytes {self.start}-{self.end})"


def _kind(path: str) -> str:
    """How a file may be cut: "whole" (gzip, streams), "parquet" (row groups) or "text" (lines)."""
    with open_file(path) as f:
        if whole_only(f):
            return "whole"
        return "parquet" if f.read(4) == b"PAR1" else "text"


def _cut_points(path: str, size: int, target: int) -> list[int]:
    """Offsets of the record starts nearest after every multiple of ``target`` bytes.

    Reads only around each cut (a seek, then up to the next newline): planning costs a few
    small reads per shard, not a pass over the file.
    """
    cuts: list[int] = []
    want = target
    with data_files.open_input(path) as f:
        while want < size:
            f.seek(want)
            pos, nl = want, -1
            while nl < 0:
                chunk = f.read(_SCAN)
                if not chunk:
                    return cuts  # no newline after ``want``: the last record runs to the end
                nl = chunk.find(b"\n")
                if nl < 0:
                    pos += len(chunk)
            cut = pos + nl + 1
            if cut < size:
                cuts.append(cut)
            want = max(want + target, cut + 1)
    return cuts


def plan(inputs: Sequence[str | os.PathLike[str]], shards: int) -> list[Shard]:
    """Cut the inputs into about ``shards`` shards of similar size, in input order."""
    files = data_files.expand(inputs)
    if not files:
        raise ShoalError("no input files given")
    for f in files:
        if data_files.is_stream(f):
            raise ShoalError(
                f"{f} is a pipe: workers read their shards themselves, so distributed training "
                "needs files (train without --workers to read a pipe)"
            )
    sizes = [data_files.file_size(f) for f in files]
    total = max(1, sum(sizes))
    target = max(1, -(-total // max(1, shards)))
    out: list[Shard] = []
    for path, size in zip(files, sizes, strict=True):
        kind = "whole" if size <= target else _kind(path)
        if kind == "whole":
            out.append(Shard(len(out), path))
            continue
        cuts: list[tuple[int, int | None]]
        if kind == "parquet":
            from shoal.data.parquet import cut_points  # imports pyarrow: only when needed

            cuts = list(cut_points(path, target))  # row counts come free, from the footer
        else:
            cuts = [(cut, None) for cut in _cut_points(path, size, target)]
        start = 0
        first_of: int | None = 0
        for cut, lines in cuts:
            out.append(Shard(len(out), path, start, cut, first_of))
            start, first_of = cut, lines
        out.append(Shard(len(out), path, start, None, first_of))
    return out


def fingerprint(shards: Sequence[Shard]) -> str:
    """Identifies the data: paths, sizes, and a hash of the first and last MiB of each file
    (of a URI, only its path and size)."""
    h = hashlib.sha256()
    for path in sorted({s.path for s in shards}):
        size = data_files.file_size(path)
        h.update(f"{path}\0{size}\0".encode())
        if data_files.is_uri(path):
            continue  # an object store's file: its path and size stand for it
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 1 << 20:  # the last MiB, or the rest of a file of 1 to 2 MiB
                f.seek(max(1 << 20, size - (1 << 20)))
                h.update(f.read())
    for s in shards:
        h.update(f"{s.index}:{s.path}:{s.start}:{s.end}\n".encode())
    return h.hexdigest()
