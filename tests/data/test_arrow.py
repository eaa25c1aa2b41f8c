"""Parquet and Arrow: schemas given or inferred, nulls and fills, bad values, directories,
row-group shards, URIs -- and memory that stays bounded on data larger than it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoal.data import frames
from shoal.data.arrow import infer_schema
from shoal.data.reader import ReadStats, TextReader, guess_format
from shoal.errors import ConfigError, DataError, ShoalError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.train.plan import fingerprint, plan
from tests.data import same_records as sr

SPEC = FeatureSpec(bits=20)


def read(path: Path | str, spec: FeatureSpec = SPEC, **kw: object) -> dict[str, np.ndarray]:
    return sr.concat(list(TextReader(spec=spec, **kw).read(path)))  # type: ignore[arg-type]


def with_schema(text: str) -> FeatureSpec:
    return dataclasses.replace(SPEC, schema=ColumnSchema.parse(text))


def test_nulls_fills_and_log1p_as_in_csv(tmp_path: Path) -> None:
    spec = with_schema("label,a:num:log1p,b:num:fill=-2,c:num:log1p:fill=9,d:cat:ns=q")
    table = pa.table(
        {
            "d": pa.array(["x", None, "", "y"]),
            "label": pa.array([1, None, 0, 1], pa.int8()),
            "a": pa.array([3.0, -7.5, None, float("nan")]),
            "b": pa.array([None, 1, 2, None], pa.int32()),
            "c": pa.array([None, 0.5, None, 2.0], pa.float32()),
            "extra": pa.array(["not", "read", "at", "all"]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    csv = tmp_path / "t.csv"
    csv.write_text("label,a,b,c,d\n1,3,,,x\n,-7.5,1,0.5,\n0,,2,,\n1,,,2,y\n")
    got, want = read(path, spec), read(csv, spec)
    sr.assert_same(want, got, lines=False)
    assert np.isnan(got["labels"][1])  # a null label: an unlabeled row
    assert got["lens"].tolist() == [5, 4, 3, 4]  # fills count; null, NaN and "" do not


def test_numbers_as_text_integer_categories_and_other_string_types(tmp_path: Path) -> None:
    spec = with_schema("label,n:num,k:cat,b:cat,s1:cat,s2:cat")
    table = pa.table(
        {
            "label": pa.array(["1", "-1"]),
            "n": pa.array(["2.5", ""], pa.large_string()),
            "k": pa.array([12, None], pa.int64()),
            "b": pa.array([True, False]),
            "s1": pa.array(["p", "q"], pa.large_string()),
            "s2": pa.array([b"r", b"s"], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    vw = tmp_path / "t.vw"
    vw.write_text("1 | n:2.5 k=12 b=true s1=p s2=r\n-1 | b=false s1=q s2=s\n")
    sr.assert_same(read(vw), read(tmp_path / "t.parquet", spec))
    row2 = frames.batch_from_arrow(table.to_batches()[0].slice(1, 1), spec)  # array offset 1
    assert row2.labels.tolist() == [-1.0]
    assert row2.indices.tolist() == read(vw)["indices"][6:].tolist()


def test_booleans_decimals_and_all_null_columns(tmp_path: Path) -> None:
    from decimal import Decimal

    table = pa.table(
        {
            "label": pa.array([1, -1]),
            "t": pa.array([True, False]),
            "d": pa.array([Decimal("1.25"), None]),
            "none": pa.array([None, None]),  # what pandas makes of a column of None
        }
    )
    assert [c.name for c in infer_schema(table.schema).columns] == ["label", "t", "d"]
    vw = tmp_path / "t.vw"
    vw.write_text("1 | t:1 d:1.25 none:4\n-1 | none:4\n")
    spec = with_schema("label,t,d,none:num:fill=4")
    sr.assert_same(read(vw), sr.concat([frames.batch_from_arrow(table, spec)]))


@pytest.mark.parametrize(
    ("column", "values", "problem"),
    [
        ("x", pa.array([1.0, float("inf"), 2.0]), "column 'x': value 'inf' is not a finite number"),
        ("x", pa.array([1.0, 1e39, 2.0]), "column 'x': value '1e+39' is not a finite number"),
        ("x", pa.array(["1", "abc", "2"]), "column 'x': value 'abc' is not a finite number"),
        ("label", pa.array(["1", "yes", "0"]), "label 'yes' is not a number"),
        ("weight", pa.array([1.0, -1.0, 2.0]), "weight '-1.0' is not a non-negative number"),
    ],
)
def test_a_bad_value_stops_or_is_skipped(
    tmp_path: Path, column: str, values: pa.Array, problem: str
) -> None:
    cols = {"label": pa.array([1, 0, 1]), "x": pa.array([1.0, 2.0, 3.0])}
    cols[column] = values
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(cols), path)
    spec = with_schema("label,weight,x")
    with pytest.raises(DataError) as info:
        read(path, spec)
    assert (info.value.path, info.value.line) == (str(path), 2)
    assert info.value.problem == problem
    stats = ReadStats()
    got = sr.concat(list(TextReader(spec=spec, on_bad_record="skip").read(path, stats)))
    assert got["lines"].tolist() == [1, 3]
    assert (stats.rows, stats.lines, stats.skipped) == (2, 3, 1)
    assert stats.first_skipped == f"line 2 of {path}: {problem}"


def test_schema_inference() -> None:
    schema = pa.schema(
        [
            ("label", pa.float32()),
            ("tag", pa.int64()),
            ("when", pa.timestamp("s")),
            ("flag", pa.bool_()),
            ("price", pa.decimal128(10, 2)),
            ("city", pa.dictionary(pa.int8(), pa.string())),
            ("name", pa.large_string()),
            ("tags", pa.list_(pa.string())),
        ]
    )
    got = [(c.name, c.role) for c in infer_schema(schema).columns]
    assert got == [
        ("label", "label"),
        ("tag", "tag"),
        ("flag", "num"),
        ("price", "num"),
        ("city", "cat"),
        ("name", "cat"),
    ]
    with pytest.raises(ConfigError, match="no numeric or categorical column"):
        infer_schema(pa.schema([("label", pa.int8()), ("when", pa.date32())]))


def test_a_missing_feature_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1.0]}), path)
    with pytest.raises(ConfigError, match=r"has no column y \(its columns: x\)"):
        read(path, with_schema("label,x,y:cat"))
    assert read(path, with_schema("label,x"))["lens"].tolist() == [2]  # no label column: fine


def test_a_directory_reads_its_files_in_order(tmp_path: Path) -> None:
    records = sr.make_records(150)
    table = sr.arrow_table(records)
    d = tmp_path / "data"
    (d / "b").mkdir(parents=True)
    sr.write_parquet(d / "a.parquet", table[:60])
    sr.write_parquet(d / "b" / "part-0.parquet", table[60:100])
    sr.write_parquet(d / "b" / "part-1.pq", table[100:])
    (d / "_SUCCESS").write_text("")
    (d / ".a.parquet.crc").write_text("crc")
    whole = sr.write_parquet(tmp_path / "whole.parquet", table)
    spec = dataclasses.replace(SPEC, schema=sr.SCHEMA)
    assert guess_format(d) == "parquet"
    got = read(d, spec)
    sr.assert_same(read(whole, spec), got, lines=False)
    assert got["lines"].tolist() == [*range(1, 61), *range(1, 41), *range(1, 51)]


def test_files_are_sharded_by_row_groups(tmp_path: Path) -> None:
    records = sr.make_records(400)
    path = sr.write_parquet(tmp_path / "r.parquet", sr.arrow_table(records), row_group_size=30)
    spec = dataclasses.replace(SPEC, schema=sr.SCHEMA)
    shards = plan([path], 4)
    assert 3 <= len(shards) <= 4 and shards[0].start == 0 and shards[-1].end is None
    parts = []
    for s in shards:
        batch = sr.concat(list(TextReader(spec=spec).read(s.path, start=s.start, end=s.end)))
        assert batch["lines"][0] == s.first_line + 1  # the planner counted rows before
        assert len(batch["lines"]) % 30 == 0 or s.end is None  # whole row groups
        parts.append(batch)
    whole = read(path, spec)
    for k in whole:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k], k)


def test_uris_are_read_through_arrow_file_systems(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    d.mkdir()
    table = sr.arrow_table(sr.make_records(50))
    sr.write_parquet(d / "a.parquet", table[:20])
    sr.write_parquet(d / "b.parquet", table[20:])
    spec = dataclasses.replace(SPEC, schema=sr.SCHEMA)
    uri = d.as_uri()
    assert guess_format(uri) == "parquet"
    sr.assert_same(read(d, spec), read(uri, spec))
    shards = plan([uri], 4)
    assert [s.path for s in shards] == [f"{uri}/a.parquet", f"{uri}/b.parquet"]
    assert len(fingerprint(shards)) == 64
    with pytest.raises(ShoalError, match=f"{uri}/x.vw: no such file"):
        read(f"{uri}/x.vw")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_text("1 | a\n")
    with pytest.raises(ShoalError, match="not a readable Parquet file"):
        read(path)
    with pytest.raises(ShoalError, match="no such file"):
        read(tmp_path / "nope.parquet")


_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import pyarrow as pa, pyarrow.parquet as pq
    from shoal import FeatureSpec, LearnerConfig, Model, TrainOptions, train

    def peak_kib():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    data, warm = sys.argv[1], Path(sys.argv[2])
    pq.write_table(pa.table({"label": [1, 0], "x0": [1.0, 2.0], "c": ["a", "b"]}), warm)
    opts = TrainOptions(block_bytes=256 << 10, parse_threads=2)
    model = Model(FeatureSpec(bits=18), LearnerConfig(loss="logistic"))
    train(model, [warm], opts)  # compiles (or loads) every kernel on the way
    before = peak_kib()
    report = train(model, [data], opts)
    print(json.dumps({"before": before, "after": peak_kib(), "examples": report.examples}))
    """
)


@pytest.mark.slow
def test_training_on_parquet_larger_than_memory_budget(tmp_path: Path) -> None:
    """About 280 MB of Parquet trains within a 64 MiB budget of extra memory (reading the
    whole data set at once would take about 400 MiB)."""
    budget_kib = 64 << 10
    d = tmp_path / "big"
    d.mkdir()
    rng = np.random.default_rng(0)
    rows, files = 250_000, 8
    vocab = pa.array([f"cat{i}" for i in range(1000)])
    for i in range(files):
        cols = {"label": pa.array(rng.integers(0, 2, rows).astype(np.int8))}
        for j in range(14):
            cols[f"x{j}"] = pa.array(rng.standard_normal(rows))
        cols["c"] = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 1000, rows)), vocab)
        pq.write_table(pa.table(cols), d / f"part-{i}.parquet", row_group_size=16_384)
    raw = sum(
        pq.ParquetFile(f).metadata.row_group(g).total_byte_size
        for f in d.iterdir()
        for g in range(pq.ParquetFile(f).metadata.num_row_groups)
    )
    assert raw > 3 * (budget_kib << 10)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(d), str(tmp_path / "warm.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["examples"] == rows * files
    assert got["after"] - got["before"] < budget_kib, got
