"""Records to checked lines, and lines to predictions: what every server that predicts does,
whatever holds its model (``ModelService`` in one process; a front-end process's
``RemoteService``, over shared weights; a read replica's ``ReplicaService``).

>>> from shoal import FeatureSpec, Model
>>> m = Model(FeatureSpec(bits=8))
>>> lines = record_lines([{"a": 1}, "| b"], m, labeled=False)
>>> [p.values for p in score(m, [(lines, False)], version=1, applied_seq=0)]
[[0.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shoal.errors import DataError
from shoal.model.model import Model
from shoal.serve.batcher import split
from shoal.serve.errors import RequestError
from shoal.serve.records import (
    check_line,
    data_error_field,
    features_line,
    json_line,
    labeled_line,
    parse_lines,
)
from shoal.serve.service import Prediction

Request = tuple[list[str], bool]  # a prediction request's lines, and whether to remember them
Remember = Callable[[list[list[str]]], list[list[str]]]  # lines -> event ids (or [] each)


def _line(record: Any, field: str, model: Model, labeled: bool) -> str:
    if isinstance(record, str):
        return check_line(record, field)
    if model.spec.schema is not None:  # its columns hash as the schema says
        return json_line(record, field, labeled=labeled)
    return labeled_line(record, field) if labeled else features_line(record, field)


def record_lines(records: Sequence[Any], model: Model, *, labeled: bool) -> list[str]:
    """Records as clients send them (VW lines or JSON objects) as VW lines, checked."""
    return [_line(r, f"records[{i}]", model, labeled) for i, r in enumerate(records)]


def learn_lines(records: Sequence[Any], model: Model) -> list[str]:
    """Labeled records as VW lines that ``model`` can learn: every one has a label it takes."""
    lines = record_lines(records, model, labeled=True)
    batch = parse_lines(model.spec, lines)
    missing = np.flatnonzero(np.isnan(batch.labels))
    if len(missing):
        raise RequestError(
            f"records[{missing[0]}]",
            "has no label: learning needs one before the first '|' (or an object with "
            "'label' and 'features')",
        )
    try:
        model.check_labels(batch)
    except DataError as exc:
        raise data_error_field(exc) from None
    return lines


def score(
    model: Model,
    requests: list[Request],
    *,
    version: int,
    applied_seq: int,
    remember: Remember = lambda requests: [[] for _ in requests],
) -> list[Prediction | Exception]:
    """Predictions of several requests in one parse and one kernel call; a request whose
    lines do not parse gets its error (the others their predictions)."""
    try:
        batch = parse_lines(model.spec, [x for lines, _ in requests for x in lines])
    except RequestError as exc:
        if len(requests) == 1:
            return [exc]
        return [
            score(model, [r], version=version, applied_seq=applied_seq, remember=remember)[0]
            for r in requests
        ]  # whose error is it?
    sizes = [len(lines) for lines, _ in requests]
    values = split(model.predict(batch).tolist(), sizes)
    tags = split(batch.tags(), sizes)
    labeled = split((~np.isnan(batch.labels)).tolist(), sizes)
    ids = remember([lines if keep else [] for lines, keep in requests])
    return [
        Prediction(v, i, version, t, y, applied_seq)
        for v, i, t, y in zip(values, ids, tags, labeled, strict=True)
    ]
