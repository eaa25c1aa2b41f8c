"""JSON lines: the two record shapes, value types, bad lines and their policy, byte ranges."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from shoal.data.reader import ReadStats, TextReader, guess_format
from shoal.errors import DataError
from shoal.features.hashing import feature_hash
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.train.plan import plan
from tests.data import same_records as sr

SPEC = FeatureSpec(bits=20)


def batches(path: Path, spec: FeatureSpec = SPEC, **kw: object) -> dict[str, np.ndarray]:
    return sr.concat(list(TextReader(spec=spec, **kw).read(path)))  # type: ignore[arg-type]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_value_types_hash_as_vw_text(tmp_path: Path) -> None:
    """Numbers numeric, strings categorical, booleans 1/0; null, NaN, "" and 0 dropped."""
    jl = write(
        tmp_path / "t.jsonl",
        '{"label": 0, "n": 2.5, "i": 3, "s": "x", "t": true, "f": false, "z": 0, "e": "",'
        ' "nil": null, "nan": NaN, "7": 1.5, "u": {"id": "\u00e9", "k": 4}}\n',
    )
    vw = write(tmp_path / "t.vw", "0 | n:2.5 i:3 s=x t:1 7:1.5 |u id=\u00e9 k:4\n")
    got = batches(jl)
    sr.assert_same(batches(vw), got)
    assert got["lens"].tolist() == [8]  # 7 features and the constant


def test_a_category_with_a_space_hashes_its_bytes(tmp_path: Path) -> None:
    jl = write(tmp_path / "t.jsonl", '{"s": "x y"}\n')
    got = batches(jl, dataclasses.replace(SPEC, constant=False))
    assert got["indices"].tolist() == [feature_hash("s=x y") & SPEC.mask]
    assert np.isnan(got["labels"]).all()


def test_nested_and_flat_shapes_mix(tmp_path: Path) -> None:
    jl = write(
        tmp_path / "t.jsonl",
        '{"label": 1, "features": {"a": {"x": 1}, "y": 2}, "z": "q"}\n'
        '{"features": {"": {"y": 2}}, "label": -1, "weight": 0.5, "tag": 17}\n',
    )
    vw = write(tmp_path / "t.vw", "1 | z=q |a x:1 | y:2\n-1 0.5 '17 | y:2\n")
    sr.assert_same(batches(vw), batches(jl))


def test_blank_lines_crlf_and_gzip(tmp_path: Path) -> None:
    text = '{"label": 1, "x": 1}\r\n\r\n   \n{"label": -1, "x": 2}'
    plain = batches(write(tmp_path / "t.jsonl", text))
    assert plain["lines"].tolist() == [1, 4]
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    sr.assert_same(plain, batches(gz))


BAD = [
    ('{"label": 1, "x": 1', "not valid JSON: Expecting ',' delimiter"),
    ("[1, 2]", "not a JSON object but list"),
    ('{"label": "yes", "x": 1}', 'label "yes" is not a number'),
    ('{"label": true, "x": 1}', "label true is not a number"),
    ('{"label": 1, "weight": -2, "x": 1}', "weight -2 is not a non-negative number"),
    ('{"label": 1, "tag": [1], "x": 1}', "tag [1] is not a string or an integer"),
    ('{"label": 1, "x": [1, 2]}', "feature 'x': list value where a number"),
    ('{"label": 1, "u": {"x": {"deep": 1}}}', "feature 'x' of namespace 'u': a nested value"),
    ('{"label": 1, "features": 3}', '"features" is not an object'),
    ('{"label": 1, "x": 1e999}', "feature 'x': value inf is not a finite float32 number"),
    ('{"label": 1, "x": 1e39}', "is not a finite float32 number"),
    ('{"label": 1, "": 1}', "a feature has an empty name"),
    (b'{"label": 1, "x": "\xff"}', "not valid UTF-8 text"),
]


@pytest.mark.parametrize(("line", "problem"), BAD)
def test_a_bad_line_stops_with_its_file_and_line(
    tmp_path: Path, line: str | bytes, problem: str
) -> None:
    path = tmp_path / "bad.jsonl"
    raw = line if isinstance(line, bytes) else line.encode()
    path.write_bytes(b'{"label": 1, "x": 1}\n\n' + raw + b'\n{"label": -1, "x": 2}\n')
    with pytest.raises(DataError) as info:
        batches(path)
    assert info.value.line == 3 and info.value.path == str(path)
    assert problem in info.value.problem
    assert "--on-bad-record skip" in str(info.value)


def test_skip_policy_counts_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    lines = ['{"label": 1, "x": 1}', "oops", '{"label": -1, "x": 2}', '{"label": 2, "x": [3]}']
    path = write(tmp_path / "t.jsonl", "\n".join(lines * 50) + "\n")
    stats = ReadStats()
    got = sr.concat(
        list(TextReader(spec=SPEC, on_bad_record="skip", block_bytes=100).read(path, stats))
    )
    assert (stats.rows, stats.skipped, stats.lines) == (100, 100, 200)
    assert stats.first_skipped.startswith(f"line 2 of {path}: not valid JSON")
    assert got["lines"].tolist() == [n for k in range(50) for n in (4 * k + 1, 4 * k + 3)]
    assert got["labels"].tolist() == [1.0, -1.0] * 50


def test_byte_ranges_read_every_line_once_with_its_number(tmp_path: Path) -> None:
    records = sr.make_records(300)
    path = write(tmp_path / "r.jsonl", sr.jsonl_text(records))
    whole = batches(path)
    shards = plan([path], 5)
    assert len(shards) == 5
    parts = [
        b for s in shards for b in TextReader(spec=SPEC).read(s.path, start=s.start, end=s.end)
    ]  # no first_line given: counted by the reader
    sr.assert_same(whole, sr.concat(parts))


def test_under_a_schema_lines_get_the_columns_transforms(tmp_path: Path) -> None:
    """With the schema of a model trained on CSV, a JSON line is read as that CSV row."""
    schema = ColumnSchema.parse("label,n:num:log1p:fill=3,c:cat:ns=cats,k:cat")
    spec = dataclasses.replace(SPEC, schema=schema)
    jl = write(
        tmp_path / "t.jsonl",
        '{"label": 1, "n": -8, "c": "a", "k": 12, "other": "ignored"}\n'
        '{"label": 0, "cats": {"c": "b"}, "k": true}\n',
    )
    csv = write(tmp_path / "t.csv", "label,n,c,k\n1,-8,a,12\n0,,b,true\n")
    sr.assert_same(batches(csv, spec), batches(jl, spec), lines=False)


def test_ignored_namespaces_are_dropped(tmp_path: Path) -> None:
    spec = dataclasses.replace(SPEC, ignore="u")
    jl = write(tmp_path / "t.jsonl", json.dumps({"label": 1, "x": 1, "u": {"a": 1}}) + "\n")
    vw = write(tmp_path / "t.vw", "1 | x:1 |u a:1\n")
    sr.assert_same(batches(vw, spec), batches(jl, spec))
    assert batches(jl, spec)["lens"].tolist() == [2]


def test_format_is_known_by_suffix_or_content(tmp_path: Path) -> None:
    assert guess_format(write(tmp_path / "a.ndjson", "")) == "jsonl"
    assert guess_format(write(tmp_path / "a.jsonl.gz", "")) == "jsonl"
    assert guess_format(write(tmp_path / "data", '\n  {"label": 1}\n')) == "jsonl"
