"""``LearnerConfig``: the loss, the optimizer and its hyper-parameters, validated once."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from shoal.errors import ConfigError

Loss = Literal["logistic", "squared", "hinge", "multiclass"]
Optimizer = Literal["normalized", "sgd", "adagrad", "ftrl"]
LOSSES: tuple[str, ...] = ("logistic", "squared", "hinge", "multiclass")
OPTIMIZERS: tuple[str, ...] = ("normalized", "sgd", "adagrad", "ftrl")
# Defaults chosen on the generated click set, a9a and rcv1_small (see BENCHMARKS.md). The
# normalized optimizer's 0.5 is VW's: on the sets of `benchmarks/bench_quality.py --rates`, each
# other rate is worse than 0.5 on some set (a9a and w8a prefer less, rcv1_small, agaricus and
# the click set more), so 0.5 is the one rate never worse than VW's default.
DEFAULT_RATES = {"normalized": 0.5, "sgd": 0.5, "adagrad": 0.1, "ftrl": 0.1}


@dataclass(frozen=True, kw_only=True)
class LearnerConfig:
    """What to minimise and how.

    ``learning_rate`` defaults to 0.5 for the normalized optimizer and SGD, 0.1 for AdaGrad and
    FTRL.

    - ``normalized`` (the default): Vowpal Wabbit's default update (``--adaptive --normalized
      --invariant``): per-coordinate adaptive steps ``G ** -power_t``, normalized by each
      feature's largest value, importance-invariant (see ``shoal.model.normalized``). Features
      need no scaling. ``initial_t`` > 0 starts every ``G`` (and the normalizer's sums) at it,
      as VW's ``--initial_t`` does with its adaptive updates.
    - ``sgd``: step ``learning_rate / (1 + t) ** power_t`` where t is the sum of importance
      weights seen so far.
    - ``adagrad``: per-coordinate step ``learning_rate / sqrt(sum of squared gradients)``
      (Duchi, Hazan and Singer, 2011).
    - ``ftrl``: FTRL-Proximal with ``alpha = learning_rate`` and ``beta = ftrl_beta``
      (McMahan et al., 2013); ``l1`` and ``l2`` enter its closed-form weights.

    For SGD and AdaGrad, ``l2`` adds ``l2 * w`` to the gradient and ``l1`` is a proximal step
    (soft thresholding) after each update; both touch only the features of the current example,
    as in Vowpal Wabbit.

    >>> LearnerConfig(loss="multiclass", classes=3).outputs
    3
    """

    loss: Loss = "logistic"
    classes: int = 2
    optimizer: Optimizer = "normalized"
    learning_rate: float | None = None  # None: the optimizer's default (DEFAULT_RATES)
    power_t: float = 0.5
    initial_t: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    ftrl_beta: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError("loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                "optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_RATES[self.optimizer])
        if not isinstance(self.classes, int) or self.classes < 2:
            raise ConfigError("classes", f"must be an integer >= 2, got {self.classes!r}")
        if self.classes != 2 and self.loss != "multiclass":
            raise ConfigError("classes", f"is for the multiclass loss, not {self.loss}")
        for name in ("learning_rate", "ftrl_beta"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(name, f"must be a positive number, got {v!r}")
        if self.initial_t != 0 and self.optimizer != "normalized":
            raise ConfigError(
                "initial_t", "is for the normalized optimizer (--optimizer normalized)"
            )
        if self.optimizer == "normalized" and not (
            isinstance(self.power_t, int | float) and 0 <= self.power_t <= 1
        ):
            raise ConfigError(
                "power_t", f"must be in [0, 1] for the normalized optimizer, got {self.power_t!r}"
            )
        for name in ("power_t", "l1", "l2", "initial_t"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(name, f"must be a non-negative number, got {v!r}")

    @property
    def rate(self) -> float:
        """The learning rate in force (the optimizer's default when none was given)."""
        return float(self.learning_rate or DEFAULT_RATES[self.optimizer])

    @property
    def outputs(self) -> int:
        """Weights per hashed slot: the number of classes for multiclass, else 1."""
        return self.classes if self.loss == "multiclass" else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearnerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError("config", f"unknown fields {sorted(unknown)}")
        return cls(**d)
