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

Without a column schema a compiled kernel (``jsonparse``) reads the lines: hundreds of
thousands of rows a second on one core, without the GIL, so blocks are read on several threads
as VW text is. It gives exactly what the Python path gives (``json.loads``, then
``RecordEncoder``), and hands it every line outside the subset of JSON that it reads exactly
(escaped or repeated keys, ``NaN``, numbers it cannot round for sure, any bad record:
see ``jsonparse``); the Python path reads that line, or reports it. Under a schema every line
takes the Python path (tens of thousands of rows a second). Lines are plain newline-delimited
text, so JSON-lines files are cut into byte ranges and read in blocks exactly as VW text is.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from shoal.data import jsonparse
from shoal.data.blocks import Parsed
from shoal.data.columns import assemble_for
from shoal.data.records import BadRecord, RecordEncoder
from shoal.data.textparse import _F32_LIMIT
from shoal.features.schema import Role
from shoal.features.spec import FeatureSpec

Row = tuple[float, float, bytes]  # label, weight, tag


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


def _line(line: bytes, keys: tuple[str, str, str], enc: RecordEncoder) -> Row | str:
    """One stripped, non-blank line: its (label, weight, tag), its features added to ``enc``;
    or what makes it a bad record (nothing added)."""
    try:
        label, weight, tag, feats = _record(json.loads(line), keys)
        try:
            raw_tag = tag.encode()
        except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape
            raise BadRecord(f"tag {tag!r} is not valid Unicode text") from None
        enc.add(feats)
    except BadRecord as exc:
        return str(exc)
    except UnicodeDecodeError:
        return "not valid UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return "not valid JSON: nested too deeply"
    return label, weight, raw_tag


def python_block(block: bytes, spec: FeatureSpec, skip_bad: bool) -> Parsed:
    """``parse_block`` by the Python path alone: every line through ``json`` and
    ``RecordEncoder``. The reference of the compiled path, and the path under a schema."""
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
        got = _line(line, keys, enc)
        if isinstance(got, str):
            if not problem:
                err_line, problem = i, got
            if not skip_bad:
                break
            skipped += 1
            continue
        labels.append(got[0])
        weights.append(got[1])
        tags.append(got[2])
        rows.append(i)
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


def parse_block(block: bytes, spec: FeatureSpec, skip_bad: bool) -> Parsed:
    """Parse the JSON lines of ``block`` (whole lines; the last may lack its newline).

    Without a column schema the compiled kernel (``jsonparse``) reads the lines, and the
    Python path only those it hands back; under a schema the Python path reads them all.
    """
    if spec.schema is not None:
        return python_block(block, spec, skip_bad)
    buf = np.frombuffer(block, dtype=np.uint8)
    out = jsonparse.parse_block(buf, len(buf), spec.hash_rules(), spec.ignore_array())
    rows, todo, n_lines = out[:9], out[9:12], out[12]
    skipped, err_line, problem = 0, -1, ""
    if len(todo[0]):
        rows, skipped, err_line, problem = _redo(block, spec, skip_bad, rows, *todo)
    base_ptr, h32, letters, base_values, labels, weights, tag_offsets, tag_bytes, lines = rows
    indptr, indices, values = assemble_for(spec, base_ptr, h32, letters, base_values)
    return Parsed(
        indptr=indptr,
        indices=indices,
        values=values,
        labels=labels,
        weights=weights,
        tag_offsets=tag_offsets,
        tag_bytes=tag_bytes,
        lines=lines,
        n_lines=n_lines,
        skipped=skipped,
        err_line=err_line,
        problem=problem,
    )


def _redo(
    block: bytes,
    spec: FeatureSpec,
    skip_bad: bool,
    rows: tuple[np.ndarray, ...],
    todo: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], int, int, str]:
    """The kernel's ``rows`` with the lines it handed back read by the Python path, which keeps
    or drops them (and every row after the first bad one, unless ``skip_bad``) as it would
    alone; and the skip count, first bad line and its problem."""
    base_ptr, h32, letters, values, labels, weights, tag_off, tag_bytes, lines = rows
    enc = RecordEncoder(spec)
    keys = special_keys(spec)
    keep = np.ones(len(labels), dtype=np.bool_)
    done: list[int] = []
    tags: list[bytes] = []
    skipped, err_line, problem = 0, -1, ""
    for r, s, e in zip(todo.tolist(), starts.tolist(), ends.tolist(), strict=True):
        got = _line(block[s:e].strip(), keys, enc)
        if isinstance(got, str):
            if not problem:
                err_line, problem = int(lines[r]), got
            if not skip_bad:
                keep[r:] = False
                break
            keep[r] = False
            skipped += 1
        else:
            labels[r], weights[r] = got[0], got[1]
            done.append(r)
            tags.append(got[2])
    py_ptr, py_h32, py_letters, py_values = enc.build()
    py_rows = np.array(done, dtype=np.int64)
    ptr, at = _merged(base_ptr, py_ptr, py_rows, keep)
    py_tag_off = np.zeros(len(tags) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tags], out=py_tag_off[1:])
    tag_ptr, tag_at = _merged(tag_off, py_tag_off, py_rows, keep)
    py_tags = np.frombuffer(b"".join(tags), dtype=np.uint8)
    merged = (
        ptr,
        np.concatenate([h32, py_h32])[at],
        np.concatenate([letters, py_letters])[at],
        np.concatenate([values, py_values])[at],
        labels[keep],
        weights[keep],
        tag_ptr,
        np.concatenate([tag_bytes, py_tags])[tag_at],
        lines[keep],
    )
    return merged, skipped, err_line, problem


def _merged(
    ptr: np.ndarray, py_ptr: np.ndarray, py_rows: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row pointers of the kept rows, and where each of their items is in the kernel's data
    followed by the Python path's: row ``py_rows[j]`` is the Python path's row j."""
    start = ptr[:-1].copy()
    count = np.diff(ptr)
    start[py_rows] = ptr[-1] + py_ptr[:-1]
    count[py_rows] = np.diff(py_ptr)
    start, count = start[keep], count[keep]
    out = np.zeros(len(count) + 1, dtype=np.int64)
    np.cumsum(count, out=out[1:])
    return out, np.repeat(start - out[:-1], count) + np.arange(out[-1])
