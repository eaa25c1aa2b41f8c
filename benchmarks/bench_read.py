"""Reading speed per input format: shoal's readers beside pandas and pyarrow's own readers.

The generated click set (VW text) is converted once to CSV with a header, Parquet and JSON
lines, the same records in each. shoal reads every format into hashed CSR batches (parsing,
hashing, the constant feature) with its default parser threads; pandas' ``read_csv`` and
pyarrow's CSV, Parquet and JSON readers only parse into columns, so they are references, not
the same work. Each reader runs in this process, best of ``--repeat`` after one warm-up read.

    python benchmarks/bench_read.py [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_train import ROOT, clicks, table

CATS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
NUMS = [f"i{k}" for k in range(9)]
SCHEMA = "label," + ",".join(f"{c}:cat" for c in CATS) + ",i0..i8:num"


def convert(vw: Path) -> dict[str, Path]:
    """The click rows as CSV (with a header), Parquet and JSON lines, written once."""
    out = {
        "csv": vw.with_suffix(".csv"),
        "parquet": vw.with_suffix(".parquet"),
        "jsonl": vw.with_suffix(".jsonl"),
    }
    if all(p.exists() for p in out.values()):
        return out
    print(f"converting {vw} to CSV, Parquet and JSON lines", file=sys.stderr)
    with vw.open() as src, out["csv"].open("w") as csv, out["jsonl"].open("w") as js:
        csv.write(",".join(["label", *CATS, *NUMS]) + "\n")
        for line in src:
            label, rest = line.split(" ", 1)
            feats: dict[str, str] = {}
            for tok in rest.replace("|c", " ").replace("|n", " ").split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    feats[k] = v  # the categorical column k holds v: the feature "k=v"
                else:
                    k, v = tok.split(":", 1)
                    feats[k] = v
            y = "1" if label == "1" else "0"
            csv.write(",".join([y, *(feats[c] for c in CATS), *(feats[n] for n in NUMS)]) + "\n")
            rec: dict[str, object] = {"label": int(y)}
            rec.update({c: feats[c] for c in CATS})
            rec.update({n: float(feats[n]) for n in NUMS})
            js.write(json.dumps(rec) + "\n")
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {c: "string" for c in CATS}
    opts = pacsv.ConvertOptions(column_types=types)
    pq.write_table(pacsv.read_csv(out["csv"], convert_options=opts), out["parquet"])
    return out


def timed(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    fn()  # warm-up: imports, numba's cache, the page cache
    best, rows = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - start)
    return best, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=ROOT / "bench-data")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)  # a new folder is fine: the data goes there
    print(f"command: {shlex.join([sys.executable, *sys.argv])}; cores: {os.cpu_count()}\n")
    import pandas as pd
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    import shoal
    from shoal.features.schema import ColumnSchema

    vw, _ = clicks(args.workdir, args.rows, 1)
    files = {"vw": vw, **convert(vw)}
    threads = os.cpu_count() or 1
    plain = shoal.FeatureSpec(bits=18)
    tabular = shoal.FeatureSpec(bits=18, schema=ColumnSchema.parse(SCHEMA))

    def shoal_reader(fmt: str) -> Callable[[], int]:
        def read() -> int:
            # JSON lines carry their types: no schema (under one they take the Python path)
            spec = plain if fmt in ("vw", "jsonl") else tabular
            reader = shoal.TextReader(spec=spec, format=fmt, threads=threads)  # type: ignore[arg-type]
            return sum(len(b) for b in reader.read(files[fmt]))

        return read

    runs: list[tuple[str, str, Callable[[], int]]] = [
        (fmt, "shoal", shoal_reader(fmt)) for fmt in ("vw", "csv", "parquet", "jsonl")
    ]
    runs += [
        ("csv", "pandas.read_csv", lambda: len(pd.read_csv(files["csv"]))),
        ("csv", "pyarrow.csv.read_csv", lambda: pacsv.read_csv(files["csv"]).num_rows),
        ("parquet", "pyarrow.parquet.read_table", lambda: pq.read_table(files["parquet"]).num_rows),
        ("jsonl", "pyarrow.json.read_json", lambda: pajson.read_json(files["jsonl"]).num_rows),
    ]
    rows: list[list[str]] = []
    for fmt, tool, fn in runs:
        try:
            seconds, n = timed(fn, args.repeat)
        except Exception as exc:  # a format this build of shoal does not read yet
            print(f"{fmt} {tool}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        size = files[fmt].stat().st_size
        rows.append([fmt, tool, f"{n:,}", f"{n / seconds:,.0f}", f"{size / seconds / 1e6:,.0f}",
                     f"{size / 1e6:,.0f}"])  # fmt: skip
        print(f"{fmt} {tool}: {seconds:.2f} s", file=sys.stderr)
    table(["format", "reader", "rows", "rows/s", "MB/s", "file MB"], rows, left=2)
    print(
        f"\nBest of {args.repeat} after a warm-up, in one process; shoal with {threads} parser "
        "threads, producing hashed CSR batches; pandas and pyarrow produce columns only."
    )


if __name__ == "__main__":
    main()
