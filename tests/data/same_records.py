"""One set of records, written in every format shoal reads, for the format tests.

Each record has a label, a weight, sometimes a tag, numeric features I1..I3 and categorical
features C1, C2 in the default namespace (any may be missing; some numbers are 0), and a
numeric ``age`` and a categorical ``city`` in the namespace ``user``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shoal.data.batch import Batch
from shoal.features.schema import ColumnSchema

SCHEMA_TEXT = "label,weight,tag,I1,I2,I3,C1:cat,C2:cat,age:num:ns=user,city:cat:ns=user"
SCHEMA = ColumnSchema.parse(SCHEMA_TEXT)
DEFAULT_NS = ("I1", "I2", "I3", "C1", "C2")
USER_NS = ("age", "city")
COLUMNS = ("label", "weight", "tag", *DEFAULT_NS, *USER_NS)


@dataclass
class Record:
    label: int
    weight: float
    tag: str
    values: dict[str, Any]  # column -> value or None (missing)


def make_records(n: int = 200, seed: int = 7) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v: dict[str, Any] = {}
        for name in ("I1", "I2", "I3"):
            v[name] = rng.choice([None, 0.0, round(rng.uniform(-5, 5), 3), rng.randrange(1, 9)])
        for name in ("C1", "C2"):
            v[name] = rng.choice([None, "a", "b", "c-d", f"v{rng.randrange(30)}"])
        v["age"] = rng.choice([None, rng.randrange(18, 80)])
        v["city"] = rng.choice([None, "Paris", "Oslo", "Lima"])
        tag = rng.choice(["", f"r{i}"])
        out.append(Record(rng.choice([1, -1]), rng.choice([1.0, 0.5, 2.0, 1.25]), tag, v))
    return out


def _num(x: Any) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


def vw_text(records: list[Record], user: bool = True) -> str:
    lines = []
    for r in records:
        head = f"{r.label} {r.weight}" + (f" '{r.tag}" if r.tag else "")
        parts = [_feature(n, r.values[n]) for n in DEFAULT_NS if r.values[n] is not None]
        line = f"{head} | {' '.join(parts)}"
        if user:
            parts = [_feature(n, r.values[n]) for n in USER_NS if r.values[n] is not None]
            line += f" |user {' '.join(parts)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _feature(name: str, value: Any) -> str:
    return f"{name}={value}" if isinstance(value, str) else f"{name}:{_num(value)}"


def csv_text(records: list[Record]) -> str:
    lines = [",".join(COLUMNS)]
    for r in records:
        row = [str(r.label), repr(r.weight), r.tag]
        row += ["" if r.values[n] is None else _csv(r.values[n]) for n in (*DEFAULT_NS, *USER_NS)]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def _csv(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else _num(value)


def jsonl_text(records: list[Record], user: bool = True, seed: int = 3) -> str:
    """Flat keys for the default namespace, ``features`` for ``user``; missing values are
    left out or written as null, at random."""
    rng = random.Random(seed)
    lines = []
    for r in records:
        obj: dict[str, Any] = {"label": r.label, "weight": r.weight}
        if r.tag:
            obj["tag"] = r.tag
        elif rng.random() < 0.5:
            obj["tag"] = None
        for n in DEFAULT_NS:
            if r.values[n] is not None or rng.random() < 0.5:
                obj[n] = r.values[n]
        if user:
            obj["features"] = {"user": {n: r.values[n] for n in USER_NS}}
        lines.append(json.dumps(obj))
    return "\n".join(lines) + "\n"


def arrow_table(records: list[Record], user: bool = True) -> pa.Table:
    """Types as a user would have them: ints, floats with nulls, strings, a dictionary column."""
    cols: dict[str, pa.Array] = {
        "label": pa.array([r.label for r in records], pa.int64()),
        "weight": pa.array([r.weight for r in records], pa.float64()),
        "tag": pa.array([r.tag or None for r in records], pa.string()),
    }
    for n in ("I1", "I2", "I3"):
        cols[n] = pa.array([_float(r.values[n]) for r in records], pa.float64())
    for n in ("C1", "C2"):
        cols[n] = pa.array([r.values[n] for r in records], pa.string())
    if user:
        cols["age"] = pa.array([r.values["age"] for r in records], pa.int64())
        cols["city"] = pa.array([r.values["city"] for r in records]).dictionary_encode()
    return pa.table(cols)


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def write_parquet(path: Path, table: pa.Table, row_group_size: int = 64) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def dicts(records: list[Record], user: bool = True) -> list[dict[str, Any]]:
    out = []
    for r in records:
        d: dict[str, Any] = {n: r.values[n] for n in DEFAULT_NS if r.values[n] is not None}
        if user:
            d["user"] = {n: r.values[n] for n in USER_NS}
        out.append(d)
    return out


def concat(batches: list[Batch]) -> dict[str, np.ndarray]:
    """The rows of several batches, for comparing: indices, values, row lengths, metadata."""
    keys = ("indices", "values", "labels", "weights", "lines")
    out = {k: np.concatenate([getattr(b, k) for b in batches]) for k in keys}
    out["lens"] = np.concatenate([np.diff(b.indptr) for b in batches])
    out["tags"] = np.array([t for b in batches for t in b.tags()])
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], lines: bool = True) -> None:
    for k in a:
        if k == "lines" and not lines:
            continue
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
