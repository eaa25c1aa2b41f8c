"""Column schemas: how the columns of a table (CSV, Parquet, a DataFrame) become features.

A schema lists columns with a role: ``label``, ``weight``, ``tag``, ``num`` (numeric),
``cat`` (categorical) or ``ignore``. A numeric column ``I1`` holding 3.5 is the feature
``I1:3.5``; a categorical column ``C1`` holding ``abc`` is the feature ``C1=abc`` with value 1,
both in the column's namespace (default: the default namespace) -- exactly what the same record
written in Vowpal Wabbit text would give, so every format hashes alike. Missing values (empty
fields, nulls) drop the feature unless the column says ``fill=VALUE``; numeric columns may be
transformed (``log1p``: sign(x) * log(1 + |x|)). The schema travels inside the FeatureSpec, so
a server applies the same transforms.

A schema also remembers the format of the table a model learned from (``csv``, ``tsv``,
``jsonl`` or ``parquet``): a model file holds it, so reading a file whose name does not say its
format, or a row sent to a server as text, needs no ``--format`` again (``separator``).

The text form is comma-separated ``NAME[:ROLE[:OPTION...]]``, where a bare name is a numeric
column unless it is ``label``, ``weight`` or ``tag``; options are ``log1p``, ``fill=VALUE`` and
``ns=NAMESPACE``; ``I1..I13:num`` expands to I1, I2, ..., I13. The Criteo layout:

>>> s = ColumnSchema.parse("label,I1..I13:num:log1p,C1..C26:cat", delimiter="\\t")
>>> len(s.columns), s.columns[1].name, s.columns[1].transform, s.columns[-1].role
(40, 'I1', 'log1p', 'cat')
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shoal.errors import ConfigError

Role = Literal["label", "weight", "tag", "num", "cat", "ignore"]
ROLES: tuple[str, ...] = ("label", "weight", "tag", "num", "cat", "ignore")
Transform = Literal["none", "log1p"]
TABLE_FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet")
_RANGE = re.compile(r"^([A-Za-z_]*)(\d+)\.\.([A-Za-z_]*)(\d+)$")


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column: its name, role, namespace, numeric transform and fill for missing values."""

    name: str
    role: Role = "num"
    namespace: str = ""
    transform: Transform = "none"
    fill: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("schema", "a column has an empty name")
        if self.role not in ROLES:
            raise ConfigError(
                "schema",
                f"column {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}",
            )
        if self.transform not in ("none", "log1p"):
            raise ConfigError(
                "schema", f"column {self.name!r}: unknown transform {self.transform!r}"
            )
        if self.transform != "none" and self.role != "num":
            raise ConfigError("schema", f"column {self.name!r}: only numeric columns take log1p")
        if self.fill is not None and not math.isfinite(self.fill):
            raise ConfigError("schema", f"column {self.name!r}: fill must be a finite number")

    @property
    def is_feature(self) -> bool:
        return self.role in ("num", "cat")


@dataclass(frozen=True, kw_only=True)
class ColumnSchema:
    """The columns of a delimited file or table, in order, and how to split its lines."""

    columns: tuple[Column, ...]
    delimiter: str = ","
    header: bool | None = None  # None: a first line equal to the column names is a header
    format: str | None = None  # the table format the model learned from (None: not known)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if self.format is not None and self.format not in TABLE_FORMATS:
            raise ConfigError(
                "schema", f"format must be one of {', '.join(TABLE_FORMATS)}, got {self.format!r}"
            )
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError("schema", f"columns named twice: {', '.join(dup)}")
        for role in ("label", "weight", "tag"):
            if sum(c.role == role for c in self.columns) > 1:
                raise ConfigError("schema", f"more than one {role} column")
        if len(self.delimiter) != 1 or self.delimiter in '\n\r"':
            raise ConfigError(
                "schema", f"the delimiter must be one character, got {self.delimiter!r}"
            )
        if not any(c.is_feature for c in self.columns):
            raise ConfigError("schema", "no numeric or categorical column: nothing to learn from")

    def index(self, role: Role) -> int:
        """Position of the (single) column with ``role``, or -1."""
        return next((i for i, c in enumerate(self.columns) if c.role == role), -1)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def separator(self) -> str:
        """What separates the fields of a row as text: a tab for TSV, else the delimiter."""
        return "\t" if self.format == "tsv" else self.delimiter

    # -- text and JSON forms -------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, *, delimiter: str = ",", header: bool | None = None) -> ColumnSchema:
        """The schema from its text form (see the module docstring)."""
        columns: list[Column] = []
        for raw in text.replace("\n", ",").split(","):
            entry = raw.strip()
            if entry:
                columns.extend(_parse_entry(entry))
        if not columns:
            raise ConfigError("schema", "no columns given")
        return cls(columns=tuple(columns), delimiter=delimiter, header=header)

    @classmethod
    def load(cls, path: str | Path, *, delimiter: str | None = None) -> ColumnSchema:
        """A schema file: JSON (``to_dict``'s form) or the text form, one or more per line."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError("schema", f"cannot read {path}: {exc.strerror}") from None
        if text.lstrip().startswith("{"):
            try:
                return cls.from_dict(json.loads(text))
            except (ValueError, TypeError) as exc:
                raise ConfigError("schema", f"{path}: {exc}") from None
        lines = [ln.split("#", 1)[0] for ln in text.splitlines()]
        return cls.parse(",".join(lines), delimiter=delimiter or ",")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "delimiter": self.delimiter,
            "header": self.header,
            "columns": [
                {k: v for k, v in c.__dict__.items() if v not in (None, "", "none")}
                for c in self.columns
            ],
        }
        if self.format is not None:  # files written before formats were kept stay the same
            d["format"] = self.format
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnSchema:
        try:
            cols = tuple(Column(**c) for c in d["columns"])
            return cls(
                columns=cols,
                delimiter=d.get("delimiter", ","),
                header=d.get("header"),
                format=d.get("format"),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError("schema", f"malformed schema: {exc}") from None


def _parse_entry(entry: str) -> list[Column]:
    parts = entry.split(":")
    name, rest = parts[0].strip(), [p.strip() for p in parts[1:]]
    role: str = rest[0] if rest and rest[0] in ROLES else ""
    opts = rest[1:] if role else rest
    if not role:
        role = name if name in ("label", "weight", "tag") else "num"
    kw: dict[str, Any] = {}
    for opt in opts:
        if opt == "log1p":
            kw["transform"] = "log1p"
        elif opt.startswith("fill="):
            try:
                kw["fill"] = float(opt[5:])
            except ValueError:
                raise ConfigError("schema", f"{entry!r}: fill needs a number") from None
        elif opt.startswith("ns="):
            kw["namespace"] = opt[3:]
        else:
            raise ConfigError(
                "schema",
                f"{entry!r}: unknown part {opt!r} (roles: {', '.join(ROLES)}; "
                "options: log1p, fill=VALUE, ns=NAME)",
            )
    m = _RANGE.match(name)
    if m:
        prefix, lo, prefix2, hi = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
        if prefix2 not in ("", prefix) or hi < lo or hi - lo > 100_000:
            raise ConfigError("schema", f"{entry!r}: a range is like I1..I13")
        return [Column(name=f"{prefix}{i}", role=role, **kw) for i in range(lo, hi + 1)]  # type: ignore[arg-type]
    return [Column(name=name, role=role, **kw)]  # type: ignore[arg-type]


__all__ = ["TABLE_FORMATS", "Column", "ColumnSchema"]
