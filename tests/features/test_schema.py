"""Column schemas: the text form, files, validation, and their place in the FeatureSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import ConfigError
from shoal.features.schema import Column, ColumnSchema
from shoal.features.spec import FeatureSpec


def test_criteo_layout() -> None:
    s = ColumnSchema.parse("label,I1..I13:num,C1..C26:cat", delimiter="\t")
    assert len(s.columns) == 40
    assert [c.role for c in s.columns[:2]] == ["label", "num"]
    assert s.columns[-1] == Column(name="C26", role="cat")
    assert s.index("label") == 0 and s.index("weight") == -1


def test_options() -> None:
    s = ColumnSchema.parse("click:label, hour:ignore, x:num:log1p:fill=0, site:cat:ns=s")
    assert s.columns[0].role == "label"
    assert s.columns[2].transform == "log1p" and s.columns[2].fill == 0.0
    assert s.columns[3].namespace == "s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label,label", "named twice"),
        ("a:label,b:label,c", "more than one label"),
        ("label", "nothing to learn"),
        ("x:cat:log1p", "only numeric"),
        ("x:num:banana", "unknown part"),
        ("x:num:fill=abc", "fill needs a number"),
        ("I5..I2:num", "a range"),
        ("", "no columns"),
    ],
)
def test_invalid_schemas(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ColumnSchema.parse(text)


def test_round_trip_through_the_spec() -> None:
    schema = ColumnSchema.parse("label,I1:num:log1p,C1:cat:ns=c", delimiter=";")
    spec = FeatureSpec(bits=12, schema=schema)
    back = FeatureSpec.from_json(spec.to_json())
    assert back == spec and back.schema == schema


def test_schema_files(tmp_path: Path) -> None:
    text = tmp_path / "schema.txt"
    text.write_text("label  # the click\nI1..I3:num\nC1:cat\n")
    assert ColumnSchema.load(text).names == ["label", "I1", "I2", "I3", "C1"]
    js = tmp_path / "schema.json"
    original = ColumnSchema.parse("label,I1:num:fill=1", delimiter="\t")
    import json

    js.write_text(json.dumps(original.to_dict()))
    assert ColumnSchema.load(js) == original
