"""Planning: input paths -> shards (whole files, or byte ranges cut at record boundaries).

Workers read their shards themselves; a shard is only a path and a byte range. Planning reads
each uncompressed file once, quickly (newline counting), so that every range starts exactly at
a record and knows its first line number: error messages name real lines. gzip files are not
splittable and stay whole.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    """Files named by paths, globs and directories (directories: their files, sorted)."""
    out: list[str] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            files = sorted(
                str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
            )
            if not files:
                raise ShoalError(f"{text}: directory holds no files")
            out.extend(files)
        elif any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise ShoalError(f"{text}: no file matches this pattern")
            out.extend(m for m in matches if Path(m).is_file())
        elif p.is_file():
            out.append(text)
        else:
            raise ShoalError(f"{text}: no such file")
    return out


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


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
    sizes = [os.path.getsize(f) for f in files]
    total = max(1, sum(sizes))
    target = max(1, -(-total // max(1, shards)))
    out: list[Shard] = []
    for path, size in zip(files, sizes, strict=True):
        if size <= target or _is_gzip(path):
            out.append(Shard(len(out), path))
            continue
        start, first = 0, 0
        for cut, lines in _cut_points(path, size, target):
            out.append(Shard(len(out), path, start, cut, first))
            start, first = cut, lines
        out.append(Shard(len(out), path, start, None, first))
    return out


def fingerprint(shards: Sequence[Shard]) -> str:
    """Identifies the data: paths, sizes, and a hash of the first and last MiB of each file."""
    h = hashlib.sha256()
    for path in sorted({s.path for s in shards}):
        size = os.path.getsize(path)
        h.update(f"{path}\0{size}\0".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 1 << 20:  # the last MiB, or the rest of a file of 1 to 2 MiB
                f.seek(max(1 << 20, size - (1 << 20)))
                h.update(f.read())
    for s in shards:
        h.update(f"{s.index}:{s.path}:{s.start}:{s.end}\n".encode())
    return h.hexdigest()
