"""Scoring shared by the servers that predict outside ``ModelService`` (front-end processes,
read replicas): a bad request fails alone; learning needs labels the model takes."""

from __future__ import annotations

import pytest

from shoal import FeatureSpec, LearnerConfig, Model
from shoal.serve.errors import RequestError
from shoal.serve.records import parse_lines
from shoal.serve.scoring import learn_lines, record_lines, score


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
