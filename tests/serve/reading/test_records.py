"""JSON records become VW lines that hash exactly as the same record written in VW text."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.features.spec import FeatureSpec
from shoal.serve.errors import RequestError
from shoal.serve.reading.records import (
    check_line,
    features_line,
    features_part,
    labeled_line,
    number_text,
    parse_lines,
)

SPEC = FeatureSpec(bits=16, interactions=("uv",))


def same_rows(a: list[str], b: list[str]) -> bool:
    """Same labels, weights and features (as sets of hashed index and value) row by row."""
    x, y = parse_lines(SPEC, a), parse_lines(SPEC, b)

    def rows(batch: Batch) -> list[list[tuple[int, float]]]:
        return [
            sorted(zip(batch.indices[s:e].tolist(), batch.values[s:e].tolist(), strict=True))
            for s, e in zip(batch.indptr[:-1], batch.indptr[1:], strict=True)
        ]

    return (
        rows(x) == rows(y)
        and np.array_equal(x.labels, y.labels, equal_nan=True)
        and np.array_equal(x.weights, y.weights)
    )


def test_objects_hash_as_vw_text() -> None:
    record = {"u": {"id": "u7", "age": 31, "gone": None}, "hour": 14, "v": {"x": 0.25}}
    assert features_line(record) == "| hour:14 |u id=u7 age:31 |v x:0.25"
    assert same_rows([features_line(record)], ["|u id=u7 age:31 | hour:14 |v x:0.25"])
    assert labeled_line({"label": -1, "features": record, "weight": 2}, "r") == (
        "-1 2 | hour:14 |u id=u7 age:31 |v x:0.25"
    )
    assert same_rows([labeled_line({"label": 1, "features": {}}, "r")], ["1 |"])


@pytest.mark.parametrize("x", [0.1, 1e-30, 3.4e38, -2.5, 7, 2**60, 1 / 3])
def test_numbers_parse_back_to_the_same_float32(x: float) -> None:
    batch = parse_lines(SPEC, [f"| a:{number_text(x, 'x')}"])
    assert batch.values[0] == np.float32(x)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"a b": 1}, "records[0].a b"),
        ({"a": "x y"}, "records[0].a"),
        ({"a": "x|y"}, "records[0].a"),
        ({"ns": {"a:b": 1}}, "records[0].ns.a:b"),
        ({"n s": {"a": 1}}, "records[0].n s"),
        ({"a": True}, "records[0].a"),
        ({"a": [1]}, "records[0].a"),
        ({"a": 1e39}, "records[0].a"),
        ({"": 1}, "records[0]."),
        ("not an object", "records[0]"),
    ],
)
def test_what_vw_text_cannot_hold_is_refused_naming_the_field(record: object, field: str) -> None:
    with pytest.raises(RequestError) as err:
        features_line(record, "records[0]")
    assert err.value.field == field


def test_labeled_records_nested_or_flat_as_in_json_lines_files() -> None:
    nested = {"label": 1, "weight": 2, "features": {"x": 0.5, "u": {"id": "a"}}}
    flat = {"label": 1, "weight": 2, "tag": "t7", "x": 0.5, "u": {"id": "a"}}
    assert labeled_line(nested, "r") == labeled_line(flat, "r") == "1 2 | x:0.5 |u id=a"
    assert labeled_line({"label": -1}, "r") == "-1 |"  # no feature: the constant alone
    with pytest.raises(RequestError, match=r"r\.label: missing"):
        labeled_line({"features": {}}, "r")
    with pytest.raises(RequestError, match=r"r\.label: missing"):
        labeled_line({"lable": 1, "x": 2}, "r")
    with pytest.raises(RequestError, match=r"r\.label: must be a number"):
        labeled_line({"label": "1", "features": {}}, "r")
    with pytest.raises(RequestError, match=r"r\.weight: importance weight -1 is negative"):
        labeled_line({"label": 1, "features": {}, "weight": -1}, "r")
    with pytest.raises(RequestError, match="unknown fields"):
        labeled_line({"label": 1, "features": {}, "extra": 0}, "r")


def test_lines_are_single_non_blank_strings() -> None:
    assert check_line("1 | a", "r") == "1 | a"
    for bad in ("1 | a\n-1 | b", "   ", 5):
        with pytest.raises(RequestError):
            check_line(bad, "r")


def test_parse_errors_name_the_record() -> None:
    with pytest.raises(RequestError, match=r"records\[1\]: label 'abc' is not a number"):
        parse_lines(SPEC, ["1 | a", "abc | b"])
    with pytest.raises(RequestError, match=r"records\[0\]: feature value in 'a:x' is not"):
        parse_lines(SPEC, ["| a:x"])


def test_features_part_drops_label_weight_and_tag() -> None:
    assert features_part("1 2.0 'tag |u a |v b:2") == "|u a |v b:2"
    assert same_rows(["1 " + features_part("-1 'x |u a |v b:2")], ["1 |u a |v b:2"])


def test_vw_and_json_lines_parse_in_order_into_one_batch() -> None:
    json_rows = [
        '{"label": 1, "weight": 2, "features": {"u": {"a": "x"}}}',
        '{"features": {"b": 3}}',
    ]
    mixed = parse_lines(SPEC, ["-1 |u a=x", *json_rows, "1 |v c"])
    alone = [parse_lines(SPEC, [r]) for r in ("-1 |u a=x", "1 |u a=x", "| b:3", "1 |v c")]
    assert mixed.indptr.tolist() == [0, 2, 4, 6, 8]  # a feature and the constant
    assert mixed.indices.tolist() == [i for b in alone for i in b.indices.tolist()]
    assert mixed.labels[[0, 1, 3]].tolist() == [-1, 1, 1] and np.isnan(mixed.labels[2])
    assert mixed.weights.tolist() == [1, 2, 1, 1] and mixed.lines.tolist() == [1, 2, 3, 4]
    with pytest.raises(RequestError, match=r"records\[2\]: feature 'b': list value"):
        parse_lines(SPEC, ["| a", '{"features": {}}', '{"features": {"b": [1]}}'])
    assert features_part(json_rows[0]) == '{"features": {"u": {"a": "x"}}}'
