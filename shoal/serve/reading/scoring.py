"""Records to checked lines, and lines to predictions: what every server that predicts does,
whatever holds its model (``ModelService`` in one process; a front-end process's
``RemoteService``, over shared weights; a read replica's ``ReplicaService``). One way for a
record to travel, whichever process answers it.

>>> from shoal import FeatureSpec, Model
>>> m = Model(FeatureSpec(bits=8))
>>> lines = record_lines([{"a": 1}, "| b"], m, labeled=False)
>>> [p.values for p in score(m, [(lines, False)], version=1, applied_seq=0)]
[[0.5, 0.5]]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from shoal.data.batch import Batch
from shoal.errors import DataError, ShoalError
from shoal.features.spec import FeatureSpec
from shoal.model.model import Model
from shoal.serve.errors import RequestError
from shoal.serve.learning.batcher import Batcher, split
from shoal.serve.reading.expansion import check_expansion
from shoal.serve.reading.jsonrows import BodyRows
from shoal.serve.reading.records import (
    check_line,
    data_error_field,
    features_line,
    features_part,
    features_parts,
    labeled_line,
    labeled_parts,
    parse_lines,
    plain_rows,
    with_label,
)
from shoal.serve.reading.rows import rows_of


@dataclass(frozen=True)
class Prediction:
    """Predictions of one request, the event ids their feedback names, the model version; and
    what VW lines carry besides features: each record's tag ('' if none) and whether it has a
    label (the TCP line protocol learns those)."""

    values: list[Any]
    event_ids: list[str]  # empty when the features were not kept (``remember=False``)
    version: int
    tags: list[str]
    labeled: list[bool]
    applied_seq: int = 0  # the last event learned before the prediction (it may hold later ones)


Request = tuple[list[str], bool]  # a prediction request's lines, and whether to remember them
Remember = Callable[[list[list[str]]], list[list[str]]]  # lines -> event ids (or [] each)


class Predicting:
    """What every served model does with records, whatever holds its weights (the one-process
    ``ModelService``, a front end's ``RemoteService``, a replica's ``ReplicaService``): records
    to lines, and predictions through the subclass's dynamic batcher. A subclass sets
    ``config`` (with ``ignore_unknown``) and ``_batcher``, and says which model is live."""

    config: Any
    _batcher: Batcher[Request, Prediction]
    keeps_features = True  # whether predictions get event ids for feedback (replicas: no)

    def _live_model(self) -> Model:
        raise NotImplementedError

    def lines(
        self, records: Sequence[Any], *, labeled: bool = False, ignore_unknown: bool = False
    ) -> list[str]:
        """Records as the lines that the event log keeps and the parsers read
        (``record_lines``); unknown fields are errors unless ``ignore_unknown`` (or the
        server's ``--ignore-unknown``)."""
        ignore = ignore_unknown or self.config.ignore_unknown
        return record_lines(records, self._live_model(), labeled=labeled, ignore_unknown=ignore)

    def predict(self, records: Sequence[Any], *, remember: bool = True) -> Prediction:
        """Score records. Each prediction's features are kept for its feedback unless
        ``remember`` is false: a client that never sees event ids (the TCP line protocol)
        would only fill the event log with features no feedback can name.

        Concurrent calls are scored together (``batcher.py``): one parse, one kernel call and
        one write of their features for all of them.
        """
        return self._batcher.submit((self.lines(records), remember and self.keeps_features))

    def predict_many(self, requests: Sequence[Sequence[Any]]) -> list[Prediction | BaseException]:
        """``predict`` of several requests at once (one batch where they fit): each gets its
        predictions, or the error that says what is wrong with it."""
        checked: list[Request | RequestError] = []
        for records in requests:
            try:
                checked.append((self.lines(records), self.keeps_features))
            except RequestError as exc:
                checked.append(exc)
        results = iter(self._batcher.submit_many([c for c in checked if isinstance(c, tuple)]))
        return [c if isinstance(c, RequestError) else next(results) for c in checked]


def _line(record: Any, field: str, model: Model, labeled: bool, ignore: bool) -> str:
    schema = model.spec.schema is not None
    if isinstance(record, str):
        return check_line(record, field, row=schema)
    if schema:  # a row of its table: its columns hash as the schema says
        rows = rows_of(model.spec)
        if not labeled:
            return rows.of_record(record, field, ignore_unknown=ignore)
        label, features, where = labeled_parts(record, field)
        line = rows.of_record(features, where, ignore_unknown=ignore)
        return with_label(features_part(line, row=True), label)
    return labeled_line(record, field) if labeled else features_line(record, field)


def record_lines(
    records: Sequence[Any], model: Model, *, labeled: bool, ignore_unknown: bool = False
) -> list[str]:
    """Records as clients send them, as the lines the event log keeps and the parsers read
    (``records.py``): a model with a column schema takes rows of its table, and objects become
    such rows (``rows.py``); unknown fields are errors unless ``ignore_unknown``."""
    if isinstance(records, BodyRows):  # rows made from a request's body, by its schema
        if records.schema == model.spec.schema:
            return list(records)
        records = records.objects()  # another model is live: its rows, made by its schema
    if model.spec.schema is not None and not labeled:
        kinds = set(map(type, records))
        if kinds == {dict}:
            return rows_of(model.spec).of_records(records, "records", ignore_unknown=ignore_unknown)
        if kinds == {str} and plain_rows(records):
            return list(records)
    lines = [
        _line(r, f"records[{i}]", model, labeled, ignore_unknown) for i, r in enumerate(records)
    ]
    if model.spec.schema is None:  # a row's columns are fixed; a VW line's namespaces are not
        check_expansion(model.spec, lines)  # a few lines must not make billions of features
    return lines


def learn_lines(records: Sequence[Any], model: Model, *, ignore_unknown: bool = False) -> list[str]:
    """Labeled records as lines that ``model`` can learn: every one has a label it takes."""
    lines = record_lines(records, model, labeled=True, ignore_unknown=ignore_unknown)
    batch = parse_lines(model.spec, lines)
    missing = np.flatnonzero(np.isnan(batch.labels))
    if len(missing):
        where = "in its label column" if model.spec.schema is not None else "before the first '|'"
        raise RequestError(
            f"records[{missing[0]}]",
            f"has no label: learning needs one {where} (or an object with 'label' and 'features')",
        )
    check_labels(model, batch)
    return lines


def check_labels(model: Model, batch: Batch, field: str = "") -> None:
    """The model takes every label of ``batch`` (a class in 1..K, ...): else a RequestError."""
    try:
        model.check_labels(batch)
    except DataError as exc:
        raise (RequestError(field, exc.problem) if field else data_error_field(exc)) from None


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


Scored = TypeVar("Scored", bound=Sized)  # what a service's ``score`` gives: its predictions


def warm_up(model: Model) -> None:
    """Load the kernels a prediction by ``model`` takes -- or compile them, on a machine without
    numba's cache (tens of seconds) -- before a client's first request waits for them."""
    spec = model.spec
    record = "| a"
    if spec.schema is not None:  # a row of empty fields
        record = rows_of(spec).sep * (len(spec.schema.columns) - 1)
    with contextlib.suppress(ShoalError):
        model.predict(parse_lines(spec, [record]))


def kept_features(
    requests: list[list[str]], spec: FeatureSpec, now: float
) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """New event ids for the lines of each request, and the (event id, features) rows that
    keep their features for feedback. Ids are the time in milliseconds, then 16 random hex
    digits (one urandom call for all of them); the features of a schema model's rows are the
    rows themselves (``features_parts``)."""
    stamp = f"{int(now * 1000):012x}"
    digits = os.urandom(8 * sum(map(len, requests))).hex()
    chunks = (digits[i : i + 16] for i in range(0, len(digits), 16))
    ids = [[stamp + next(chunks) for _ in x] for x in requests]
    row = spec.schema is not None
    rows = [
        (i, x)
        for r, lines in zip(ids, requests, strict=True)
        for i, x in zip(r, features_parts(lines, row=row), strict=True)
    ]
    return ids, rows
