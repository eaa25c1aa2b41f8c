"""``LearnerConfig``: the loss, the optimizer and its hyper-parameters, validated once."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from shoal.errors import ConfigError

Loss = Literal["logistic", "squared", "hinge", "multiclass"]
Optimizer = Literal["normalized", "sgd", "adagrad", "ftrl"]
Kind = Literal["linear", "fm", "ffm"]
LOSSES: tuple[str, ...] = ("logistic", "squared", "hinge", "multiclass")
KINDS: tuple[str, ...] = ("linear", "fm", "ffm")
DEFAULT_RANK = 8
OPTIMIZERS: tuple[str, ...] = ("normalized", "sgd", "adagrad", "ftrl")
# Defaults chosen on the generated click set, a9a and rcv1_small (see BENCHMARKS.md). The
# normalized optimizer's 0.5 is VW's: on the sets of `benchmarks/bench_quality.py --rates`, each
# other rate is worse than 0.5 on some set (a9a and w8a prefer less, rcv1_small, agaricus and
# the click set more), so 0.5 is the one rate never worse than VW's default.
DEFAULT_RATES = {"normalized": 0.5, "sgd": 0.5, "adagrad": 0.1, "ftrl": 0.1}
# The factors' AdaGrad rate (fm, ffm), measured in one pass (docs/fm.md): on `shoal generate
# --model fm` (10^6 rows) 0.05 is best of 0.01 .. 0.1 (0.02 and 0.1 miss 1% of the optimum);
# on plain generated data, where no pair matters, every learned pair is noise and a lower rate
# is better (0.1 was 4% worse than linear there, 0.05 is 1%); a9a and rcv1_small gain at 0.05.
# The start (init_scale 0.01) matters little between 0.001 and 0.05.
FACTOR_RATE = 0.05


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

    ``model``: ``linear``, or a factorization machine (Rendle, 2010) that adds to the linear
    margin every pair of features' interaction through latent vectors of ``rank`` numbers:
    ``fm`` keeps one vector per feature, ``ffm`` (field-aware, Juan et al., 2016) one per
    feature and field (the fields are the spec's). The linear part learns with ``optimizer``;
    the factors learn with AdaGrad steps of ``factor_rate`` (default: ``FACTOR_RATE``) and L2
    ``l2_factors``, from a deterministic start drawn from the spec's seed (``init_scale``:
    the standard deviation of each number).

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
    model: Kind = "linear"
    rank: int = 0  # 0: DEFAULT_RANK for fm and ffm
    factor_rate: float | None = None  # None: FACTOR_RATE
    l2_factors: float = 0.0
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError("loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        self._check_factors()
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

    def _check_factors(self) -> None:
        if self.model not in KINDS:
            raise ConfigError("model", f"must be one of {', '.join(KINDS)}, got {self.model!r}")
        rank = self.rank
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= 256:
            raise ConfigError("rank", f"must be an integer from 1 to 256, got {self.rank!r}")
        if self.model == "linear":
            if self.rank or self.factor_rate is not None or self.l2_factors:
                raise ConfigError("rank", "--rank, --factor-rate and --l2-factors are for "
                                  "--model fm or ffm")  # fmt: skip
            return
        if self.loss == "multiclass":
            raise ConfigError(
                "model", f"{self.model} learns one output: multiclass models are linear "
                "(--model linear), or train one binary model per class",
            )  # fmt: skip
        if self.rank == 0:
            object.__setattr__(self, "rank", DEFAULT_RANK)
        if self.factor_rate is None:
            object.__setattr__(self, "factor_rate", FACTOR_RATE)
        for name in ("factor_rate", "init_scale"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(name, f"must be a positive number, got {v!r}")
        v = self.l2_factors
        if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
            raise ConfigError("l2_factors", f"must be a non-negative number, got {v!r}")

    @property
    def factorized(self) -> bool:
        """Whether the model has latent factors (fm or ffm)."""
        return self.model != "linear"

    @property
    def rate(self) -> float:
        """The learning rate in force (the optimizer's default when none was given)."""
        return float(self.learning_rate or DEFAULT_RATES[self.optimizer])

    @property
    def outputs(self) -> int:
        """Weights per hashed slot: the number of classes for multiclass, else 1."""
        return self.classes if self.loss == "multiclass" else 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.factorized:  # linear models keep the JSON they always had (cache keys)
            for name in ("model", "rank", "factor_rate", "l2_factors", "init_scale"):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearnerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError("config", f"unknown fields {sorted(unknown)}")
        return cls(**d)
