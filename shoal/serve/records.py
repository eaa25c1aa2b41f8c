"""Records as clients send them (VW lines or JSON objects) to VW lines, and VW lines to a Batch.

Everything the server learns travels as one VW text line per record: the event log stores that
line, and the learner parses it with the same compiled parser as ``shoal train``, so a served
model and an offline one learn from the same bytes and end with the same tensors.

A JSON record becomes a line by Vowpal Wabbit's own rules: a number ``x`` under key ``NAME`` is
the feature ``NAME:x``, a string ``v`` is ``NAME=v`` (value 1), a nested object is a namespace
(``{"ns": {"a": 2}}`` is ``|ns a:2``), and ``null`` is a missing value. Names and strings that
VW text cannot hold (blanks, ``|``, ``:``) are refused with the field they are in.

>>> features_line({"user": {"id": "u7", "age": 31}, "hour": 14})
'| hour:14 |user id=u7 age:31'
>>> labeled_line({"label": 1, "features": {"x": 0.5}}, "records[0]")
'1 | x:0.5'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shoal.data import textparse
from shoal.data.batch import Batch
from shoal.errors import DataError
from shoal.features.spec import FeatureSpec
from shoal.serve.errors import RequestError

_FORBIDDEN = frozenset(" \t\r\n|:")
_F32_MAX = float(np.finfo(np.float32).max)
_PROBLEMS = textparse.PROBLEMS  # the parser's error codes, in words


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
    """A VW line from ``{"label": y, "features": {...}, "weight": w}`` (weight optional)."""
    if not isinstance(record, Mapping):
        raise RequestError(field, f"must be a VW line or an object, got {type(record).__name__}")
    unknown = set(record) - {"label", "features", "weight"}
    if unknown:
        raise RequestError(field, f"unknown fields {sorted(unknown)}: expected label, features"
                           " and optionally weight")  # fmt: skip
    if "label" not in record:
        raise RequestError(f"{field}.label", "missing: learning needs a label")
    if "features" not in record:
        raise RequestError(f"{field}.features", "missing: an object of feature values")
    head = number_text(record["label"], f"{field}.label")
    if "weight" in record:
        head += " " + weight_text(record["weight"], f"{field}.weight")
    return f"{head} {features_line(record['features'], f'{field}.features')}"


def weight_text(value: Any, field: str) -> str:
    text = number_text(value, field)
    if float(text) < 0:
        raise RequestError(field, f"importance weight {value!r} is negative")
    return text


def check_line(line: Any, field: str) -> str:
    """A VW line as one record: a string of one non-blank line."""
    if not isinstance(line, str):
        raise RequestError(field, f"must be a VW line (a string) or an object, not {line!r}")
    if "\n" in line or "\r" in line:
        raise RequestError(field, "holds a line break: send each record as its own string")
    if not line.strip():
        raise RequestError(field, "is blank")
    return line


def features_part(line: str) -> str:
    """The features of a VW line: from its first ``|`` on (label, weight and tag dropped)."""
    return line[line.index("|") :] if "|" in line else "|"


def parse_lines(spec: FeatureSpec, lines: Sequence[str], field: str = "records") -> Batch:
    """Hash checked VW lines into a Batch of one row per line, with the training parser."""
    block = "\n".join(lines).encode("utf-8")
    buf = np.frombuffer(block, dtype=np.uint8)
    offsets, letters = spec.interaction_arrays()
    out = textparse.parse_block(
        buf, len(buf), False, spec.seed, spec.mask, spec.constant, spec.ignore_array(),
        offsets, letters, False,
    )  # fmt: skip
    indptr, indices, values, labels, weights, tag_off, tag_bytes, row_lines = out[:8]
    code, err_line, es, ee = out[10:]
    if code:
        tok = bytes(buf[es : min(ee, es + 60)]).decode("utf-8", "replace")
        problem = _PROBLEMS.get(code, "malformed record near '{tok}'").format(tok=tok)
        raise RequestError(f"{field}[{err_line}]", problem)
    if len(labels) != len(lines):  # cannot happen for checked lines; never learn a shifted row
        raise RequestError(field, f"{len(lines)} records parsed into {len(labels)} rows")
    return Batch(
        indptr=indptr,
        indices=indices,
        values=values,
        labels=labels,
        weights=weights,
        tag_offsets=tag_off,
        tag_bytes=tag_bytes,
        lines=row_lines + 1,
        source=field,
    )


def data_error_field(exc: DataError) -> RequestError:
    """A ``DataError`` on a parsed request (``line N of records``) as ``records[N-1]: ...``."""
    return RequestError(f"{exc.path}[{exc.line - 1}]", exc.problem)
