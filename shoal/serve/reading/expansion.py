"""A bound on the interaction features a request makes: ``-q uv`` turns a line with n features
in ``u`` and m in ``v`` into n * m more, so a 1 MB line of 50,000 of each would make 2.5 billion
(20 GB of arrays) from one request. Counted from the text before parsing, cheaply: the features
of each namespace's letter, multiplied per term (an upper bound: a term that repeats a letter
pairs fewer). JSON lines (models with a column schema) are left to the schema's own bounds.

>>> from shoal import FeatureSpec
>>> interaction_features(FeatureSpec(bits=8, interactions=("uv",)), "1 |u a b c |v x y")
6
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from shoal.features.spec import FeatureSpec
from shoal.serve.errors import PayloadTooLarge

MAX_INTERACTION_FEATURES = 4_000_000  # in one request (~32 MB of parsed arrays)


def interaction_features(spec: FeatureSpec, line: str) -> int:
    """How many interaction features ``line`` makes at most."""
    counts: Counter[str] = Counter()
    for part in line.split("|")[1:]:
        if not part:
            continue
        named = not part[0].isspace()
        counts[part[0] if named else " "] += len(part.split()) - named
    return sum(math.prod(counts[c] for c in term) for term in spec.interactions)


def check_expansion(spec: FeatureSpec, lines: Sequence[str]) -> None:
    """``PayloadTooLarge`` if ``lines`` make more than ``MAX_INTERACTION_FEATURES``."""
    if not spec.interactions:
        return
    total = 0
    for k, line in enumerate(lines):
        if line.startswith("{"):
            continue
        total += interaction_features(spec, line)
        if total > MAX_INTERACTION_FEATURES:
            raise PayloadTooLarge(
                f"records[{k}]: the interactions of the model ({' '.join(spec.interactions)}) "
                f"make over {MAX_INTERACTION_FEATURES} features from this request's records: "
                "send fewer features per namespace, or fewer records at once"
            )
