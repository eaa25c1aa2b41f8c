"""Rows put together from column tensors by one compiled call are the rows that each record
makes on its own (``Rows.of_record``), to the byte, or there are none (the slower way)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import FeatureSpec
from shoal.features.schema import ColumnSchema
from shoal.serve.errors import RequestError
from shoal.serve.reading.columnrows import assemble
from shoal.serve.reading.rows import Rows, rows_of

SCHEMA = "label,I1..I3:num:log1p,C1..C3:cat,w:weight"
NAMES = ["label", "I1", "I2", "I3", "C1", "C2", "C3", "w"]


def one_by_one(rows: Rows, columns: dict[str, list[Any]], n: int) -> list[str] | None:
    """Each record's row on its own, or None if one is an error or no row (a JSON line)."""
    out = []
    for r in range(n):
        record = {name: values[r] for name, values in columns.items()}
        try:
            line = rows.of_record(record, f"records[{r}]")
        except RequestError:
            return None
        if line.startswith('{"features"'):
            return None
        out.append(line)
    return out


def test_strings_integers_and_floats_of_tensors() -> None:
    rows = rows_of(FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter="\t")))
    columns: dict[str, list[Any]] = {
        "C2": ["68fd1e64", "", "é x"],
        "I1": [3, -40, 10**15 - 1],
        "I3": [0.1, math.nan, -2.5e-7],
        "C1": [2**62, 0, -7],  # integer categories
        "label": [True, 1.5, "x"],  # not a feature: never read
    }
    made = assemble(rows, columns, 3)
    assert made is not None and made == one_by_one(rows, columns, 3)
    assert made[1] == "\t-40\t\t\t0\t\t\t"


def test_the_widest_integer_categories() -> None:
    """Twenty characters each: the kernel's room for the rows holds them."""
    rows = rows_of(FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=",")))
    columns: dict[str, list[Any]] = {
        "C1": [-(2**63) + 1] * 50,
        "C2": [2**63 - 1] * 50,
        "C3": [-(10**18)] * 50,
    }
    made = assemble(rows, columns, 50)
    assert made is not None and made == one_by_one(rows, columns, 50)
    assert made[0] == ",,,,-9223372036854775807,9223372036854775807,-1000000000000000000,"


def test_what_assemble_cannot_make_goes_the_slower_way() -> None:
    rows = rows_of(FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=",")))
    for columns in [
        {"C1": ["a,b"]},  # the separator
        {"C1": ['a"b']},
        {"C1": ["a\nb"]},
        {"C1": ["a\rb"]},
        {"I1": [10**15]},  # 16 digits
        {"I1": [1e20]},  # an exponent
        {"I1": [math.inf]},
        {"I1": ["3"]},  # a string in a numeric column
        {"C1": [1.5]},  # a float in a categorical one
        {"I1": [True]},
        {"C1": [-(2**63)]},
        {"I1": [None]},
        {"C1": ["\ud800"]},
    ]:
        assert assemble(rows, columns, 1) is None, columns


values = st.one_of(
    st.lists(st.integers(-(2**64), 2**64), min_size=3, max_size=3),
    st.lists(st.floats(width=32), min_size=3, max_size=3),
    st.lists(st.floats(), min_size=3, max_size=3),
    st.lists(st.text(max_size=5), min_size=3, max_size=3),
    st.lists(st.one_of(st.integers(), st.floats(), st.text(), st.none()), min_size=3, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), values), st.sampled_from(["\t", ","]))
def test_assemble_agrees_with_each_record_or_makes_none(
    columns: dict[str, list[Any]], delimiter: str
) -> None:
    rows = rows_of(FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=delimiter)))
    made = assemble(rows, columns, 3)
    if made is not None:
        assert made == one_by_one(rows, columns, 3)


plain = st.one_of(
    st.lists(st.integers(-(10**15) + 1, 10**15 - 1), min_size=3, max_size=3),
    st.lists(st.floats(max_value=1e15, min_value=-1e15), min_size=3, max_size=3),
)
words = st.lists(
    st.text(st.characters(blacklist_characters=',\t"\n\r', blacklist_categories=["Cs"])),
    min_size=3,
    max_size=3,
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["I1", "I2", "I3"]), plain),
    st.dictionaries(st.sampled_from(["C1", "C2", "C3"]), words),
)
def test_plain_columns_are_always_assembled(
    numbers: dict[str, list[Any]], categories: dict[str, list[Any]]
) -> None:
    rows = rows_of(FeatureSpec(schema=ColumnSchema.parse(SCHEMA, delimiter=",")))
    columns = {**numbers, **categories}
    made = assemble(rows, columns, 3)
    assert made is not None and made == one_by_one(rows, columns, 3)
