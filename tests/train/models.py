"""The models the training tests share: linear ones, FMs and FFMs for the click data."""

from __future__ import annotations

from typing import Any

from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model

KINDS = ["linear", "fm", "ffm"]


def model_of(kind: str, bits: int = 16, rank: int = 4, **config: Any) -> Model:
    """A model of ``kind`` ("linear", "fm" or "ffm") with ``config``'s settings; an FM or FFM of
    rank ``rank`` (an FFM: a field per namespace of the click data, ``--fields cn``)."""
    factors = {} if kind == "linear" else {"model": kind, "rank": rank}
    spec = FeatureSpec(bits=bits, fields=("c", "n") if kind == "ffm" else ())
    return Model(spec, LearnerConfig(**factors, **config))
