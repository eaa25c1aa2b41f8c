"""Feature names back from their weights: which names of a data set hash to which index.

Hashing keeps no vocabulary, so a weight's name is found again by reading data: every feature
of a VW text (or svmlight) line is named as Vowpal Wabbit's ``--audit`` and ``--invert_hash``
name it (``ns^name``; ``name`` in the default namespace; ``ns^`` for an anonymous feature;
``a^x*b^y`` for an interaction; ``Constant``) and hashed with the model's spec, by the same
rules as the compiled parser (``textparse``), in Python: this is for inspecting a model, not
for training speed. Only the indices asked for are kept, with a few names each, so memory does
not grow with the data.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

from shoal.data import files
from shoal.data.blocks import open_file
from shoal.errors import ConfigError
from shoal.features.hashing import (
    CONSTANT_HASH,
    DIGIT_LIMIT,
    FNV_PRIME,
    M32,
    hash_bytes,
)
from shoal.features.spec import FeatureSpec

_BLANKS = b" \t\r"
Named = tuple[int, str]  # (32-bit hash, name)


class _Namer:
    """Names and 32-bit hashes of the features of one line, by the spec's rules."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.digits = DIGIT_LIMIT[spec.hash_version]
        self.ns: dict[bytes, int] = {}
        self.ignore = set(spec.ignore.encode())

    def _ns_hash(self, name: bytes) -> int:
        h = self.ns.get(name)
        if h is None:
            h = self.ns[name] = hash_bytes(name, self.spec.seed) if name else self.spec.default_hash
        return h

    def _hash(self, name: bytes, ns_hash: int) -> int:
        if name.isdigit() and len(name) <= self.digits:
            return (int(name) + ns_hash) & M32
        return hash_bytes(name, ns_hash)

    def base(self, line: bytes, svmlight: bool) -> list[tuple[int, int, str]]:
        """(hash, namespace letter, name) of the line's features, zeros and ignored dropped."""
        out: list[tuple[int, int, str]] = []
        if svmlight:
            tokens = line.split(b"#", 1)[0].split()
            if tokens and b":" not in tokens[0]:
                tokens = tokens[1:]
            for tok in tokens:
                name, _, value = tok.partition(b":")
                if name != b"qid" and _nonzero(value) and 32 not in self.ignore:
                    out.append((self._hash(name, self._ns_hash(b"")), 32, name.decode()))
            return out
        for segment in line.split(b"|")[1:]:
            ns, scale, letter, prefix = b"", 1.0, 32, ""
            segment = segment.replace(b"\t", b" ").replace(b"\r", b" ")
            if segment[:1] not in (b"", b" "):
                head, _, segment = segment.partition(b" ")
                head, _, s = head.partition(b":")
                ns, letter = head, head[0]
                prefix = head.decode("utf-8", "replace") + "^"
                scale = float(s) if s else 1.0
            nsh = self._ns_hash(ns)
            anon = 0
            for tok in segment.split(b" "):
                if not tok:
                    continue
                name, colon, value = tok.partition(b":")
                if name:
                    h = -1
                else:  # anonymous: the namespace's hash plus its position
                    h = (nsh + anon) & M32
                    anon += 1
                if letter in self.ignore or not _nonzero(value if colon else b"1", scale):
                    continue
                if h < 0:
                    h = self._hash(name, nsh)
                out.append((h, letter, prefix + name.decode("utf-8", "replace")))
        return out

    def line(self, line: bytes, svmlight: bool) -> list[Named]:
        """(32-bit hash, name) of every feature the parser gives the line, in its order."""
        base = self.base(line, svmlight)
        out = [(h, name) for h, _, name in base]
        self_pairs = self.spec.self_pairs
        for term in self.spec.interactions:
            letters = term.encode()
            out.extend(_expand(base, letters, self_pairs))
        if self.spec.constant:
            out.append((CONSTANT_HASH, "Constant"))
        return out


def _nonzero(value: bytes, scale: float = 1.0) -> bool:
    try:
        return np.float32(float(value or b"1") * scale) != 0.0
    except ValueError:
        return False  # a bad value: the reader refuses the line; it names nothing here


def _expand(base: list[tuple[int, int, str]], letters: bytes, self_pairs: bool) -> Iterator[Named]:
    """The interactions of one term, in the order of ``textparse._interactions``."""
    first = 0 if self_pairs else 1
    pos = [[i for i, (_, let, _) in enumerate(base) if let == c] for c in letters]
    for i in pos[0]:
        for j in pos[1]:
            if letters[1] == letters[0] and j < i + first:
                continue
            h2 = ((base[i][0] * FNV_PRIME) ^ base[j][0]) & M32
            n2 = f"{base[i][2]}*{base[j][2]}"
            if len(letters) == 2:
                yield h2, n2
                continue
            for k in pos[2]:
                if (letters[2] == letters[1] and k < j + first) or (
                    letters[2] == letters[0] and k < i + first
                ):
                    continue
                yield ((h2 * FNV_PRIME) ^ base[k][0]) & M32, f"{n2}*{base[k][2]}"


def line_names(line: str | bytes, spec: FeatureSpec, svmlight: bool = False) -> list[Named]:
    """(index, name) of every feature of a VW text line (or svmlight), in the parser's order.

    >>> spec = FeatureSpec(bits=18, interactions=("ff",))
    >>> line_names("1 |f a b", spec)
    [(14355, 'f^a'), (146788, 'f^b'), (32250, 'f^a*f^a'), (161933, 'f^a*f^b'), \
(39176, 'f^b*f^b'), (116060, 'Constant')]
    """
    raw = line.encode() if isinstance(line, str) else line
    return [(h & spec.mask, name) for h, name in _Namer(spec).line(raw, svmlight)]


def invert_hash(
    paths: Iterable[str | os.PathLike[str]],
    spec: FeatureSpec,
    indices: Iterable[int],
    *,
    format: str | None = None,
    per_index: int = 5,
) -> dict[int, Counter[str]]:
    """The names that hash to each of ``indices`` in the data of ``paths``, with how often
    each occurs (at most ``per_index`` names kept per index: the first seen)."""
    from shoal.data.reader import guess_format

    wanted = {int(i): Counter[str]() for i in indices}
    namer = _Namer(spec)
    mask = spec.mask
    for name in files.expand(paths):
        fmt = format or guess_format(name)
        if fmt not in ("vw", "svmlight"):
            raise ConfigError(
                "names", f"{name} is {fmt}: feature names are read from VW text or svmlight"
            )
        with open_file(name) as f:
            for raw in f:
                line = raw.strip(_BLANKS + b"\n").removeprefix(b"\xef\xbb\xbf")
                if not line or (fmt == "svmlight" and line.startswith(b"#")):
                    continue
                for h, feature in namer.line(line, fmt == "svmlight"):
                    got = wanted.get(h & mask)
                    if got is not None and (feature in got or len(got) < per_index):
                        got[feature] += 1
    return wanted
