"""Records of a model with a column schema as rows of its table: text, parsed by the kernel of
delimited files (``shoal.data.delimited``), so that a served record and a row of the training
file hash alike -- the same columns, the same ``log1p`` and ``fill``.

A row is the fields of the schema's columns, in the schema's order, separated as in the file the
model learned from (``ColumnSchema.separator``: a tab for TSV): what a TCP client or an OIP
``lines`` element sends. JSON objects and OIP column tensors become such rows too, a column at a
time (``Rows.of_records``), and travel on as text: the event log keeps the row, and the learner
parses it with the same kernel. A row's label, weight and tag columns are read as in a file; a
JSON object's are not (its label comes apart from its features, as ``labeled_parts`` says).

Keys and inputs that name no column are errors (``--ignore-unknown`` drops them): a misspelled
column would otherwise be a silently missing value.

>>> from shoal.features.schema import ColumnSchema
>>> spec = FeatureSpec(schema=ColumnSchema.parse("label,n:num:log1p,c:cat", delimiter="\\t"))
>>> rows = rows_of(spec)
>>> rows.of_records([{"n": 3, "c": "ab"}, {"c": None}], "records")
['\\t3\\tab', '\\t\\t']
>>> try:
...     rows.of_records([{"N": 3}], "records")
... except RequestError as exc:
...     print(str(exc).split(";")[0])
records[0]: unknown field 'N' (did you mean 'n'?)
"""

from __future__ import annotations

import difflib
import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from shoal.data import delimited
from shoal.data.batch import Batch
from shoal.data.columns import ColumnPlan
from shoal.data.reader import as_parsed
from shoal.features.spec import FeatureSpec
from shoal.serve.errors import RequestError
from shoal.serve.reading.columnrows import assemble
from shoal.serve.reading.jsonrows import Keys

_F32_MAX = float(np.finfo(np.float32).max)
_SPECIAL = ('"', "\n", "\r")  # characters no field of a row can hold
_NUMBERS = frozenset({int, float, type(None)})
_CATEGORIES = frozenset({str, int, type(None)})
_TEXTS: dict[Any, str] = {None: "", **{i: str(i) for i in range(-128, 4096)}}


class _Unrepresentable(Exception):
    """A string a row's field cannot hold (a quote, a line break): the record goes as JSON."""


class Rows:
    """A schema model's rows: made from records (``of_records``), parsed (``parse``)."""

    def __init__(self, spec: FeatureSpec) -> None:
        schema = spec.schema
        assert schema is not None, "a model with a column schema"
        self.spec = spec
        self.schema = schema
        self.sep = schema.separator
        self.names = schema.names
        self.columns = schema.columns
        self.namespaces = frozenset(c.namespace for c in schema.columns if c.namespace)
        self.known = frozenset(self.names)
        self._fieldmap = np.arange(len(self.columns), dtype=np.int64)
        # a row from its numeric fields, its categorical ones and a blank, put in the schema's
        # order (``_whole``)
        self._num_columns = [c.name for c in self.columns if c.role == "num"]
        self._cat_columns = [c.name for c in self.columns if c.role == "cat"]
        self._getters = (_getter(self._num_columns), _getter(self._cat_columns))
        place = {name: i for i, name in enumerate(self._num_columns + self._cat_columns)}
        blank = len(place)
        self._in_order = operator.itemgetter(*(place.get(c.name, blank) for c in self.columns))
        self._blank = itertools.repeat(("",))
        self._plan = ColumnPlan.build(schema, spec)
        self.keys = Keys(schema)  # a request's body straight to rows (``jsonrows``)
        self._offsets, self._letters = spec.interaction_arrays()
        self._codes = spec.field_codes()  # an FFM's field of each namespace letter

    # -- records to rows -------------------------------------------------------------------------

    def of_records(
        self, records: Sequence[Any], field: str, *, ignore_unknown: bool = False
    ) -> list[str]:
        """One line per record: its row, or -- for the rare record a row cannot hold (a string
        with a quote or a line break) -- its JSON line (``{"features": ...}``).

        The records are read a column at a time; a request whose records all fit the common
        case (flat objects of numbers and strings, no unknown key) costs no Python per field.
        """
        fast = self._by_columns(records)
        if fast is not None:
            return fast
        return [
            self.of_record(r, f"{field}[{i}]", ignore_unknown=ignore_unknown)
            for i, r in enumerate(records)
        ]

    def _by_columns(self, records: Sequence[Any]) -> list[str] | None:
        """The rows, built a column at a time; None where any record needs a closer look (a
        key that names no column, a namespace's object: ``of_record``)."""
        if set(map(type, records)) != {dict} or not all(map(self.known.issuperset, records)):
            return None
        whole = self._whole(records)
        if whole is not None:
            return whole
        n = len(records)
        table = {
            c.name: list(map(dict.get, records, itertools.repeat(c.name, n)))
            for c in self.columns
            if c.is_feature
        }
        return self.of_columns(table, n)

    def _whole(self, records: Sequence[dict[str, Any]]) -> list[str] | None:
        """The rows of records that all hold every feature column (null for a missing value),
        made from two flat lists of values -- numeric, categorical -- with no Python per value
        or column; None where they do not all hold them, or a value needs a closer look."""
        num, cat = self._getters
        try:
            nums = list(itertools.chain.from_iterable(map(num, records))) if num else []
            cats = list(itertools.chain.from_iterable(map(cat, records))) if cat else []
        except KeyError:
            return None
        return self._from_flat(nums, cats)

    def of_columns(
        self, columns: Mapping[str, Sequence[Any]], n: int, types: Mapping[str, type] | None = None
    ) -> list[str] | None:
        """The rows of ``n`` records given a column at a time (OIP tensors: a column's name and
        its values; ``types``: the one type of a column's values, where it is known), or None
        where a value needs a record of its own (``of_record``)."""
        made = assemble(self, columns, n, types)  # the common case, by one compiled call
        if made is not None:
            return made
        missing = [None] * n

        def flat(names: list[str]) -> list[Any]:
            by_row = zip(*(columns.get(name, missing) for name in names), strict=True)
            return list(itertools.chain.from_iterable(by_row))

        return self._from_flat(flat(self._num_columns), flat(self._cat_columns))

    def _from_flat(self, nums: list[Any], cats: list[Any]) -> list[str] | None:
        """Rows from the numeric and the categorical values of each record, record after
        record, in ``_num_columns`` and ``_cat_columns`` order."""
        num_texts = _texts(nums, True, self.sep)
        cat_texts = _texts(cats, False, self.sep)
        if num_texts is None or cat_texts is None:
            return None
        n_num, n_cat = len(self._num_columns), len(self._cat_columns)
        by_row_num = zip(*[iter(num_texts)] * n_num, strict=True) if n_num else itertools.repeat(())
        by_row_cat = zip(*[iter(cat_texts)] * n_cat, strict=True) if n_cat else itertools.repeat(())
        joined = map(operator.add, map(operator.add, by_row_num, by_row_cat), self._blank)
        return list(map(self.sep.join, map(self._in_order, joined)))

    def column_of(self, name: str) -> str | None:
        """The column an input names: a column, or ``NS.NAME`` for a column of namespace NS."""
        if name in self.known:
            return name
        ns, dot, column = name.partition(".")
        if dot and column in self.known and ns in self.namespaces:
            return column
        return None

    def of_record(self, record: Any, field: str, *, ignore_unknown: bool = False) -> str:
        """One record's row (or JSON line), with errors that name its field."""
        from shoal.serve.reading.records import json_line  # records imports this module

        if not isinstance(record, Mapping):
            kind = type(record).__name__
            raise RequestError(field, f"must be a JSON object or a row of text, got {kind}")
        flat = self.flatten(record, field, ignore_unknown=ignore_unknown)
        try:
            return self.sep.join(self._field(c, flat.get(c.name), field) for c in self.columns)
        except _Unrepresentable:
            return json_line(flat, field)

    def flatten(
        self, record: Mapping[str, Any], field: str, *, ignore_unknown: bool = False
    ) -> dict[str, Any]:
        """The record's columns: namespaces' objects opened; unknown keys refused (or dropped)."""
        flat: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, Mapping) and key in self.namespaces and key not in self.known:
                flat.update(value)  # {"user": {"age": 3}}: the schema says where age goes
            else:
                flat[key] = value
        unknown = [k for k in flat if k not in self.known]
        if unknown and not ignore_unknown:
            raise self.unknown(unknown, field, "field")
        return {k: v for k, v in flat.items() if k in self.known}

    def unknown(self, names: Sequence[str], field: str, what: str) -> RequestError:
        """The error of keys (or inputs) that name no column, with the close matches."""
        return unknown_error(names, self.names, field, what)

    def _field(self, column: Any, value: Any, field: str) -> str:
        where = f"{field}.{column.name}"
        if not column.is_feature or value is None:
            return ""
        if isinstance(value, Mapping | list | tuple):
            raise RequestError(where, "a nested value where a number, a string or null is expected")
        if column.role == "num":
            if isinstance(value, str):
                raise RequestError(
                    where, f"column {column.name!r} is numeric: {value!r} is a string"
                )
            if isinstance(value, bool):
                return "1" if value else "0"
            if isinstance(value, float) and math.isnan(value):
                return ""
            return _number(value, where)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float) and math.isnan(value):
            return ""
        if not isinstance(value, str):
            raise RequestError(
                where, f"column {column.name!r} is categorical: give a string or an integer, "
                f"not {value!r}",
            )  # fmt: skip
        return self._category(value)

    def _category(self, value: str) -> str:
        if any(ch in value for ch in _SPECIAL):
            raise _Unrepresentable
        return f'"{value}"' if self.sep in value else value

    # -- rows to a batch -------------------------------------------------------------------------

    def parse(self, rows: Sequence[str], field: str, first: int) -> Batch:
        """Hash rows with the kernel of delimited files; a bad row names its record."""
        block = "\n".join(rows).encode("utf-8")
        buf = np.frombuffer(block, dtype=np.uint8)
        return self.parse_block(buf, field, first)

    def parse_block(self, buf: np.ndarray, field: str, first: int) -> Batch:
        """Hash the rows of ``buf`` (whole lines; blank lines are no rows)."""
        p, sep = self._plan, ord(self.sep)
        out = as_parsed(delimited.parse_delimited(
            buf, len(buf), sep, self._fieldmap, p.roles, p.hashes, p.letters, p.log1p, p.fills,
            p.prefix, p.prefix_off, self.spec.mask, self.spec.constant, self._offsets,
            self._letters, self.spec.self_pairs, False, self._codes,
        ), buf, sep, len(self._fieldmap))  # fmt: skip
        if out.problem:
            line = bytes(buf).split(b"\n")[out.err_line].decode("utf-8", "replace")
            raise RequestError(f"{field}[{first + out.err_line}]", self.explain(out.problem, line))
        return out.batch(field, first + 1)

    def explain(self, problem: str, line: str) -> str:
        """A bad row's problem, and what a row is when ``line`` has the wrong number of fields
        (a VW line, most likely: the schema's transforms would not apply to it)."""
        if line.count(self.sep) + 1 == len(self.names):
            return problem
        shown = ", ".join(self.names[:6]) + (", ..." if len(self.names) > 6 else "")
        what = (
            f"a record sent as text is a row of the model's table: its {len(self.names)} "
            f"columns ({shown}) separated by {self.sep!r}"
        )
        if "|" in line:
            return (
                f"is not a row of the model's table but looks like a VW line, which a model "
                f"with a column schema refuses (its columns' transforms would not apply); {what}"
            )
        return f"{problem}; {what}"


_ROWS: dict[int, Rows] = {}


def rows_of(spec: FeatureSpec) -> Rows:
    """The rows of ``spec``'s model, made once per spec (the schema compiled for the kernel;
    looked up by identity, as hashing a spec walks all its columns)."""
    found = _ROWS.get(id(spec))
    if found is None or found.spec is not spec:
        if len(_ROWS) > 16:
            _ROWS.clear()
        found = _ROWS[id(spec)] = Rows(spec)
    return found


def _texts(values: Sequence[Any], numeric: bool, sep: str) -> Sequence[str] | None:
    """A column's fields, or None where a value needs ``Rows.of_record`` (a bool, a NaN, a
    string a field cannot hold, a value of the wrong type: its error names the record). No
    Python runs per value: this is the path of every request of plain values."""
    kinds = set(map(type, values))
    if not kinds <= (_NUMBERS if numeric else _CATEGORIES):
        return None
    if kinds == {str}:
        texts = values
    else:  # null or left out is an empty field; small integers' texts are looked up
        texts = list(map(_TEXTS.get, values, values))
        if kinds - {str, type(None)}:
            texts = list(map(str, texts))
    joined = "".join(texts)
    if numeric:
        # 'inf', 'nan' and exponents ('1e+39': perhaps past float32) go the careful way, and
        # so do integers of 16 digits and more (perhaps not exact as a float)
        if float in kinds and ("n" in joined or "e+" in joined):
            return None
        if int in kinds and texts and max(map(len, texts)) > 15:
            return None
        return texts
    if sep in joined or any(ch in joined for ch in _SPECIAL):
        return None
    return texts


def _number(value: Any, field: str) -> str:
    from shoal.serve.reading.records import number_text  # records imports this module

    return number_text(value, field)


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]] | None:
    """A record's values of ``names`` as a tuple (KeyError if one is left out)."""
    if not names:
        return None
    if len(names) == 1:
        one = operator.itemgetter(names[0])
        return lambda record: (one(record),)
    return operator.itemgetter(*names)


def unknown_error(
    names: Sequence[str], known: Sequence[str], field: str, what: str
) -> RequestError:
    """``field: unknown field 'c1' (did you mean 'C1'?); the model's columns are ...``."""
    by_lower = {k.lower(): k for k in known}
    parts = []
    for name in sorted(names)[:10]:
        close = by_lower.get(name.lower()) or next(
            iter(difflib.get_close_matches(name, known, n=1)), None
        )
        parts.append(f"{name!r}" + (f" (did you mean {close!r}?)" if close else ""))
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    plural = "s" if len(names) > 1 else ""
    return RequestError(
        field,
        f"unknown {what}{plural} {', '.join(parts)}; the model's columns are {shown} (to drop "
        f"unknown {what}s, send ignore_unknown=true or serve with --ignore-unknown)",
    )
