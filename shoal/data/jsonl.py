"""JSON lines: one JSON object per line, read into hashed batches.

Two shapes, which may be mixed (even in one line)::

    {"label": 1, "weight": 2.0, "tag": "r17", "features": {"user": {"id": "u5"}, "x": 0.5}}
    {"label": -1, "x": 0.5, "city": "Paris"}

``label``, ``weight`` and ``tag`` are special keys (or, when the spec has a column schema, the
names of its label, weight and tag columns); ``features`` holds the features; every other key is
a feature too (``features`` wins where a key is in both). Features follow ``records.py``:
numbers are numeric (``x:0.5``), strings categorical (``city=Paris``, value 1), booleans 1/0,
null missing, and an object is a namespace (``"user": {"id": "u5"}`` is ``|user id=u5``); the
default namespace is VW's ``| ``. So a record hashes exactly as the same record in VW text.

A label is a number or null (unlabeled); a weight a non-negative number or null (1); a tag a
string, an integer or null. A line that is not a JSON object, has a label, weight or tag of
another kind, or a nested value where a feature value is expected is a bad record: the reader
stops with its file and line, or skips and counts it (``--on-bad-record``).

Each line is parsed by Python's ``json`` module: unlike the compiled text parsers this runs per
line in the interpreter (tens of thousands of rows a second rather than millions), which is
accepted for a format chosen for convenience. Hashing and assembly still run once per block,
compiled. Lines are plain newline-delimited text, so JSON-lines files are cut into byte ranges
and read in blocks exactly as VW text is.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from shoal.data.blocks import Parsed
from shoal.data.columns import assemble_for
from shoal.data.records import BadRecord, RecordEncoder
from shoal.data.textparse import _F32_LIMIT
from shoal.features.schema import Role
from shoal.features.spec import FeatureSpec


def special_keys(spec: FeatureSpec) -> tuple[str, str, str]:
    """The keys of the label, weight and tag: the schema's column names, else the role names."""
    schema = spec.schema

    def key(role: Role) -> str:
        i = schema.index(role) if schema is not None else -1
        return schema.columns[i].name if schema is not None and i >= 0 else role

    return key("label"), key("weight"), key("tag")


def _float(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRecord(f"{what} {json.dumps(value)[:60]} is not a number")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def label_of(value: Any) -> float:
    """A label: a finite number, or NaN for null (an unlabeled record)."""
    if value is None:
        return math.nan
    v = _float("label", value)
    if math.isinf(v):
        raise BadRecord(f"label {value!r} is not a finite number")
    return v


def weight_of(value: Any) -> float:
    """An importance weight: a non-negative float32 number; null means 1."""
    if value is None:
        return 1.0
    v = _float("weight", value)
    if not (0.0 <= v < _F32_LIMIT):
        raise BadRecord(f"weight {value!r} is not a non-negative number")
    return v


def tag_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadRecord(f"tag {json.dumps(value)[:60]} is not a string or an integer")


def _record(obj: Any, keys: tuple[str, str, str]) -> tuple[float, float, str, dict[str, Any]]:
    """(label, weight, tag, features) of one parsed line."""
    if not isinstance(obj, dict):
        raise BadRecord(f"not a JSON object but {type(obj).__name__} {json.dumps(obj)[:40]}")
    lk, wk, tk = keys
    feats = {k: v for k, v in obj.items() if k not in (lk, wk, tk, "features")}
    nested = obj.get("features")
    if nested is not None:
        if not isinstance(nested, dict):
            raise BadRecord('"features" is not an object of features and namespaces')
        feats.update(nested)
    return label_of(obj.get(lk)), weight_of(obj.get(wk)), tag_of(obj.get(tk)), feats


def parse_block(block: bytes, spec: FeatureSpec, skip_bad: bool) -> Parsed:
    """Parse the JSON lines of ``block`` (whole lines; the last may lack its newline)."""
    enc = RecordEncoder(spec)
    keys = special_keys(spec)
    labels: list[float] = []
    weights: list[float] = []
    tags: list[bytes] = []
    rows: list[int] = []
    skipped = 0
    err_line, problem = -1, ""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        try:
            label, weight, tag, feats = _record(json.loads(line), keys)
            enc.add(feats)
        except BadRecord as exc:
            bad = str(exc)
        except UnicodeDecodeError:
            bad = "not valid UTF-8 text"
        except json.JSONDecodeError as exc:
            bad = f"not valid JSON: {exc.msg} at column {exc.colno}"
        except RecursionError:
            bad = "not valid JSON: nested too deeply"
        else:
            labels.append(label)
            weights.append(weight)
            tags.append(tag.encode())
            rows.append(i)
            continue
        if not problem:
            err_line, problem = i, bad
        if not skip_bad:
            break
        skipped += 1
    indptr, indices, values = assemble_for(spec, *enc.build())
    tag_offsets = np.zeros(len(tags) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tags], out=tag_offsets[1:])
    return Parsed(
        indptr=indptr,
        indices=indices,
        values=values,
        labels=np.array(labels, dtype=np.float64),
        weights=np.array(weights, dtype=np.float32),
        tag_offsets=tag_offsets,
        tag_bytes=np.frombuffer(b"".join(tags), dtype=np.uint8).copy(),
        lines=np.array(rows, dtype=np.int64),
        n_lines=len(lines),
        skipped=skipped,
        err_line=err_line,
        problem=problem,
    )
