"""Streaming readers: files in, hashed ``Batch``es out, with bounded memory, for every format.

Line formats (VW text, svmlight, CSV/TSV under a column schema, JSON lines) are read in blocks
of whole lines (``block_bytes`` at a time, gzip decompressed on the fly); each block goes to
its parser and comes out as one ``Batch``. Parquet is streamed by record batches
(``parquet.py``). Inputs are local paths or URIs (``files.py``); a directory stands for the
data files under it, a glob pattern for the files it matches. Whatever the format, the
same records give the same batches: a numeric value ``x`` of ``NAME`` in namespace ``NS`` is
VW's ``|NS NAME:x``, a categorical value ``v`` is ``|NS NAME=v``.

What happens to a bad record is a policy: ``stop`` raises a ``DataError`` naming the file,
line and problem; ``skip`` skips the line and counts it in ``ReadStats``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shoal.data import delimited, files, jsonl, textparse
from shoal.data.batch import Batch
from shoal.data.blocks import (
    BOM,
    SKIP_HINT,
    Parsed,
    blocks,
    count_lines,
    open_file,
    ordered_map,
    read_bytes,
    seek_record,
    skip_bom,
    whole_only,
)
from shoal.data.columns import ColumnPlan
from shoal.data.formats import FORMATS, SUFFIXES, BadRecordPolicy, Format
from shoal.errors import ConfigError, DataError, ShoalError
from shoal.features.schema import TABLE_FORMATS, ColumnSchema
from shoal.features.spec import FeatureSpec

DEFAULT_BLOCK_BYTES = 4 << 20

_PROBLEMS = {
    **textparse.PROBLEMS,
    delimited.WRONG_FIELDS: "the line has {fields} fields; the schema expects {expected}",
    delimited.BAD_NUMBER: "numeric field '{tok}' is not a finite number",
    delimited.BAD_CSV_LABEL: "label '{tok}' is not a number",
    delimited.BAD_CSV_WEIGHT: "weight '{tok}' is not a non-negative number",
    delimited.BAD_QUOTE: "field '{tok}' opens a quote that does not close right before the next "
    "delimiter (doubled quotes inside a quoted field are not supported)",
}
__all__ = [
    "FORMATS",
    "SKIP_HINT",
    "ReadStats",
    "TextReader",
    "count_lines",
    "guess_format",
    "with_format",
]


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


def guess_format(path: str | os.PathLike[str], schema: ColumnSchema | None = None) -> Format:
    """The format named by the file's suffix, else the one a model's ``schema`` learned from,
    else sniffed from its first bytes (under a schema, text that is not JSON is a table).

    A directory is taken for Parquet (a data set).
    """
    name = files.basename(path)
    suffix = Path(name[:-3] if name.endswith(".gz") else name).suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if schema is not None and schema.format is not None:
        return schema.format  # type: ignore[return-value]  # one of TABLE_FORMATS
    text = str(path)
    if files.is_dir(text):
        return "parquet"
    if files.is_stream(text):  # what the sniffing reads would be lost to the reader
        raise ConfigError(
            "format", f"{text} is a pipe, which can be read only once: shoal cannot look at it "
            f"to tell its format; pass --format ({', '.join(FORMATS)})",
        )  # fmt: skip
    with open_file(text) as f:
        head = read_bytes(f, 1 << 16, text)
    if head.startswith(b"PAR1"):
        return "parquet"
    if schema is not None:  # a model of columns reads tables: JSON lines, or delimited text
        return "jsonl" if head.removeprefix(BOM).lstrip().startswith(b"{") else "csv"
    for raw in head.splitlines():
        line = raw.strip()
        if line:
            if line.startswith(b"{"):
                return "jsonl"
            if b"|" in line:
                return "vw"
            line = line.split(b"#", 1)[0]  # an svmlight comment, or a whole comment line
            if not line.strip():
                continue
            tokens = line.split()
            if all(b":" in t for t in tokens[1:]):
                return "svmlight"
            break
    raise ConfigError(
        "format", f"cannot tell the format of {text}; pass --format ({', '.join(FORMATS)})"
    )


def with_format(
    spec: FeatureSpec, fmt: Format | None, paths: Iterable[str | os.PathLike[str]]
) -> FeatureSpec:
    """``spec`` with its schema's ``format`` set to what training reads: ``fmt`` (``--format``),
    else the first input's, so that the model file remembers it (``guess_format``). A spec
    without a schema, or whose schema knows its format, is returned as it is.

    >>> from shoal.features.schema import ColumnSchema
    >>> spec = FeatureSpec(schema=ColumnSchema.parse("label,a,b:cat"))
    >>> with_format(spec, None, ["clicks.tsv"]).schema.format
    'tsv'
    """
    schema = spec.schema
    if schema is None or schema.format is not None:
        return spec
    if fmt is None:
        paths = list(paths)
        try:
            first = next(iter(files.expand(paths)), None)
        except ShoalError:  # not there (yet): its name may still say
            first = str(paths[0]) if paths else None
        try:
            fmt = guess_format(first, schema) if first is not None else None
        except ShoalError:
            return spec  # a missing or unreadable input: the reader says what is wrong
    if fmt not in TABLE_FORMATS:
        return spec  # VW text or svmlight under a schema: the schema is not a table's
    return dataclasses.replace(spec, schema=dataclasses.replace(schema, format=fmt))


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
    if files.is_stream(path):
        raise ConfigError(
            "format", f"{path} is a pipe, which can be read only once: the header of CSV and TSV "
            "is read before the rows, so write the data to a file first",
        )  # fmt: skip
    with open_file(path) as f:
        first = f.readline().removeprefix(BOM)
    names = [
        t.strip().strip('"') for t in first.decode("utf-8", "replace").rstrip("\r\n").split(delim)
    ]
    by_name = {c.name: i for i, c in enumerate(schema.columns)}
    header = schema.header
    if header is None:  # a header names most of the schema's columns (a missing one is an error)
        header = 2 * len(set(schema.names) & set(names)) > len(schema.names)
    if not header:
        return np.arange(len(schema.columns), dtype=np.int64), 0
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise ConfigError("schema", f"{path}: the header has no column {', '.join(missing)}")
    return np.array([by_name.get(n, -1) for n in names], dtype=np.int64), len(first)


def as_parsed(out: tuple, buf: np.ndarray, delim: int = 0, expected: int = 0) -> Parsed:
    """A compiled parser's tuple as ``Parsed``, its error code turned into words."""
    code, err_line, es, ee = out[10:14]
    problem = _describe(code, buf, es, ee, delim, expected) if code else ""
    initial = out[14] if len(out) > 14 and len(out[14]) else None  # VW text's third numbers
    return Parsed._make((*out[:10], err_line, problem, initial))


@dataclass(frozen=True, kw_only=True)
class TextReader:
    """Reads files of any format (VW, svmlight, CSV/TSV with the spec's column schema, JSON
    lines, Parquet) into hashed ``Batch``es.

    ``block_bytes`` is how much text a batch holds; Parquet batches hold ``batch_rows`` rows
    (0: about ``block_bytes`` of the file's uncompressed data). ``threads`` parse ahead of
    the consumer.

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
    batch_rows: int = 0

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.on_bad_record not in ("stop", "skip"):
            raise ConfigError("on_bad_record", f"must be stop or skip, got {self.on_bad_record!r}")
        if self.block_bytes < 1:
            raise ConfigError("block_bytes", "must be positive")
        if self.threads < 1:
            raise ConfigError("threads", f"must be at least 1, got {self.threads!r}")
        if not isinstance(self.batch_rows, int) or self.batch_rows < 0:
            raise ConfigError("batch_rows", f"must be an integer >= 0, got {self.batch_rows!r}")

    def read(
        self,
        path: str | os.PathLike[str],
        stats: ReadStats | None = None,
        *,
        start: int = 0,
        end: int | None = None,
        first_line: int | None = None,
    ) -> Iterator[Batch]:
        """Yield the batches of one file (or directory, or glob pattern), or of the records that
        begin in bytes [start, end) of a file.

        ``stats`` (if given) is updated as blocks are read. ``first_line`` is the number of
        lines before the range (counted here if not given) so that messages name real lines.
        For Parquet a record is a row group: those that begin in the range are read, and a
        line number is a 1-based row number.
        """
        st = stats if stats is not None else ReadStats()
        if start > 0 or end is not None:
            yield from self._read_file(str(path), st, start, end, first_line)
        else:
            yield from self.read_all([path], st)

    def read_all(
        self, paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None
    ) -> Iterator[Batch]:
        """Yield the batches of several files (or directories, or glob patterns) in order.

        Every input is looked up before the first batch: a missing one stops the read at once.
        """
        st = stats if stats is not None else ReadStats()
        for name in files.expand(paths):
            yield from self._read_file(name, st)

    def _read_file(
        self,
        name: str,
        st: ReadStats,
        start: int = 0,
        end: int | None = None,
        first_line: int | None = None,
    ) -> Iterator[Batch]:
        """The batches of one file, local or behind a URI, or of a byte range of it."""
        fmt = self.format or guess_format(name, self.spec.schema)
        st.files.append(name)
        if fmt == "parquet":
            from shoal.data import parquet  # imports pyarrow: only when needed

            yield from parquet.read(
                name, self.spec, st, start=start, end=end, skip_bad=self.on_bad_record == "skip",
                block_bytes=self.block_bytes, batch_rows=self.batch_rows, threads=self.threads,
            )  # fmt: skip
            return
        parse, header_len = self._parser(fmt, name)
        with open_file(name) as f:
            if (start > 0 or end is not None) and (why := whole_only(f)):
                raise ConfigError("start", f"{name} {why}: it can only be read whole")
            if start == 0:
                skip_bom(f, name)
            if start < header_len:  # the header is not a record: read past it, gzip or not
                f.readline()
                start, first_line = 0, 1
            chunks = blocks(f, self.block_bytes, name, start, end)
            if start > 0 and first_line is None:
                seek_record(f, start, name)
                first_line = count_lines(name, f.tell())
                f.seek(0)
            file_lines = first_line or 0
            # under a schema JSON lines go through json.loads, which holds the GIL: more threads
            # would only contend for it (without one the compiled kernel releases it)
            threads = 1 if fmt == "jsonl" and self.spec.schema is not None else self.threads
            for block, out in ordered_map(parse, chunks, threads):
                base = file_lines + 1
                if out.problem:
                    if self.on_bad_record == "stop":
                        raise DataError(name, base + out.err_line, out.problem, SKIP_HINT)
                    if not st.first_skipped:
                        st.first_skipped = f"line {base + out.err_line} of {name}: {out.problem}"
                st.skipped += out.skipped
                file_lines += out.n_lines
                st.lines += out.n_lines
                st.bytes_read += len(block)
                st.rows += len(out.labels)
                if len(out.labels):
                    yield out.batch(name, base)

    def _parser(self, fmt: str, name: str) -> tuple[Callable[[bytes], Parsed], int]:
        """The block parser of a line format, and the length of the file's header (CSV)."""
        spec = self.spec
        skip = self.on_bad_record == "skip"
        offsets, letters = spec.interaction_arrays()
        if fmt == "jsonl":
            return (lambda block: jsonl.parse_block(block, spec, skip)), 0
        if fmt in ("vw", "svmlight"):
            namespaces = spec.namespace_table()
            rules = spec.hash_rules()
            svmlight = fmt == "svmlight"

            def parse_text(block: bytes) -> Parsed:
                buf = np.frombuffer(block, dtype=np.uint8)
                out = textparse.parse_block(
                    buf, len(buf), svmlight, rules, spec.mask, spec.constant, namespaces,
                    offsets, letters, skip,
                )  # fmt: skip
                return as_parsed(out, buf)

            return parse_text, 0
        schema = spec.schema
        if schema is None:
            raise ConfigError(
                "schema", f"{name} is {fmt}: give its columns with --schema (see --help)"
            )
        sep = "\t" if fmt == "tsv" else schema.delimiter
        fieldmap, header_len = _header_map(name, schema, sep)
        cp = ColumnPlan.build(schema, spec)
        codes = spec.field_codes()

        def parse_table(block: bytes) -> Parsed:
            buf = np.frombuffer(block, dtype=np.uint8)
            out = delimited.parse_delimited(
                buf, len(buf), ord(sep), fieldmap, cp.roles, cp.hashes, cp.letters, cp.log1p,
                cp.fills, cp.prefix, cp.prefix_off, spec.mask, spec.constant, offsets, letters,
                spec.self_pairs, skip, codes,
            )  # fmt: skip
            return as_parsed(out, buf, ord(sep), len(fieldmap))

        return parse_table, header_len
