"""The compiled reader of prediction bodies writes the rows that ``json.loads`` and
``Rows.of_records`` make, to the byte, or hands the body back: never another row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import FeatureSpec, Model
from shoal.features.schema import ColumnSchema
from shoal.serve.errors import RequestError
from shoal.serve.reading.jsonrows import BodyRows
from shoal.serve.reading.rows import rows_of
from shoal.serve.reading.scoring import record_lines

SCHEMA = "label,I1..I3:num:log1p,C1..C3:cat,w:weight"
NAMES = ["label", "I1", "I2", "I3", "C1", "C2", "C3", "w"]


def python_rows(spec: FeatureSpec, body: bytes) -> list[str] | None:
    """The rows of the Python path, or None where it refuses the body."""
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict) or set(doc) != {"records"} or not doc["records"]:
            return None
        return rows_of(spec).of_records(doc["records"], "records")
    except (ValueError, RequestError):
        return None


@pytest.mark.parametrize("delimiter", ["\t", ","])
def test_plain_objects_are_read_by_the_kernel(delimiter: str) -> None:
    spec = FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=delimiter))
    records = [
        {"I1": 3, "C1": "68fd1e64", "I2": None, "C3": 12, "I3": -40},
        {"C2": "", "label": 1, "w": 2},  # the label and the weight are not the row's
        {},
        {"C1": "é ü\u2028", "I1": 123456789012345, "C2": "\\/"},  # escaped, or not
    ]
    for separators, ascii in [((",", ":"), True), ((", ", ": "), False)]:
        for indent in [None, 2]:
            body = json.dumps(
                {"records": records}, separators=separators, indent=indent, ensure_ascii=ascii
            )
            fast = rows_of(spec).keys.rows(body.encode(), 10)
            assert fast is not None
            assert fast == rows_of(spec).of_records(records, "records")


@pytest.mark.parametrize(
    "body",
    [
        {"records": [{"I1": 3.5}]},  # a float
        {"records": [{"I1": True}]},
        {"records": [{"I1": 1234567890123456}]},  # 16 digits
        {"records": [{"I1": "3"}]},  # a string in a numeric column
        {"records": [{"C1": 1.5}]},
        {"records": [{"C1": 'a"b'}]},  # a quote
        {"records": [{"C1": "a\nb"}]},  # a line break
        {"records": [{"C1": "a,b"}]},  # the separator
        {"records": [{"c1": "x"}]},  # no such column
        {"records": [{"u": {"C1": "x"}}]},  # a namespace's object
        {"records": [{"C1": ["x"]}]},
        {"records": ["\t1\t2\t3\ta\tb\tc\t"]},  # a row given as text
        {"records": [{"I1": 1}], "ignore_unknown": True},
        {"records": []},
        {"records": [{"I1": 1}] * 11},  # past the limit
        {"rows": [{"I1": 1}]},
    ],
)
def test_what_the_kernel_does_not_read_goes_to_python(body: dict[str, Any]) -> None:
    spec = FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=","))
    assert rows_of(spec).keys.rows(json.dumps(body).encode(), 10) is None


@pytest.mark.parametrize(
    "text",
    [
        b'{"records": [{"I1": 1, "I1": 2}]}',  # a key twice: json keeps the last
        b'{"records": [{"I1": -0}]}',  # Python writes 0
        b'{"records": [{"I1": 01}]}',
        b'{"records": [{"I1": NaN}]}',
        b'{"records": [{"I1": 1,}]}',
        b'{"records": [{"I1": 1}]} x',
        b'{"records": [{"I\\u0031": 1}]}',
        b'\xef\xbb\xbf{"records": [{"I1": 1}]}',
        b'{"records": [{"C1": "\xff"}]}',
        b'{"records": [{"C1": "a\\u002cb"}]}',  # the separator, escaped
        b'{"records": [{"I1": 1}], "records": [{"I1": 2}]}',
    ],
)
def test_bodies_outside_strict_plain_json_go_to_python(text: bytes) -> None:
    spec = FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=","))
    assert rows_of(spec).keys.rows(text, 10) is None


def test_a_row_that_would_read_as_a_json_line_goes_to_python() -> None:
    spec = FeatureSpec(schema=ColumnSchema.parse("C1:cat,I1", delimiter=","))
    assert rows_of(spec).keys.rows(b'{"records": [{"C1": "{x"}]}', 10) is None
    assert rows_of(spec).keys.rows(b'{"records": [{"C1": "x{"}]}', 10) == ["x{,"]


values = st.one_of(
    st.none(),
    st.integers(-(10**17), 10**17),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from(["a,b", "0f", "", "é", "-0"]),
)
records = st.lists(
    st.dictionaries(st.sampled_from([*NAMES, "C9"]), values, max_size=len(NAMES) + 1),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(records, st.sampled_from(["\t", ","]), st.sampled_from([None, 1]))
def test_the_kernel_agrees_with_python_or_hands_back(
    recs: list[dict[str, Any]], delimiter: str, indent: int | None
) -> None:
    spec = FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=delimiter))
    body = json.dumps({"records": recs}, indent=indent, ensure_ascii=False).encode()
    fast = rows_of(spec).keys.rows(body, 10)
    if fast is not None:
        assert fast == python_rows(spec, body)


plain = st.one_of(
    st.none(),
    st.integers(-(10**15) + 1, 10**15 - 1),
    st.text(st.characters(blacklist_characters=',\t"\n\r', blacklist_categories=["Cs"])),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from(NAMES), plain), min_size=1, max_size=4),
    st.sampled_from(["\t", ","]),
    st.booleans(),
)
def test_plain_values_are_always_read_by_the_kernel(
    recs: list[dict[str, Any]], delimiter: str, ascii: bool
) -> None:
    spec = FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=delimiter))
    body = json.dumps({"records": recs}, ensure_ascii=ascii).encode()
    nums = [v for r in recs for k, v in r.items() if k.startswith("I")]
    if any(isinstance(v, str) for v in nums):
        return  # a string in a numeric column is an error
    fast = rows_of(spec).keys.rows(body, 10)
    assert fast is not None and fast == python_rows(spec, body)


def test_rows_made_under_another_schema_are_made_again() -> None:
    """A model loaded between reading a body and scoring it: the live schema's rows."""
    old = FeatureSpec(schema=ColumnSchema.parse("label,n,c:cat"))
    live = Model(FeatureSpec(schema=ColumnSchema.parse("label,c:cat,n")))
    objects = [{"n": 3, "c": "a"}]
    body = json.dumps({"records": objects}).encode()
    made = rows_of(old).keys.rows(body, 10)
    assert made == [",3,a"]
    assert old.schema is not None
    again = BodyRows(made, old.schema, lambda: objects)
    assert record_lines(again, live, labeled=False) == [",a,3"]
    same = BodyRows(made, old.schema, lambda: [])
    assert record_lines(same, Model(old), labeled=False) == [",3,a"]
