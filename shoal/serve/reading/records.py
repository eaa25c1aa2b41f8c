"""Records as clients send them to event lines, and event lines to a Batch.

Everything the server learns travels as one line of text per record: the event log stores that
line, and the learner parses it with the same parsers as ``shoal train``, so a served model and
an offline one learn from the same records and end with the same tensors. A line is one of:

- a **VW line**, as clients send them, or made from a JSON object by Vowpal Wabbit's own rules:
  a number ``x`` under key ``NAME`` is the feature ``NAME:x``, a string ``v`` is ``NAME=v``
  (value 1), a nested object is a namespace (``{"ns": {"a": 2}}`` is ``|ns a:2``), and ``null``
  is a missing value. Names and strings that VW text cannot hold (blanks, ``|``, ``:``) are
  refused with the field they are in.
- a **row** of a model with a column schema (trained on CSV, TSV, Parquet...): its table's
  fields, as ``rows.py`` says. JSON objects sent to such a model become rows too, and a row is
  parsed by the kernel of delimited files, so the schema decides how its columns hash (its
  ``log1p``, its ``fill``) exactly as for a row of the training file.
- a **JSON line**: ``{"label": y, "weight": w, "row": ROW}`` learns a row with a label given
  apart from it (feedback on a row that was predicted; a JSON object's label), and
  ``{"label": y, "weight": w, "features": {...}}`` an object of a schema model that no row can
  hold (a string with a quote or a line break), hashed by ``shoal.data.records``. Label and
  weight are optional.

>>> features_line({"user": {"id": "u7", "age": 31}, "hour": 14})
'| hour:14 |user id=u7 age:31'
>>> labeled_line({"label": 1, "features": {"x": 0.5}}, "records[0]")
'1 | x:0.5'
>>> with_label(json_line({"city": "New York"}, "records[0]"), "1 2.5")
'{"label": 1, "weight": 2.5, "features": {"city": "New York"}}'
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shoal.data import textparse
from shoal.data.batch import Batch
from shoal.data.frames import batch_from_dicts
from shoal.data.reader import as_parsed
from shoal.errors import DataError
from shoal.features.spec import FeatureSpec
from shoal.serve.errors import RequestError
from shoal.serve.reading.rows import rows_of

_FORBIDDEN = frozenset(" \t\r\n|:")
_NESTED_KEYS = frozenset({"label", "weight", "features"})  # a labeled record's keys, nested
_F32_MAX = float(np.finfo(np.float32).max)


def number_text(value: Any, field: str) -> str:
    """A JSON number as VW text that parses back to the same float; RequestError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(field, f"must be a number, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x) or abs(x) > _F32_MAX:
        raise RequestError(field, f"{value!r} is not a finite float32 number")
    return repr(x)


def check_word(text: str, field: str, what: str) -> str:
    """``text`` if VW text can hold it as one word (a name, a namespace, ``name=value``)."""
    if not text:
        raise RequestError(field, f"empty {what}")
    bad = _FORBIDDEN.intersection(text)
    if bad:
        shown = ", ".join(repr(c) for c in sorted(bad))
        raise RequestError(field, f"{what} {text!r} holds {shown}, which VW text cannot hold")
    return text


def _tokens(features: Mapping[str, Any], field: str) -> list[str]:
    out = []
    for name, value in features.items():
        where = f"{field}.{name}"
        check_word(name, where, "feature name")
        if value is None:
            continue
        if isinstance(value, str):
            out.append(check_word(f"{name}={value}", where, "feature"))
        else:
            out.append(f"{name}:{number_text(value, where)}")
    return out


def features_line(record: Any, field: str = "record") -> str:
    """The features part of a VW line (``| a:1 |ns b=x``) from a JSON object."""
    if not isinstance(record, Mapping):
        raise RequestError(
            field, f"must be a JSON object or a VW line, got {type(record).__name__}"
        )
    plain = {k: v for k, v in record.items() if not isinstance(v, Mapping)}
    parts = ["| " + " ".join(_tokens(plain, field))] if plain else []
    for ns, inner in record.items():
        if isinstance(inner, Mapping):
            check_word(ns, f"{field}.{ns}", "namespace name")
            parts.append(" ".join([f"|{ns}", *_tokens(inner, f"{field}.{ns}")]))
    return " ".join(parts) if parts else "|"


def labeled_line(record: Any, field: str) -> str:
    """A VW line from a labeled object (``labeled_parts``)."""
    head, features, where = labeled_parts(record, field)
    return f"{head} {features_line(features, where)}"


def labeled_parts(record: Any, field: str) -> tuple[str, Mapping[str, Any], str]:
    """(VW label text such as ``"1"`` or ``"1 2.5"``, the features, their field) of a labeled
    object: ``{"label": y, "features": {...}, "weight": w}`` (weight optional), or flat as in
    JSON-lines files: ``{"label": y, "weight": w, "tag": t, NAME: value, ...}``, where every
    key but those three is a feature (the tag is not learned)."""
    if not isinstance(record, Mapping):
        raise RequestError(field, f"must be a VW line or an object, got {type(record).__name__}")
    if "features" in record:
        unknown = set(record) - _NESTED_KEYS
        if unknown:
            raise RequestError(field, f"unknown fields {sorted(unknown)} beside 'features': "
                               "expected label and optionally weight")  # fmt: skip
        features, where = record["features"], f"{field}.features"
    else:
        features = {k: v for k, v in record.items() if k not in ("label", "weight", "tag")}
        where = field
    if "label" not in record:
        raise RequestError(f"{field}.label", "missing: learning needs a label")
    head = number_text(record["label"], f"{field}.label")
    if "weight" in record:
        head += " " + weight_text(record["weight"], f"{field}.weight")
    return head, features, where


def weight_text(value: Any, field: str) -> str:
    text = number_text(value, field)
    if float(text) < 0:
        raise RequestError(field, f"importance weight {value!r} is negative")
    return text


def check_line(line: Any, field: str, *, row: bool = False) -> str:
    """A VW line (or a ``row``) as one record: a string of one non-blank line (or a JSON line,
    checked). A row may be all blanks: its fields are missing values, as in a file."""
    if not isinstance(line, str):
        what = "a row of the model's table" if row else "a VW line"
        raise RequestError(field, f"must be {what} (a string) or an object, not {line!r}")
    if "\n" in line or "\r" in line:
        raise RequestError(field, "holds a line break: send each record as its own string")
    if not (line if row else line.strip()):
        raise RequestError(field, "is blank")
    if _is_json(line):
        _check_json_line(line, field)
    return line


def plain_rows(lines: Sequence[str]) -> bool:
    """Whether every line is a row that ``check_line(line, field, row=True)`` passes as it is
    (not empty, no line break, not a JSON line), found with no Python per line: rows of a
    schema model's column tensors, TCP blocks and ``lines`` tensors mostly are."""
    joined = "".join(lines)
    return (
        all(lines)
        and "\n" not in joined
        and "\r" not in joined
        and not any(map(_STARTS_JSON, lines))
    )


_JSON_LINE = (
    'a JSON line is {"features": {...}} or {"row": "..."}, with a numeric "label" and "weight" '
    "if any"
)
_ROW_KEYS = frozenset({"label", "weight", "row"})


def _check_json_line(line: str, field: str) -> None:
    """A line that starts with ``{`` is a JSON line (a VW line never does): check its shape,
    so that what cannot be learned is refused now, not after it is logged."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise RequestError(field, f"starts with '{{' but is not valid JSON ({why})") from None
    is_row = isinstance(obj, dict) and isinstance(obj.get("row"), str) and "features" not in obj
    if not is_row and (not isinstance(obj, dict) or not isinstance(obj.get("features"), dict)):
        raise RequestError(field, _JSON_LINE)
    if is_row and ("\n" in obj["row"] or "\r" in obj["row"]):
        raise RequestError(field, '"row" holds a line break: a row is one line')
    unknown = set(obj) - (_ROW_KEYS if is_row else _NESTED_KEYS)
    if unknown:
        raise RequestError(field, f"{_JSON_LINE}; unknown keys {sorted(unknown)}")
    for key in ("label", "weight"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RequestError(field, f'"{key}" must be a number, got {json.dumps(value)[:40]}')


def json_line(record: Any, field: str, *, labeled: bool = False) -> str:
    """The JSON line of an object sent to a model with a column schema (see the module's doc).

    Labeled records come as ``{"label": y, "features": {...}, "weight": w}``; others are the
    features themselves. Values are checked when the line is parsed (``parse_lines``).
    """
    if not isinstance(record, Mapping):
        kind = type(record).__name__
        raise RequestError(field, f"must be a JSON object or a VW line, got {kind}")
    if not labeled:
        return json.dumps({"features": record})
    label, features, where = labeled_parts(record, field)
    return with_label(json_line(features, where), label)


def _is_json(line: str) -> bool:
    return line[:1] == "{"  # no VW line does: a label is a number


def features_part(line: str, *, row: bool = False) -> str:
    """The features of a line, label and weight dropped (VW: its tag too), for feedback. A
    ``row`` (a line of a schema model) is kept whole, as the JSON line ``{"row": ...}``: the
    label that ``with_label`` gives it comes apart from the row's own label column."""
    if _is_json(line):
        obj = json.loads(line)
        return row_line(obj["row"]) if "row" in obj else json.dumps({"features": obj["features"]})
    if row:
        return row_line(line)
    return line[line.index("|") :] if "|" in line else "|"


def features_parts(lines: Sequence[str], *, row: bool = False) -> list[str]:
    """``features_part`` of each line; for rows without JSON lines, with no Python per line."""
    if row and not any(map(_STARTS_JSON, lines)):
        return list(map(_ROW_LINE, map(_json_string, lines)))
    return [features_part(x, row=row) for x in lines]


_STARTS_JSON = operator.methodcaller("startswith", "{")
_ROW_LINE = '{{"row": {}}}'.format


def row_line(row: str) -> str:
    """The JSON line of a row without a label (``features_part``; ``with_label`` adds one)."""
    return '{"row": ' + _json_string(row) + "}"


_json_string = json.encoder.encode_basestring_ascii


def with_label(features: str, label: str) -> str:
    """The line that learns ``features`` (from ``features_part``) with ``label``.

    ``label`` is VW label text: a label and, optionally, an importance weight (``"1 2.5"``).
    """
    if not _is_json(features):
        return f"{label} {features}"
    y, _, w = label.partition(" ")
    head = f'"label": {y}, ' + (f'"weight": {w}, ' if w else "")
    return "{" + head + features[1:]


def parse_lines(spec: FeatureSpec, lines: Sequence[str], field: str = "records") -> Batch:
    """Hash checked lines (VW and JSON) into a Batch of one row per line, in order.

    VW lines and rows go through the training parsers (VW text, delimited text); JSON lines
    through those of their rows, or the record encoder of ``shoal.data.records``, as in
    JSON-lines files and ``Model.learn_frame``. Which a line that is not JSON is, the spec
    says: a row if it has a column schema, else a VW line.
    """
    parts: list[Batch] = []
    first = 0
    plain = _parse_rows if spec.schema is not None else _parse_vw
    if lines and not any(map(_STARTS_JSON, lines)):  # the usual case: no JSON line
        run = list(lines)
        try:
            batch = plain(spec, run, field, 0)
        except UnicodeEncodeError:
            raise _not_unicode(run, field, 0) from None
        if len(batch) != len(run):
            raise RequestError(field, f"{len(run)} records parsed into {len(batch)} rows")
        return batch
    for is_json, group in itertools.groupby(lines, key=_is_json):
        run = list(group)
        parse = _parse_json if is_json else plain
        try:
            batch = parse(spec, run, field, first)
        except UnicodeEncodeError:  # a JSON body may escape what UTF-8 cannot hold
            raise _not_unicode(run, field, first) from None
        if len(batch) != len(run):  # cannot happen for checked lines; never learn a shifted row
            raise RequestError(field, f"{len(run)} records parsed into {len(batch)} rows")
        parts.append(batch)
        first += len(run)
    return Batch.concat(parts, source=field) if parts else _parse_vw(spec, [], field, 0)


def _not_unicode(lines: list[str], field: str, first: int) -> RequestError:
    """The error of the first line holding a lone surrogate (``"\\ud800"`` in JSON)."""
    problem = "is not valid Unicode text: it holds a lone surrogate (U+D800 to U+DFFF)"
    for k, line in enumerate(lines):
        text = json.dumps(json.loads(line), ensure_ascii=False) if _is_json(line) else line
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return RequestError(f"{field}[{first + k}]", problem)
    return RequestError(field, problem)


def _parse_vw(spec: FeatureSpec, lines: list[str], field: str, first: int) -> Batch:
    block = "\n".join(lines).encode("utf-8")
    buf = np.frombuffer(block, dtype=np.uint8)
    offsets, letters = spec.interaction_arrays()
    out = as_parsed(textparse.parse_block(
        buf, len(buf), False, spec.hash_rules(), spec.mask, spec.constant, spec.namespace_table(),
        offsets, letters, False,
    ), buf)  # fmt: skip
    if out.problem:
        raise RequestError(f"{field}[{first + out.err_line}]", out.problem)
    return out.batch(field, first + 1)


def _parse_rows(spec: FeatureSpec, lines: list[str], field: str, first: int) -> Batch:
    return rows_of(spec).parse(lines, field, first)


def _parse_json(spec: FeatureSpec, lines: list[str], field: str, first: int) -> Batch:
    events = [json.loads(line) for line in lines]
    parts = []
    start = first
    for is_row, group in itertools.groupby(events, key=lambda e: "row" in e):
        run = list(group)
        parse = _parse_row_events if is_row else _parse_feature_events
        parts.append(parse(spec, run, field, start))
        start += len(run)
    return Batch.concat(parts, source=field)


def _parse_row_events(spec: FeatureSpec, events: list[Any], field: str, first: int) -> Batch:
    """Rows whose label and weight are the JSON line's (none: no label), not the row's own."""
    if spec.schema is None:
        raise RequestError(
            f"{field}[{first}]", 'a JSON line of a "row" is for a model with a column schema'
        )
    batch = rows_of(spec).parse([e["row"] for e in events], field, first)
    return dataclasses.replace(
        batch,
        labels=np.array([e.get("label", math.nan) for e in events], dtype=np.float64),
        weights=np.array([e.get("weight", 1.0) for e in events], dtype=np.float32),
    )


def _parse_feature_events(spec: FeatureSpec, events: list[Any], field: str, first: int) -> Batch:
    try:
        batch = batch_from_dicts(
            [e["features"] for e in events],
            spec,
            labels=[e.get("label", math.nan) for e in events],
            weights=[e.get("weight", 1.0) for e in events],
        )
    except DataError as exc:
        raise RequestError(f"{field}[{first + exc.line - 1}]", exc.problem) from None
    return dataclasses.replace(batch, lines=batch.lines + first, source=field)


def data_error_field(exc: DataError) -> RequestError:
    """A ``DataError`` on a parsed request (``line N of records``) as ``records[N-1]: ...``."""
    return RequestError(f"{exc.path}[{exc.line - 1}]", exc.problem)
