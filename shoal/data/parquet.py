"""Parquet files, streamed by record batches with bounded memory.

A file is opened through ``files.open_arrow`` (a local path, or any URI pyarrow's file
systems accept) and read with ``ParquetFile.iter_batches``: only the columns the schema needs,
``batch_rows`` rows at a time, one row group after another. Memory is thus about one row
group's column chunks plus a few batches in flight -- never the file. Each record batch
becomes a ``Batch`` through ``arrow.TablePlan`` (the spec's column schema, or one inferred
from the file's Arrow schema).

Parquet is not line-oriented, so it is not cut at arbitrary bytes: a byte range ``[start,
end)`` selects the row groups that begin in it (a row group begins at its first column chunk),
so adjacent ranges read every row group exactly once, and the planner cuts files between row
groups (``cut_points``). A "line" of a Parquet file, in messages and ``Batch.lines``, is its
1-based row number.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shoal.data import files
from shoal.data.arrow import TablePlan
from shoal.data.batch import Batch
from shoal.data.blocks import ordered_map
from shoal.errors import ShoalError
from shoal.features.spec import FeatureSpec

MAX_BATCH_ROWS = 1 << 17
MIN_BATCH_ROWS = 16


def _parquet_file(path: str, f: Any) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShoalError(f"{path}: not a readable Parquet file: {exc}") from None


def group_starts(meta: pq.FileMetaData) -> list[int]:
    """The byte offset at which each row group begins: its first column chunk."""
    out = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        starts = []
        for c in range(rg.num_columns):
            cc = rg.column(c)
            dict_at = cc.dictionary_page_offset if cc.has_dictionary_page else None
            starts.append(dict_at if dict_at else cc.data_page_offset)
        out.append(min(starts) if starts else 0)
    return out


def cut_points(path: str, target: int) -> list[tuple[int, int]]:
    """(offset, rows before it) of row-group starts near every multiple of ``target`` bytes.

    The planner's cuts for a Parquet file: each range between two cuts holds whole row groups.
    """
    with files.open_arrow(path) as f:
        meta = _parquet_file(path, f).metadata
    starts = group_starts(meta)
    cuts: list[tuple[int, int]] = []
    rows = 0
    want = target
    for g, at in enumerate(starts):
        if g > 0 and at >= want:
            cuts.append((at, rows))
            want = at + target
        rows += meta.row_group(g).num_rows
    return cuts


def _stored_bytes(rg: Any) -> int:
    return sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))


def _batch_rows(meta: pq.FileMetaData, groups: list[int], columns: list[str], block: int) -> int:
    """Rows in about ``block`` bytes of the columns read (uncompressed, as Parquet stores them)."""
    wanted = set(columns)
    size = rows = 0
    for g in groups:
        rg = meta.row_group(g)
        rows += rg.num_rows
        for c in range(rg.num_columns):
            cc = rg.column(c)
            if cc.path_in_schema in wanted or cc.path_in_schema.split(".")[0] in wanted:
                size += cc.total_uncompressed_size
    per_row = max(1.0, size / max(1, rows))
    return int(min(MAX_BATCH_ROWS, max(MIN_BATCH_ROWS, block / per_row)))


def read(
    path: str,
    spec: FeatureSpec,
    stats: Any,
    *,
    start: int = 0,
    end: int | None = None,
    skip_bad: bool = False,
    block_bytes: int = 4 << 20,
    batch_rows: int = 0,
    threads: int = 1,
) -> Iterator[Batch]:
    """Yield the batches of the row groups of ``path`` that begin in bytes [start, end)."""
    with files.open_arrow(path) as f:
        pf = _parquet_file(path, f)
        meta = pf.metadata
        starts = group_starts(meta)
        groups = [g for g, at in enumerate(starts) if at >= start and (end is None or at < end)]
        if start == 0 and end is None:
            groups = list(range(meta.num_row_groups))  # a file of empty row groups, too
        if not groups:
            return
        first = sum(meta.row_group(g).num_rows for g in range(groups[0]))
        plan = TablePlan.build(spec, pf.schema_arrow, path)
        rows = batch_rows or _batch_rows(meta, groups, plan.columns, block_bytes)
        total_rows = sum(meta.row_group(g).num_rows for g in groups)
        total_bytes = sum(_stored_bytes(meta.row_group(g)) for g in groups)

        def numbered() -> Iterator[tuple[pa.RecordBatch, int]]:
            line = first + 1
            try:
                it = pf.iter_batches(
                    batch_size=rows, row_groups=groups, columns=plan.columns, use_threads=True
                )
                for rb in it:
                    yield rb, line
                    line += rb.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise ShoalError(f"{path}: cannot read row {line} on: {exc}") from None

        def convert(item: tuple[pa.RecordBatch, int]) -> tuple[Batch, int, str]:
            rb, line = item
            return plan.convert(rb, path, line, skip_bad)

        for (rb, _), (batch, skipped, problem) in ordered_map(convert, numbered(), threads):
            if problem and not stats.first_skipped:
                stats.first_skipped = problem
            stats.skipped += skipped
            stats.lines += rb.num_rows
            stats.rows += len(batch)
            stats.bytes_read += total_bytes * rb.num_rows // max(1, total_rows)
            if len(batch):
                yield batch
