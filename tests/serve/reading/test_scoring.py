"""Scoring shared by the servers that predict outside ``ModelService`` (front-end processes,
read replicas): a bad request fails alone; learning needs labels the model takes."""

from __future__ import annotations

import re

import pytest

from shoal import FeatureSpec, LearnerConfig, Model
from shoal.features.schema import ColumnSchema
from shoal.serve.errors import RequestError
from shoal.serve.reading.records import parse_lines
from shoal.serve.reading.scoring import learn_lines, record_lines, score


def test_a_request_that_does_not_parse_fails_alone() -> None:
    model = Model(FeatureSpec(bits=8), LearnerConfig(learning_rate=1.0))
    model.learn(parse_lines(model.spec, ["1 | a", "-1 | b"]))
    good = record_lines(["| a", {"b": 1}], model, labeled=False)

    def remember(requests: list[list[str]]) -> list[list[str]]:
        return [[f"id{len(r)}"] * len(r) for r in requests]

    requests = [(good, True), (["| x:oops"], False), (["'t | a"], False)]
    out = score(model, requests, version=4, applied_seq=9, remember=remember)
    first, bad, tagged = out
    assert not isinstance(first, Exception) and not isinstance(tagged, Exception)
    assert first.values == model.predict(parse_lines(model.spec, good)).tolist()
    assert (first.version, first.applied_seq, first.event_ids) == (4, 9, ["id2", "id2"])
    assert isinstance(bad, RequestError)
    assert tagged.tags == ["t"] and tagged.event_ids == []


def test_learning_needs_a_label_the_model_takes() -> None:
    model = Model(FeatureSpec(bits=8), LearnerConfig(loss="multiclass", classes=3))
    assert learn_lines(["2 | a", {"label": 3, "features": {"b": 1}}], model) == [
        "2 | a", "3 | b:1",
    ]  # fmt: skip
    with pytest.raises(RequestError, match=r"records\[1\]: has no label"):
        learn_lines(["1 | a", "| b"], model)
    with pytest.raises(RequestError, match="class"):
        learn_lines(["7 | a"], model)


def test_rows_sent_as_text_are_checked_one_by_one_when_any_is_not_plain() -> None:
    """A schema model's rows pass as they are; a blank row, a line break or a JSON line that
    is no record is an error naming its record, however many plain rows come with it."""
    model = Model(FeatureSpec(schema=ColumnSchema.parse("label,n,c:cat")))
    rows = [",3,a", ",,", ",4,b"]
    assert record_lines(rows, model, labeled=False) == rows
    for bad, problem in [
        ("", "is blank"),
        (",1,a\rb", "holds a line break"),
        (",1,a\nb", "holds a line break"),
        ('{"x": 1}', 'a JSON line is {"features"'),
    ]:
        with pytest.raises(RequestError, match=r"records\[1\]: " + re.escape(problem)):
            record_lines([rows[0], bad, rows[2]], model, labeled=False)
    json_row = '{"row": ",5,c"}'
    assert record_lines([rows[0], json_row], model, labeled=False) == [rows[0], json_row]
