"""CSV/TSV under a column schema: same batches as the same records in VW text."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from shoal.data.reader import ReadStats, TextReader
from shoal.errors import ConfigError, DataError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec

SCHEMA = "label,weight,tag,I1:num,I2:num,C1:cat,C2:cat"
ROWS = [
    ("1", "1.0", "a", "3.5", "", "abc", "x"),
    ("0", "2", "b", "-1", "7", "", "y y"),
    ("1", "", "", "0.25", "0", "abc", ""),
]
VW = ["1 1.0 'a | I1:3.5 C1=abc C2=x", "1 | I1:0.25 C1=abc"]  # rows 1 and 3 of ROWS


def concat(batches: list) -> dict[str, np.ndarray]:
    keys = ("indices", "values", "labels", "weights")
    out = {k: np.concatenate([getattr(b, k) for b in batches]) for k in keys}
    out["lens"] = np.concatenate([np.diff(b.indptr) for b in batches])
    out["tags"] = np.array([t for b in batches for t in b.tags()])
    return out


def write_csv(path: Path, rows: list[tuple[str, ...]], header: bool, sep: str = ",") -> Path:
    lines = [sep.join(SCHEMA_NAMES)] if header else []
    lines += [sep.join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


SCHEMA_NAMES = ["label", "weight", "tag", "I1", "I2", "C1", "C2"]


@pytest.mark.parametrize("header", [True, False])
def test_csv_equals_vw_text(tmp_path: Path, header: bool) -> None:
    spec = FeatureSpec(bits=20, schema=ColumnSchema.parse(SCHEMA))
    csv = write_csv(tmp_path / "d.csv", ROWS[::2], header)  # rows without spaces in categories
    vw = tmp_path / "d.vw"
    vw.write_text("\n".join(VW) + "\n")
    a = concat(list(TextReader(spec=spec).read(csv)))
    b = concat(list(TextReader(spec=FeatureSpec(bits=20)).read(vw)))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_tsv_and_missing_values(tmp_path: Path) -> None:
    spec = FeatureSpec(bits=20, schema=ColumnSchema.parse(SCHEMA))
    tsv = write_csv(tmp_path / "d.tsv", ROWS, header=False, sep="\t")
    got = concat(list(TextReader(spec=spec).read(tsv)))
    # I1 C1 C2 + constant; I1 I2 C2="y y" (C1 missing) + constant; I1 C1 (I2 is 0) + constant
    assert got["lens"].tolist() == [4, 4, 3]
    assert got["labels"].tolist() == [1.0, 0.0, 1.0]
    assert got["weights"].tolist() == [1.0, 2.0, 1.0]
    assert got["tags"].tolist() == ["a", "b", ""]


def test_header_maps_columns_by_name(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("C1,extra,label,I1\nabc,zzz,1,3.5\n")
    spec = FeatureSpec(bits=20, schema=ColumnSchema.parse("label,I1:num,C1:cat"))
    vw = tmp_path / "h.vw"
    vw.write_text("1 | C1=abc I1:3.5\n")
    a = concat(list(TextReader(spec=spec).read(path)))
    b = concat(list(TextReader(spec=FeatureSpec(bits=20)).read(vw)))
    assert sorted(a["indices"]) == sorted(b["indices"])
    assert a["labels"].tolist() == [1.0]


def test_log1p_and_fill(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,9,\n0,-9,5\n")
    schema = ColumnSchema.parse("label,I1:num:log1p,I2:num:fill=2")
    got = concat(list(TextReader(spec=FeatureSpec(bits=20, schema=schema)).read(path)))
    np.testing.assert_allclose(
        sorted(got["values"][:3]), sorted([np.log(10.0), 2.0, 1.0]), rtol=1e-6
    )
    assert -np.log(10.0) == pytest.approx(min(got["values"][3:]), rel=1e-6)


def test_quoted_fields(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('1,"a,b",2\n1,"a,b","2"\r\n')  # a closing quote right before CR LF too
    spec = FeatureSpec(bits=20, schema=ColumnSchema.parse("label,C1:cat,I1:num"))
    vw = tmp_path / "q.vw"
    vw.write_text("1 | C1=a,b I1:2\n1 | C1=a,b I1:2\n")
    a = concat(list(TextReader(spec=spec).read(path)))
    b = concat(list(TextReader(spec=FeatureSpec(bits=20)).read(vw)))
    assert sorted(a["indices"]) == sorted(b["indices"])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1,2", "the line has 2 fields; the schema expects 3"),
        ("1,2,x,4", "the line has 4 fields"),
        ("x,1,a", "label 'x' is not a number"),
        ("1,1e999,a", "numeric field '1e999' is not a finite number"),
        ('1,2,"a""b"', 'field \'"a""b"\' opens a quote that does not close'),  # doubled quotes
        ('1,2,"ab', "field '\"ab' opens a quote that does not close"),  # never closed
        ('1,"2"x,a', "field '\"2\"x' opens a quote that does not close"),  # text after it
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"1,2,a\n{line}\n0,1,b\n")
    spec = FeatureSpec(bits=20, schema=ColumnSchema.parse("label,I1:num,C1:cat"))
    with pytest.raises(DataError, match=f"line 2 of {path}: {problem}"):
        list(TextReader(spec=spec).read(path))
    stats = ReadStats()
    rows = sum(len(b) for b in TextReader(spec=spec, on_bad_record="skip").read(path, stats))
    assert (rows, stats.skipped) == (2, 1)


def test_csv_needs_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("1,2\n")
    with pytest.raises(ConfigError, match="--schema"):
        list(TextReader(spec=FeatureSpec()).read(path))


def test_byte_ranges_read_every_record_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(str(int(rng.integers(2))), "", "", f"{rng.normal():.4f}", "", f"v{i % 7}", "")
            for i in range(500)]  # fmt: skip
    path = write_csv(tmp_path / "r.csv", rows, header=True)
    spec = FeatureSpec(bits=20, schema=ColumnSchema.parse(SCHEMA))
    whole = concat(list(TextReader(spec=spec).read(path)))
    size = path.stat().st_size
    cuts = [0, *sorted(rng.integers(1, size, size=6).tolist()), size]
    parts = [b for a, e in itertools.pairwise(cuts)
             for b in TextReader(spec=spec, block_bytes=97).read(path, start=a, end=e)]  # fmt: skip
    got = concat(parts)
    for k in whole:
        np.testing.assert_array_equal(whole[k], got[k], err_msg=k)
