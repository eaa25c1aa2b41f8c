"""The binary cache: hashed batches kept on disk, so that later passes and runs skip the text.

``CachedReader`` reads like the ``TextReader`` it wraps, one input *part* at a time (a file,
or a shard's byte range). The first time a part is read its batches come from the text and are
written, as they go by, to a cache file in the cache directory (``cachefile.py``); every later
read of that part — the next pass, the next run, a worker given the same shard — maps that file
and hands the learner its arrays directly. Same batches, same order: training from the cache
gives the model that training from the text gives, to the bit.

A cache file is used only when everything that shaped its batches is what the reader would use
now, which its footer records: the input (its real path, the byte range, its size, its
modification time and a checksum of the bytes read, ``identity.py``), the feature spec (hash
bits, seed, namespaces, interactions, schema), the format, the bad-record policy, the block
size and shoal's version. A stale, foreign or damaged file is rebuilt from the text, never
used; a killed run leaves only a temporary file, which no reader opens (``CacheWriter``).
A run checks a file once (``session``: one per run, shared by its workers): it keeps it mapped,
and uses it again while neither it nor the input has changed (their size and modification time).

>>> import tempfile, pathlib
>>> from shoal.data.reader import TextReader
>>> from shoal.features.spec import FeatureSpec
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "tiny.vw").write_text("1 |f x:2 y\\n-1 |f z\\n")
>>> cached = CachedReader(reader=TextReader(spec=FeatureSpec(bits=10)), directory=d / "cache")
>>> [len(b) for b in cached.read(d / "tiny.vw")], cached.stats.written
([2], 1)
>>> [len(b) for b in cached.read(d / "tiny.vw")], cached.stats.reads
([2], 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal._version import __version__
from shoal.data import files
from shoal.data.batch import Batch
from shoal.data.cachefile import CacheFile, CacheInvalid, CacheWriter
from shoal.data.checksum import hex64
from shoal.data.identity import Part, stamp_of
from shoal.data.reader import ReadStats, TextReader, guess_format
from shoal.errors import ConfigError

SUFFIX = ".cache"
_KEEP_OPEN = 256  # verified files a process keeps mapped (a worker sees the same shards again)
_OPEN: OrderedDict[tuple[str, str], tuple[tuple[Any, ...], CacheFile]] = OrderedDict()
_SWEPT: set[str] = set()


@dataclass
class CacheStats:
    """What a run did with its cache: the files it used or wrote (name: bytes), how many it
    wrote, how many part reads it served, and how many files it refused and rebuilt (why the
    first was)."""

    files: dict[str, int] = field(default_factory=dict)
    written: int = 0
    reads: int = 0
    rebuilt: int = 0
    first_rebuilt: str = ""

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    def merge(self, other: CacheStats) -> None:
        self.files.update(other.files)
        self.written += other.written
        self.reads += other.reads
        if other.rebuilt and not self.first_rebuilt:
            self.first_rebuilt = other.first_rebuilt
        self.rebuilt += other.rebuilt


@dataclass(frozen=True, kw_only=True)
class CachedReader:
    """A ``TextReader`` whose parts are kept in the cache ``directory`` (see the module).

    Files verified under the same ``session`` are not verified again (a run's passes, its
    workers' tasks); a new reader starts a new session unless given one.
    """

    reader: TextReader
    directory: str | os.PathLike[str]
    session: str = field(default_factory=lambda: new_session())
    stats: CacheStats = field(default_factory=CacheStats, compare=False)

    def read(
        self,
        path: str | os.PathLike[str],
        stats: ReadStats | None = None,
        *,
        start: int = 0,
        end: int | None = None,
        first_line: int | None = None,
    ) -> Iterator[Batch]:
        """``TextReader.read``, from the cache where it holds the part."""
        st = stats if stats is not None else ReadStats()
        if start > 0 or end is not None:
            self._prepare([])
            yield from self._part(str(path), st, start, end, first_line)
        else:
            yield from self.read_all([path], st)

    def read_all(
        self, paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None
    ) -> Iterator[Batch]:
        """``TextReader.read_all``, from the cache where it holds a file."""
        st = stats if stats is not None else ReadStats()
        paths = list(paths)
        self._prepare(paths)
        for name in files.expand(paths):
            yield from self._part(name, st, 0, None, None)

    def close(self) -> None:
        """Forget the files this session checked (unmapped once no batch refers to them)."""
        for memo in [m for m in _OPEN if m[0] == self.session]:
            del _OPEN[memo]

    # -- one part ---------------------------------------------------------------------------

    def _part(
        self, name: str, st: ReadStats, start: int, end: int | None, first_line: int | None
    ) -> Iterator[Batch]:
        if files.is_stream(name):
            raise ConfigError(
                "cache", f"{name} is a pipe: what it held cannot be checked on a later read, so "
                "it cannot be cached; write it to a file, or train without a cache",
            )  # fmt: skip
        fmt = self.reader.format or guess_format(name)
        key = _key(self.reader, name, fmt, start, end, first_line)
        path = Path(self.directory) / _file_name(name, key)
        part = Part(name, fmt, start, end)
        cached = self._open(path, key, part)
        if cached is not None:
            self.stats.reads += 1
            self.stats.files[path.name] = cached.size
            yield from _replay(cached, name, st)
            return
        yield from self._build(path, key, part, st, first_line)

    def _open(self, path: Path, key: dict[str, Any], part: Part) -> CacheFile | None:
        """The verified cache file of the part, or None (none yet, or refused: it is rebuilt)."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError("cache", f"cannot read {path}: {exc.strerror}") from None
        text = json.dumps(key, sort_keys=True)
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns, text, stamp_of(part.name))
        memo = (self.session, str(path))
        known = _OPEN.get(memo)
        if known is not None and known[0] == stamp:
            _OPEN.move_to_end(memo)
            return known[1]
        try:
            cf = CacheFile.open(str(path), self.reader.threads)
            _check(cf, text, part, self.reader.threads)
        except CacheInvalid as exc:
            self.stats.rebuilt += 1
            self.stats.first_rebuilt = self.stats.first_rebuilt or f"{path.name}: {exc.reason}"
            return None
        self._remember(path, stamp, cf)
        return cf

    def _remember(self, path: Path, stamp: tuple[Any, ...], cf: CacheFile) -> None:
        """Keep a checked file mapped for this session's next reads of the part."""
        _OPEN[(self.session, str(path))] = (stamp, cf)
        while len(_OPEN) > _KEEP_OPEN:
            _OPEN.popitem(last=False)

    def _build(
        self, path: Path, key: dict[str, Any], part: Part, st: ReadStats, first_line: int | None
    ) -> Iterator[Batch]:
        """The part's batches from the text, written to the cache as they go by."""
        before = stamp_of(part.name)
        own = ReadStats()
        seen = (0, 0, 0, 0)
        st.files.append(part.name)
        try:
            writer = CacheWriter(path)
        except OSError as exc:
            raise ConfigError(
                "cache", f"cannot write in {self.directory}: {exc.strerror}; give a writable "
                "directory, or train without a cache",
            ) from None  # fmt: skip
        with writer:
            batches = self.reader.read(
                part.name, own, start=part.start, end=part.end, first_line=first_line
            )
            for batch in batches:
                now = (own.rows, own.lines, own.skipped, own.bytes_read)
                try:
                    writer.append(batch, now)
                except OSError as exc:
                    raise ConfigError(
                        "cache", f"cannot write {path}: {exc.strerror}; free some space, give "
                        "another directory, or train without a cache",
                    ) from None  # fmt: skip
                _forward(st, own, seen, now)
                seen = now
                yield batch
            _forward(st, own, seen, (own.rows, own.lines, own.skipped, own.bytes_read))
            if stamp_of(part.name) != before:
                writer.discard()  # the input changed while it was read: nothing to trust
                return
            a, b, digest = part.hash(self.reader.threads)
            read = {"rows": own.rows, "lines": own.lines, "skipped": own.skipped,
                    "bytes_read": own.bytes_read, "first_skipped": own.first_skipped}  # fmt: skip
            source = {"size": before[0], "mtime_ns": before[1], "hashed": [a, b],
                      "hash": hex64(digest)}  # fmt: skip
            try:
                size = writer.commit({"key": key, "source": source, "read": read})
            except OSError as exc:
                raise ConfigError(
                    "cache", f"cannot write {path}: {exc.strerror}; free some space, give "
                    "another directory, or train without a cache",
                ) from None  # fmt: skip
        self.stats.written += 1
        self.stats.files[path.name] = size
        with contextlib.suppress(OSError, CacheInvalid):  # what it wrote, read back once
            info = os.stat(path)
            text = json.dumps(key, sort_keys=True)
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns, text, before)
            self._remember(path, stamp, CacheFile.open(str(path), self.reader.threads))

    # -- the directory ----------------------------------------------------------------------

    def _prepare(self, paths: list[str | os.PathLike[str]]) -> None:
        """Make the directory; refuse one inside an input directory (its files would be read
        as data); remove the temporary files of this machine's dead writers."""
        root = Path(self.directory)
        real = root.resolve()
        for p in paths:
            text = str(p)
            if not files.is_uri(text) and Path(text).is_dir():
                inside = Path(text).resolve()
                if real == inside or inside in real.parents:
                    raise ConfigError(
                        "cache", f"{root} is inside the input directory {text}, whose files are "
                        "all read as data: put the cache elsewhere",
                    )  # fmt: skip
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("cache", f"cannot make {root}: {exc.strerror}") from None
        if str(real) not in _SWEPT:
            _SWEPT.add(str(real))
            _sweep(real)


def new_session() -> str:
    """A token naming one run's use of the cache (see ``CachedReader``)."""
    return secrets.token_hex(8)


def _key(
    reader: TextReader, name: str, fmt: str, start: int, end: int | None, first_line: int | None
) -> dict[str, Any]:
    """Everything, besides the input's content, that shapes the batches of a part."""
    whole = start == 0 and end is None
    where = name if files.is_uri(name) else os.path.realpath(name)
    return {
        "input": where,
        "range": None if whole else [start, end, first_line],
        "format": fmt,
        "spec": reader.spec.to_dict(),
        "on_bad_record": reader.on_bad_record,
        "block_bytes": reader.block_bytes,
        "batch_rows": reader.batch_rows,
        "shoal": __version__,
    }


def _file_name(name: str, key: dict[str, Any]) -> str:
    """``BASENAME.DIGEST.cache``: one file per part and settings; a changed input reuses it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", files.basename(name))[:80].lstrip(".") or "input"
    return f"{base}.{digest}{SUFFIX}"


def _check(cf: CacheFile, key_text: str, part: Part, threads: int) -> None:
    """Refuse a verified file written for other settings or for other bytes of the input."""
    if json.dumps(cf.meta.get("key"), sort_keys=True) != key_text:
        raise CacheInvalid(cf.path, "foreign: written for other settings, input or shoal version")
    src = cf.meta.get("source") or {}
    size, mtime = stamp_of(part.name)
    if (src.get("size"), src.get("mtime_ns")) != (size, mtime):
        raise CacheInvalid(cf.path, f"stale: {part.name} changed (size or modification time)")
    a, b, digest = part.hash(threads)
    if src.get("hashed") != [a, b] or src.get("hash") != hex64(digest):
        raise CacheInvalid(cf.path, f"stale: {part.name}'s content changed (checksum)")


def _replay(cf: CacheFile, name: str, st: ReadStats) -> Iterator[Batch]:
    """The cached batches, with the reader's counts advanced as the text reader advances them."""
    read = cf.meta.get("read") or {}
    st.files.append(name)
    seen: tuple[int, ...] = (0, 0, 0, 0)
    for i in range(len(cf)):
        rec = cf.table[i]
        now = tuple(int(rec[k]) for k in ("read_rows", "read_lines", "read_skipped", "read_bytes"))
        _add(st, seen, now, read.get("first_skipped", ""))
        seen = now
        yield cf.batch(i, name)
    total = tuple(int(read.get(k, 0)) for k in ("rows", "lines", "skipped", "bytes_read"))
    _add(st, seen, total, read.get("first_skipped", ""))


def _forward(st: ReadStats, own: ReadStats, seen: tuple[int, ...], now: tuple[int, ...]) -> None:
    """Pass the part's new counts on to the caller's ``ReadStats``."""
    _add(st, seen, now, own.first_skipped)


def _add(st: ReadStats, seen: tuple[int, ...], now: tuple[int, ...], first_skipped: str) -> None:
    st.rows += now[0] - seen[0]
    st.lines += now[1] - seen[1]
    st.skipped += now[2] - seen[2]
    st.bytes_read += now[3] - seen[3]
    if now[2] and not st.first_skipped:
        st.first_skipped = first_skipped


def _sweep(root: Path) -> None:
    """Remove the temporary files that writers on this machine left when they were killed."""
    host = socket.gethostname().replace(".", "_")
    for tmp in root.glob(f".*.{host}.*.tmp"):
        pid = tmp.name.rsplit(".", 3)[-3]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True
