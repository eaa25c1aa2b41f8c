"""Streaming readers of text records: files in, hashed ``Batch``es out, with bounded memory.

A reader reads a file in blocks of whole lines (``block_bytes`` at a time, gzip decompressed
on the fly), hands each block to the compiled parser, and yields one ``Batch`` per block.
What happens to a bad record is a policy: ``stop`` raises a ``DataError`` naming the file,
line and problem; ``skip`` skips the line and counts it in ``ReadStats``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from shoal.data import delimited, textparse
from shoal.data.batch import Batch
from shoal.data.columns import ColumnPlan
from shoal.errors import ConfigError, DataError, ShoalError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec

Format = Literal["vw", "svmlight", "csv", "tsv"]
FORMATS: tuple[str, ...] = ("vw", "svmlight", "csv", "tsv")
BadRecordPolicy = Literal["stop", "skip"]
DEFAULT_BLOCK_BYTES = 4 << 20

_SUFFIXES = {
    ".vw": "vw",
    ".svm": "svmlight",
    ".svmlight": "svmlight",
    ".libsvm": "svmlight",
    ".csv": "csv",
    ".tsv": "tsv",
}

_PROBLEMS = {
    textparse.BAD_LABEL: "label '{tok}' is not a number",
    textparse.BAD_WEIGHT: "importance weight '{tok}' is not a non-negative number",
    textparse.BAD_VALUE: "feature value in '{tok}' is not a finite number",
    textparse.EMPTY_NAME: "feature '{tok}' has an empty name",
    textparse.BAD_SCALE: "namespace scale in '{tok}' is not a finite number",
    textparse.BAD_LABEL_TOKEN: "unexpected token '{tok}' before the first '|'",
    textparse.SVM_NO_COLON: "svmlight feature '{tok}' is not index:value",
    textparse.SVM_BAD_INDEX: "svmlight feature index in '{tok}' is not a non-negative integer",
    delimited.WRONG_FIELDS: "the line has {fields} fields; the schema expects {expected}",
    delimited.BAD_NUMBER: "numeric field '{tok}' is not a finite number",
    delimited.BAD_CSV_LABEL: "label '{tok}' is not a number",
    delimited.BAD_CSV_WEIGHT: "weight '{tok}' is not a non-negative number",
}
SKIP_HINT = "use --on-bad-record skip to skip such lines"


@dataclass
class ReadStats:
    """What a reader saw: rows yielded, lines read, bad lines skipped (and the first of them)."""

    rows: int = 0
    lines: int = 0
    skipped: int = 0
    first_skipped: str = ""
    bytes_read: int = 0
    files: list[str] = field(default_factory=list)

    def merge(self, other: ReadStats) -> None:
        self.rows += other.rows
        self.lines += other.lines
        self.bytes_read += other.bytes_read
        if other.skipped and not self.first_skipped:
            self.first_skipped = other.first_skipped
        self.skipped += other.skipped
        self.files.extend(other.files)


def guess_format(path: str | os.PathLike[str]) -> Format:
    """The format named by the file's suffix, else sniffed from its first non-blank line."""
    p = Path(path)
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    suffix = Path(name).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]  # type: ignore[return-value]
    with _open(p) as f:
        try:
            head = f.read(1 << 16)
        except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated gzip stream
            raise ShoalError(f"{p}: cannot read: {exc}") from None
    for raw in head.splitlines():
        line = raw.strip()
        if line:
            if b"|" in line:
                return "vw"
            line = line.split(b"#", 1)[0]  # an svmlight comment, or a whole comment line
            if not line.strip():
                continue
            tokens = line.split()
            if all(b":" in t for t in tokens[1:]):
                return "svmlight"
            break
    raise ConfigError("format", f"cannot tell the format of {p}; pass --format vw or svmlight")


def _open(path: Path) -> BinaryIO:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic == b"\x1f\x8b":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except FileNotFoundError:
        raise ShoalError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ShoalError(f"{path}: is a directory, not a data file") from None
    except PermissionError:
        raise ShoalError(f"{path}: permission denied") from None


def _read(f: BinaryIO, n: int, path: str) -> bytes:
    try:
        return f.read(n)
    except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated gzip stream
        raise ShoalError(f"{path}: cannot read: {exc}") from None


def _seek_record(f: BinaryIO, start: int, path: str) -> None:
    """Position ``f`` at the first record that begins at or after byte ``start``.

    A record begins at 0 or right after a newline: look at byte start-1 and, unless it is a
    newline, skip to the end of the record that crosses ``start``.
    """
    if start <= 0:
        return
    f.seek(start - 1)
    if _read(f, 1, path) == b"\n":
        return
    while True:
        chunk = _read(f, 1 << 16, path)
        if not chunk:
            return
        nl = chunk.find(b"\n")
        if nl >= 0:
            f.seek(nl + 1 - len(chunk), os.SEEK_CUR)
            return


def _blocks(
    f: BinaryIO, block_bytes: int, path: str, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Blocks of whole lines; the last block may lack its final newline.

    With a byte range, the blocks hold exactly the records that begin in ``[start, end)``: from
    the first record starting at or after ``start`` to the end of the record that crosses
    ``end``. Every record of a file cut into adjacent ranges is thus read exactly once.
    """
    _seek_record(f, start, path)
    pos = f.tell()  # file offset of data[0]
    tail = b""
    while True:
        chunk = _read(f, block_bytes, path)
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
    with _open(Path(path)) as f:
        left = upto
        while left > 0:
            chunk = _read(f, min(left, 1 << 22), str(path))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def _ordered_map(
    fn: Callable[[bytes], tuple], items: Iterator[bytes], threads: int
) -> Iterator[tuple[bytes, tuple]]:
    """``(item, fn(item))`` in input order, computed by ``threads`` threads a few items ahead.

    The parser kernel releases the GIL, so blocks are parsed in parallel on several cores while
    the consumer (the learner) works on earlier ones. Memory stays bounded: at most
    ``2 * threads`` blocks are in flight.
    """
    if threads <= 1:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[bytes, Future[tuple]]] = deque()
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


def _describe(code: int, buf: np.ndarray, s: int, e: int, delim: int = 0, expected: int = 0) -> str:
    tok = bytes(buf[s : min(e, s + 60)]).decode("utf-8", errors="replace")
    if e - s > 60:
        tok += "..."
    fields = int(np.count_nonzero(buf[s:e] == delim)) + 1 if delim else 0
    return _PROBLEMS.get(code, "malformed record").format(tok=tok, fields=fields, expected=expected)


def _header_map(path: str, schema: ColumnSchema, delim: str) -> tuple[np.ndarray, int]:
    """Each field's schema column (-1: not used), and the header's length in bytes (0: none).

    A file whose first line names the columns (or any file, when the schema says it has a
    header) maps fields to columns by name; otherwise by position.
    """
    with _open(Path(path)) as f:
        first = f.readline()
    names = [
        t.strip().strip('"') for t in first.decode("utf-8", "replace").rstrip("\r\n").split(delim)
    ]
    by_name = {c.name: i for i, c in enumerate(schema.columns)}
    header = schema.header
    if header is None:
        header = set(schema.names) <= set(names)
    if not header:
        return np.arange(len(schema.columns), dtype=np.int64), 0
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise ConfigError("schema", f"{path}: the header has no column {', '.join(missing)}")
    return np.array([by_name.get(n, -1) for n in names], dtype=np.int64), len(first)


@dataclass(frozen=True, kw_only=True)
class TextReader:
    """Reads VW, svmlight or delimited (CSV/TSV, with the spec's column schema) text files into
    hashed ``Batch``es.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.vw"
    >>> _ = p.write_text("1 'a |f x:2 y\\n-1 |f z\\n")
    >>> [len(b) for b in TextReader(spec=FeatureSpec(bits=10)).read(p)]
    [2]
    """

    spec: FeatureSpec
    format: Format | None = None
    on_bad_record: BadRecordPolicy = "stop"
    block_bytes: int = DEFAULT_BLOCK_BYTES
    threads: int = 1

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.on_bad_record not in ("stop", "skip"):
            raise ConfigError("on_bad_record", f"must be stop or skip, got {self.on_bad_record!r}")
        if self.block_bytes < 1:
            raise ConfigError("block_bytes", "must be positive")
        if self.threads < 1:
            raise ConfigError("threads", f"must be at least 1, got {self.threads!r}")

    def read(
        self,
        path: str | os.PathLike[str],
        stats: ReadStats | None = None,
        *,
        start: int = 0,
        end: int | None = None,
        first_line: int | None = None,
    ) -> Iterator[Batch]:
        """Yield the batches of one file, or of the records that begin in bytes [start, end).

        ``stats`` (if given) is updated as blocks are read. ``first_line`` is the number of
        lines before the range (counted here if not given) so that messages name real lines.
        """
        fmt = self.format or guess_format(path)
        name = str(path)
        st = stats if stats is not None else ReadStats()
        st.files.append(name)
        offsets, letters = self.spec.interaction_arrays()
        ignore = self.spec.ignore_array()
        svmlight = fmt == "svmlight"
        skip = self.on_bad_record == "skip"
        delim = 0
        nfields = 0

        def parse_text(block: bytes) -> tuple:
            buf = np.frombuffer(block, dtype=np.uint8)
            return textparse.parse_block(
                buf, len(buf), svmlight, self.spec.seed, self.spec.mask, self.spec.constant,
                ignore, offsets, letters, skip,
            )  # fmt: skip

        if fmt in ("csv", "tsv"):
            schema = self.spec.schema
            if schema is None:
                raise ConfigError(
                    "schema", f"{name} is {fmt}: give its columns with --schema (see --help)"
                )
            sep = "\t" if fmt == "tsv" else schema.delimiter
            delim = ord(sep)
            fieldmap, header_len = _header_map(name, schema, sep)
            nfields = len(fieldmap)
            if start < header_len:  # the header is not a record
                start, first_line = header_len, 1
            cp = ColumnPlan.build(schema, self.spec)

            def parse_table(block: bytes) -> tuple:
                buf = np.frombuffer(block, dtype=np.uint8)
                return delimited.parse_delimited(
                    buf, len(buf), delim, fieldmap, cp.roles, cp.hashes, cp.letters, cp.log1p,
                    cp.fills, cp.prefix, cp.prefix_off, self.spec.mask, self.spec.constant,
                    offsets, letters, skip,
                )  # fmt: skip

        with _open(Path(path)) as f:
            if start > 0 and isinstance(f, gzip.GzipFile):
                raise ConfigError("start", f"{name} is gzip-compressed: it can only be read whole")
            blocks = _blocks(f, self.block_bytes, name, start, end)
            if start > 0 and first_line is None:
                _seek_record(f, start, name)
                first_line = count_lines(path, f.tell())
                f.seek(0)
            file_lines = first_line or 0
            parse = parse_table if delim else parse_text
            for block, out in _ordered_map(parse, blocks, self.threads):
                buf = np.frombuffer(block, dtype=np.uint8)
                (indptr, indices, values, labels, weights, tag_off, tag_bytes, row_lines) = out[:8]
                n_lines, skipped, code, err_line, es, ee = out[8:]
                base = file_lines + 1
                if code:
                    where = f"line {base + err_line} of {name}"
                    problem = _describe(code, buf, es, ee, delim, nfields)
                    if self.on_bad_record == "stop":
                        raise DataError(name, base + err_line, problem, SKIP_HINT)
                    if not st.first_skipped:
                        st.first_skipped = f"{where}: {problem}"
                st.skipped += skipped
                file_lines += n_lines
                st.lines += n_lines
                st.bytes_read += len(block)
                st.rows += len(labels)
                if len(labels):
                    yield Batch(
                        indptr=indptr,
                        indices=indices,
                        values=values,
                        labels=labels,
                        weights=weights,
                        tag_offsets=tag_off,
                        tag_bytes=tag_bytes,
                        lines=row_lines + base,
                        source=name,
                    )

    def read_all(
        self, paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None
    ) -> Iterator[Batch]:
        """Yield the batches of several files in order."""
        for p in paths:
            yield from self.read(p, stats)
