"""Planning: input paths -> shards (whole files, or byte ranges cut at record boundaries).

Workers read their shards themselves; a shard is only a path and a byte range. Planning reads
each uncompressed text file once, quickly (newline counting), so that every range starts
exactly at a record and knows its first line number: error messages name real lines. Parquet
files are cut between row groups (from their footers; a range reads the row groups that begin
in it). gzip files are not splittable and stay whole, as do files behind URIs (``s3://...``),
which are read by the workers themselves.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.data import files as data_files
from shoal.errors import ShoalError

_SCAN = 1 << 22


@dataclass(frozen=True)
class Shard:
    """Records of ``path`` that begin in bytes ``[start, end)`` (``end`` None: to the end)."""

    index: int
    path: str
    start: int = 0
    end: int | None = None
    first_line: int = 0

    def describe(self) -> str:
        if self.start == 0 and self.end is None:
            return f"shard {self.index} ({self.path})"
        return f"shard {self.index} ({self.path}, bytes {self.start}-{self.end})"


def expand(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files named by paths, globs, directories and URIs (directories: their files, sorted)."""
    out: list[str] = []
    for item in inputs:
        text = str(item)
        if data_files.is_uri(text):
            out.extend(data_files.list_dir(text) if data_files.is_dir(text) else [text])
        elif Path(text).is_dir():
            out.extend(data_files.list_dir(text))
        elif any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise ShoalError(f"{text}: no file matches this pattern")
            out.extend(m for m in matches if Path(m).is_file())
        elif Path(text).is_file():
            out.append(text)
        else:
            raise ShoalError(f"{text}: no such file")
    return out


def _kind(path: str) -> str:
    """How a file may be cut: "whole" (gzip, URIs), "parquet" (row groups) or "text" (lines)."""
    if data_files.is_uri(path):
        return "whole"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "whole"
    return "parquet" if magic == b"PAR1" else "text"


def _cut_points(path: str, size: int, target: int) -> list[tuple[int, int]]:
    """(offset, lines before it) of record starts near every multiple of ``target`` bytes."""
    cuts: list[tuple[int, int]] = []
    want = target
    lines = 0
    pos = 0
    with open(path, "rb") as f:
        while want < size:
            chunk = f.read(_SCAN)
            if not chunk:
                break
            end = pos + len(chunk)
            while want < end:
                nl = chunk.find(b"\n", max(0, want - pos))  # want may lie in an earlier chunk
                if nl < 0:
                    break
                cut = pos + nl + 1
                if cut < size:
                    cuts.append((cut, lines + chunk.count(b"\n", 0, nl + 1)))
                want = max(want + target, cut + 1)
            lines += chunk.count(b"\n")
            pos = end
    return cuts


def plan(inputs: Sequence[str | os.PathLike[str]], shards: int) -> list[Shard]:
    """Cut the inputs into about ``shards`` shards of similar size, in input order."""
    files = expand(inputs)
    if not files:
        raise ShoalError("no input files given")
    sizes = [data_files.file_size(f) for f in files]
    total = max(1, sum(sizes))
    target = max(1, -(-total // max(1, shards)))
    out: list[Shard] = []
    for path, size in zip(files, sizes, strict=True):
        kind = "whole" if size <= target else _kind(path)
        if kind == "whole":
            out.append(Shard(len(out), path))
            continue
        if kind == "parquet":
            from shoal.data.parquet import cut_points  # imports pyarrow: only when needed

            cuts = cut_points(path, target)
        else:
            cuts = _cut_points(path, size, target)
        start, first = 0, 0
        for cut, lines in cuts:
            out.append(Shard(len(out), path, start, cut, first))
            start, first = cut, lines
        out.append(Shard(len(out), path, start, None, first))
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
