"""The ``FeatureSpec``: how raw records become hashed sparse vectors.

A spec is stored inside every model file, so a server hashes exactly as training did.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoal.errors import ConfigError
from shoal.features.hashing import DIGIT_LIMIT, HASH_VERSION, namespace_hash
from shoal.features.schema import ColumnSchema

MAX_BITS = 30


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def vw_interactions(terms: tuple[str, ...]) -> tuple[str, ...]:
    """Interactions as Vowpal Wabbit 9 takes them: a term with a repeated letter is sorted
    (``BAB`` is ``ABB``), and a term equal to an earlier one up to order is dropped (``-q ab
    -q ab`` and ``-q ab -q ba`` are one interaction); other terms keep their order (``ba``).

    >>> vw_interactions(("ba", "ab", "BAB", "aa", "ABB"))
    ('ba', 'ABB', 'aa')
    """
    seen: set[str] = set()
    out = []
    for term in terms:
        key = "".join(sorted(term))
        if key not in seen:
            seen.add(key)
            out.append(key if len(set(term)) < len(term) else term)
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """Hash bits and seed, interactions between namespaces, the constant feature.

    ``interactions`` are strings of namespace first letters, as Vowpal Wabbit's ``-q ab``
    (pairs) and ``--cubic abc`` (triples); the default namespace's letter is a space. As in
    VW 9, an interaction of a namespace with itself takes every feature with every feature at
    or after it (squares too), and terms are deduplicated and sorted as ``vw_interactions``
    says. ``ignore`` lists namespace letters whose features are dropped.

    ``fields`` are a field-aware FM's fields, each a string of namespace letters. A feature's
    field is its namespace's, in every format: VW text's ``|ns``, a JSON object's key, and for a
    schema's column (CSV, TSV, Parquet, tables) the column's ``ns=`` namespace, else the default
    one, whose letter is a space. A schema's columns get fields of their own by being given
    namespaces (``C1:cat:ns=a,C2:cat:ns=b`` with ``fields=("a", "b")``): a field per column
    by default would give the same record another model as VW text than as CSV. The constant
    and the features of a namespace in no field are in none (linear only).

    ``hash_version`` picks the hashing rules (``shoal.features.hashing``): 2, VW 9's, is the
    default; a model file written before version 2 existed has no such field and reads as 1,
    so its spec keeps hashing, and the model keeps predicting, as it did.

    >>> spec = FeatureSpec(bits=20, interactions=("ab", "ba", "ff"))
    >>> spec.size, spec.interactions
    (1048576, ('ab', 'ff'))
    >>> FeatureSpec.from_json(spec.to_json()) == spec
    True
    >>> FeatureSpec.from_dict({"bits": 20, "interactions": ["ab", "ba"]}).interactions
    ('ab', 'ba')
    """

    bits: int = 18
    seed: int = 0
    interactions: tuple[str, ...] = ()
    constant: bool = True
    ignore: str = ""
    schema: ColumnSchema | None = None  # columns of delimited files and tables
    hash_version: int = HASH_VERSION
    fields: tuple[str, ...] = ()  # a field-aware FM's fields: namespace letters, one string each

    def __post_init__(self) -> None:
        # bool is an int subclass: reject it, or {"bits": true} would mean bits=1
        if not _is_int(self.bits) or not 1 <= self.bits <= MAX_BITS:
            raise ConfigError("bits", f"must be an integer from 1 to {MAX_BITS}, got {self.bits!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise ConfigError("seed", f"must be an integer in [0, 2**32), got {self.seed!r}")
        if not isinstance(self.constant, bool):
            raise ConfigError("constant", f"must be true or false, got {self.constant!r}")
        terms = self.interactions
        # a lone string is one term ("ab"), not a sequence of one-letter terms
        terms = (terms,) if isinstance(terms, str) else tuple(terms)
        object.__setattr__(self, "interactions", terms)
        for term in self.interactions:
            if not isinstance(term, str) or not 2 <= len(term) <= 3 or not term.isascii():
                raise ConfigError(
                    "interactions",
                    f"each interaction is 2 or 3 ASCII namespace letters (like 'ab'), got {term!r}",
                )
        if not _is_int(self.hash_version) or self.hash_version not in DIGIT_LIMIT:
            raise ConfigError(
                "hash_version",
                f"must be one of {sorted(DIGIT_LIMIT)} (the newest is {HASH_VERSION}), "
                f"got {self.hash_version!r}; a newer shoal wrote this spec",
            )
        if self.hash_version >= 2:
            object.__setattr__(self, "interactions", vw_interactions(self.interactions))
        if not isinstance(self.ignore, str) or not self.ignore.isascii():
            raise ConfigError(
                "ignore", f"must be a string of ASCII namespace letters, got {self.ignore!r}"
            )
        self._check_fields()

    def _check_fields(self) -> None:
        fields = (self.fields,) if isinstance(self.fields, str) else tuple(self.fields)
        object.__setattr__(self, "fields", fields)
        seen: set[str] = set()
        for f in fields:
            if not isinstance(f, str) or not f or not f.isascii():
                raise ConfigError(
                    "fields", f"each field is one or more ASCII namespace letters, got {f!r}"
                )
            if seen & set(f):
                twice = sorted(seen & set(f))[0]
                raise ConfigError("fields", f"namespace {twice!r} is in two fields")
            seen |= set(f)
        if fields and self.interactions:
            raise ConfigError(
                "fields",
                "a field-aware FM already learns every pair of fields: drop the interactions "
                "(-q/--cubic) or the fields",
            )
        if fields and self.bits + self.field_bits > 32:
            raise ConfigError(
                "bits", f"{self.bits} bits and {len(fields)} fields need more than 32 bits per "
                "index: lower --bits",
            )  # fmt: skip

    @property
    def size(self) -> int:
        """Number of hashed weight slots, ``2**bits``."""
        return 1 << self.bits

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    @property
    def field_bits(self) -> int:
        """Bits above ``bits`` that carry a feature's field (0 without fields): the fields are
        numbered 0..F-1 and F stands for "no field" (the constant, a namespace in none)."""
        return len(self.fields).bit_length() if self.fields else 0

    @property
    def index_limit(self) -> int:
        """One past the largest index a batch hashed by this spec holds."""
        return self.size << self.field_bits

    def field_codes(self) -> np.ndarray:
        """A (257,) uint32 table added to each feature's masked hash: ``field << bits`` for the
        namespace letter of a field, ``F << bits`` for other letters and (the last entry) the
        constant; all zeros without fields, so that indices are the masked hashes.

        >>> codes = FeatureSpec(bits=4, fields=("ab", "c")).field_codes()
        >>> int(codes[ord("a")]), int(codes[ord("c")]), int(codes[ord("z")]), int(codes[256])
        (0, 16, 32, 32)
        """
        codes = np.zeros(257, dtype=np.uint32)
        if self.fields:
            codes[:] = len(self.fields) << self.bits
            for number, letters in enumerate(self.fields):
                for ch in letters.encode():
                    codes[ch] = number << self.bits
        return codes

    @property
    def default_hash(self) -> int:
        """The 32-bit hash of the default namespace (``namespace_hash("")``)."""
        return namespace_hash("", self.seed, self.hash_version)

    @property
    def self_pairs(self) -> bool:
        """Whether an interaction of a namespace with itself pairs a feature with itself."""
        return self.hash_version >= 2

    def hash_rules(self) -> np.ndarray:
        """The hashing rules for the kernels, as int64: the seed, the default namespace's hash,
        the longest all-digit name hashed as its number, and ``self_pairs`` (0 or 1)."""
        rules = (self.seed, self.default_hash, DIGIT_LIMIT[self.hash_version], self.self_pairs)
        return np.array(rules, dtype=np.int64)

    def interaction_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Interactions flattened for the kernels: offsets (n+1,) and namespace letters."""
        offsets = np.zeros(len(self.interactions) + 1, dtype=np.int64)
        letters = np.zeros(max(1, sum(len(t) for t in self.interactions)), dtype=np.uint8)
        pos = 0
        for i, term in enumerate(self.interactions):
            for ch in term.encode():
                letters[pos] = ch
                pos += 1
            offsets[i + 1] = pos
        return offsets, letters

    def namespace_table(self) -> np.ndarray:
        """The VW text kernel's (257,) int64 table: each namespace letter's field code
        (``field_codes``; the constant's last), or -1 for a letter to drop (``ignore``)."""
        table = self.field_codes().astype(np.int64)
        table[:256][self.ignore_array()] = -1
        return table

    def ignore_array(self) -> np.ndarray:
        """A (256,) boolean table: True for namespace letters to drop."""
        table = np.zeros(256, dtype=np.bool_)
        for ch in self.ignore.encode():
            table[ch] = True
        return table

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["interactions"] = list(self.interactions)
        d["fields"] = list(self.fields)
        if not self.fields:  # specs without fields keep the JSON they always had (cache keys)
            del d["fields"]
        if self.schema is None:
            del d["schema"]
        else:
            d["schema"] = self.schema.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError("spec", f"unknown fields {sorted(unknown)}")
        d = dict(d)
        d.setdefault("hash_version", 1)  # written before the field existed: the old rules
        for key in ("interactions", "fields"):
            if key in d and isinstance(d[key], list):
                d[key] = tuple(d[key])
        if d.get("schema") is not None:
            d["schema"] = ColumnSchema.from_dict(d["schema"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))
