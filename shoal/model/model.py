"""``Model``: a hashed sparse learner (linear, FM or FFM) as data (spec, config, a few arrays)
plus kernels."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoal.data import frames
from shoal.data.batch import Batch
from shoal.errors import ConfigError, DataError, StepTooLarge
from shoal.features.spec import FeatureSpec
from shoal.model import factors, kernels, modelfile
from shoal.model.config import LearnerConfig
from shoal.model.losses import LOSS_IDS
from shoal.model.normalized import NORM_SUM, NORM_WEIGHT
from shoal.model.optimizers import OPTIMIZER_IDS, state_tensors

_EMPTY = np.zeros(0, dtype=np.float32)
_NO_PREDS = np.zeros(0, dtype=np.float64)
_NO_PREDS_2D = np.zeros((0, 1), dtype=np.float64)


@dataclass
class Progress:
    """Progressive validation: each example's loss measured before it is learned.

    Holdout examples (``holdout_period`` > 0) are predicted but never learned; their loss is
    reported separately.
    """

    stats: np.ndarray = field(default_factory=lambda: np.zeros(kernels.N_STATS))

    @property
    def examples(self) -> int:
        return int(self.stats[kernels.LEARNED])

    @property
    def holdout_examples(self) -> int:
        return int(self.stats[kernels.HO_COUNT])

    @property
    def loss(self) -> float:
        w = self.stats[kernels.WEIGHT_SUM]
        return float(self.stats[kernels.LOSS_SUM] / w) if w > 0 else float("nan")

    @property
    def holdout_loss(self) -> float:
        w = self.stats[kernels.HO_WEIGHT_SUM]
        return float(self.stats[kernels.HO_LOSS_SUM] / w) if w > 0 else float("nan")

    @property
    def unlabeled(self) -> int:
        return int(self.stats[kernels.UNLABELED])


class Model:
    """A linear model, or a factorization machine (``config.model``), over hashed features,
    learned online. Its numbers are one flat ``weights`` array of ``spec.size`` slots of
    ``width`` numbers (``factors`` says how an FM lays them out) and optimizer ``state`` arrays
    of the same shape.

    >>> from shoal.data import Batch
    >>> m = Model(FeatureSpec(bits=8), LearnerConfig(loss="logistic", learning_rate=0.5))
    >>> b = Batch.from_rows([([1, 2], [1.0, 1.0]), ([3], [1.0])], labels=[1, -1])
    >>> for _ in range(50):
    ...     _ = m.learn(b)
    >>> p = m.predict(b)
    >>> bool(p[0] > 0.9 and p[1] < 0.1)
    True
    """

    def __init__(
        self, spec: FeatureSpec | None = None, config: LearnerConfig | None = None
    ) -> None:
        if not isinstance(spec, FeatureSpec | None):
            raise ConfigError("spec", f"must be a FeatureSpec, got {type(spec).__name__}")
        if not isinstance(config, LearnerConfig | None):
            raise ConfigError("config", f"must be a LearnerConfig, got {type(config).__name__}")
        self.spec = spec or FeatureSpec()
        self.config = config or LearnerConfig()
        check_kind(self.spec, self.config)
        n = self.spec.size * self.width
        self.weights = np.zeros(n, dtype=np.float32)
        if self.config.factorized:
            factors.init_factors(self.weights, self.spec, self.config)
        self.state = {
            k: np.zeros(n, dtype=np.float32)
            for k in state_tensors(self.config.optimizer, self.config.factorized)
        }
        self.counters = np.zeros(kernels.N_COUNTERS, dtype=np.float64)
        if self.config.initial_t > 0:  # VW: as if initial_t examples of gradient 1 and norm 1
            self.state["sum_sq_grad"][:] = self.config.initial_t
            self.counters[NORM_SUM] = self.counters[NORM_WEIGHT] = self.config.initial_t

    # -- persistence -------------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: modelfile.ModelData) -> Model:
        check_kind(data.spec, data.config)
        m = cls.__new__(cls)
        m.spec, m.config = data.spec, data.config
        m.weights, m.state, m.counters = data.weights, dict(data.state), data.counters
        return m

    def to_data(self) -> modelfile.ModelData:
        return modelfile.ModelData(
            spec=self.spec,
            config=self.config,
            weights=self.weights,
            state=self.state,
            counters=self.counters,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically (safetensors; spec and config as JSON metadata)."""
        modelfile.save(path, self.to_data())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        """Read and validate a model file; raises ``ModelFileError`` if anything is off."""
        return cls.from_data(modelfile.load(path))

    def to_bytes(self, extra: dict[str, str] | None = None) -> bytes:
        """The model file's bytes; ``extra`` adds string metadata (a checkpoint's progress)."""
        data = self.to_data()
        if extra:
            data.extra.update(extra)
        return modelfile.to_bytes(data)

    @classmethod
    def from_bytes(cls, payload: bytes, name: str = "<bytes>") -> Model:
        return cls.from_data(modelfile.from_bytes(payload, name))

    def copy(self) -> Model:
        m = Model.__new__(Model)
        m.spec, m.config = self.spec, self.config
        m.weights = self.weights.copy()
        m.state = {k: v.copy() for k, v in self.state.items()}
        m.counters = self.counters.copy()
        return m

    @property
    def examples_learned(self) -> int:
        return int(self.counters[kernels.EXAMPLES])

    @property
    def width(self) -> int:
        """Numbers per hashed slot: the outputs of a linear model, ``1 + fields * rank`` for
        FM and FFM."""
        return factors.slot_width(self.spec, self.config)

    @property
    def linear_weights(self) -> np.ndarray:
        """The linear weights, (size * outputs,): a view of ``weights`` without the factors."""
        if not self.config.factorized:
            return self.weights
        return self.weights.reshape(self.spec.size, self.width)[:, 0]

    # -- learning ----------------------------------------------------------------------------

    def check_labels(self, batch: Batch) -> None:
        """Raise ``DataError`` naming the line of the first label this loss cannot take."""
        self.check_label_values(batch.labels, batch.lines, batch.source or "<input>")

    def check_label_values(self, y: np.ndarray, lines: np.ndarray, source: str) -> None:
        """``check_labels`` of the labels ``y`` (NaN: none) of ``lines`` of ``source``."""
        known = ~np.isnan(y)
        loss = self.config.loss
        if loss == "squared":
            bad = known & ~np.isfinite(y)
            allowed = "a finite number"
        elif loss == "multiclass":
            k = self.config.classes
            bad = known & ~((y >= 1) & (y <= k) & (y == np.floor(y)))
            allowed = f"a class from 1 to {k} (--classes {k})"
        else:
            bad = known & ~((y == 1) | (y == -1) | (y == 0))
            allowed = "-1/+1 or 0/1"
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                source,
                int(lines[i]),
                f"label {y[i]:g} is not valid for {loss} loss: expected {allowed}",
            )

    def _initial(self, batch: Batch) -> np.ndarray:
        """The batch's initial predictions for the kernels (empty: none). Raises ``DataError``
        for a multiclass model, whose K margins one number cannot start."""
        if batch.initial is None:
            return _NO_PREDS
        if self.config.loss == "multiclass":
            i = int(np.argmax(batch.initial != 0))
            raise DataError(
                batch.source or "<input>",
                int(batch.lines[i]),
                f"initial prediction {batch.initial[i]:g} (the label's third number): a "
                "multiclass model takes none; remove it",
            )
        return batch.initial

    def _check_indices(self, batch: Batch) -> None:
        """Refuse a batch hashed for more weights than this model has (the kernels index the
        weight arrays directly: an index out of range would write past them)."""
        if batch.nnz and int(batch.indices.max()) >= self.spec.index_limit:
            raise ConfigError(
                "batch",
                f"feature index {int(batch.indices.max())} is beyond this model's "
                f"2**{self.spec.bits} weights: read the data with the model's spec",
            )

    def learn(
        self,
        batch: Batch,
        *,
        holdout_period: int = 0,
        progress: Progress | None = None,
        holdout_model: Model | None = None,
    ) -> Progress:
        """Learn from every labeled row of ``batch``, in order (unlabeled rows are skipped).

        One row in ``holdout_period`` (by a hash of the row) is held out: scored, never learned,
        with ``holdout_model``'s weights if given (a frozen copy: training judges each pass's
        model on the rows it never learned), else with this model's.

        Returns ``progress`` (a new one if not given) updated with the progressive loss. Raises
        ``StepTooLarge`` at the first row whose update would exceed ``kernels.MAX_STEP``,
        having learned the rows before it: the weights and optimizer state stay finite.
        """
        self.check_labels(batch)
        self._check_indices(batch)
        prog = progress if progress is not None else Progress()
        cfg = self.config
        s1 = s2 = _EMPTY
        if cfg.optimizer in ("adagrad", "normalized") or cfg.factorized:
            s1 = self.state["sum_sq_grad"] if cfg.optimizer != "ftrl" else self.state["ftrl_n"]
        if cfg.optimizer == "normalized":
            s2 = self.state["feature_scale"]
        elif cfg.optimizer == "ftrl":
            s1, s2 = self.state["ftrl_n"], self.state["ftrl_z"]
        common = (
            OPTIMIZER_IDS[cfg.optimizer],
            cfg.rate,
            float(cfg.power_t),
            float(cfg.l1),
            float(cfg.l2),
            float(cfg.ftrl_beta),
            int(holdout_period),
            _EMPTY if holdout_model is None else holdout_model.weights,
            self.counters,
            prog.stats,
        )
        b = batch
        initial = self._initial(b)
        if cfg.factorized:
            slots, fields = factors.split_indices(b.indices, self.spec, cfg)
            stop = factors.learn_factors(
                b.indptr, slots, fields, b.values, b.labels, b.weights, initial, self.weights,
                s1, s2,
                LOSS_IDS[cfg.loss], *common, factors.field_count(self.spec, cfg), cfg.rank,
                float(cfg.factor_rate or 0.0), float(cfg.l2_factors),
            )  # fmt: skip
        elif cfg.loss == "multiclass":
            stop = kernels.learn_multiclass(
                b.indptr, b.indices, b.values, b.labels, b.weights, self.weights, s1, s2,
                cfg.classes, *common, _NO_PREDS_2D,
            )  # fmt: skip
        else:
            stop = kernels.learn_binary(
                b.indptr, b.indices, b.values, b.labels, b.weights, initial, self.weights, s1,
                s2, LOSS_IDS[cfg.loss], *common, _NO_PREDS,
            )  # fmt: skip
        if stop >= 0:
            raise StepTooLarge(
                batch.source or "<input>",
                int(batch.lines[stop]),
                f"learning this example would take a step beyond {kernels.MAX_STEP:g} "
                "(gradient x feature value): the learning diverged or a value is far too large; "
                "lower --learning-rate or scale the features",
                row=int(stop),
            )
        return prog

    def score_holdout(self, batch: Batch, holdout_period: int, progress: Progress) -> None:
        """Add the loss of the rows ``learn`` would hold out to ``progress``, learning nothing."""
        self.check_labels(batch)
        held = np.zeros(len(batch), dtype=np.bool_)
        hashed = batch.indices  # the holdout hashes what the kernel sees: an FFM's slots
        if self.config.factorized:
            hashed = factors.split_indices(batch.indices, self.spec, self.config)[0]
        kernels.held_out_rows(
            batch.indptr, hashed, batch.values, batch.labels, int(holdout_period), held
        )
        if not held.any():
            return
        m = self.decision_function(batch)[held]
        y = batch.labels[held]
        iw = batch.weights[held].astype(np.float64)
        loss = self.config.loss
        if loss == "multiclass":
            top = m.max(axis=1)
            lse = top + np.log(np.exp(m - top[:, None]).sum(axis=1))
            per_row = lse - m[np.arange(len(y)), y.astype(np.int64) - 1]
        elif loss == "squared":
            per_row = 0.5 * (m - y) ** 2
        else:
            sign = np.where(y > 0, 1.0, -1.0)
            per_row = (
                np.logaddexp(0.0, -sign * m)
                if loss == "logistic"
                else np.maximum(0.0, 1 - sign * m)
            )
        progress.stats[kernels.HO_LOSS_SUM] += float(iw @ per_row)
        progress.stats[kernels.HO_WEIGHT_SUM] += float(iw.sum())
        progress.stats[kernels.HO_COUNT] += int(held.sum())

    # -- prediction --------------------------------------------------------------------------

    def decision_function(self, batch: Batch) -> np.ndarray:
        """Margins ``w . x``: shape (n,) for one output, (n, K) for multiclass."""
        self._check_indices(batch)
        cfg = self.config
        k = cfg.outputs
        out = np.empty((len(batch), k), dtype=np.float64)
        initial = self._initial(batch)
        if cfg.factorized:
            slots, fields = factors.split_indices(batch.indices, self.spec, cfg)
            factors.predict_factors(
                batch.indptr, slots, fields, batch.values, initial, self.weights,
                factors.field_count(self.spec, cfg), cfg.rank, out,
            )  # fmt: skip
        else:
            kernels.predict_margins(
                batch.indptr, batch.indices, batch.values, initial, self.weights, k, out
            )
        return out[:, 0] if k == 1 else out

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Probabilities: of the positive class (n,) for logistic, of each class (n, K) for
        multiclass."""
        m = self.decision_function(batch)
        if self.config.loss == "logistic":
            return _sigmoid(m)
        if self.config.loss == "multiclass":
            z = np.exp(m - m.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        raise ConfigError("loss", f"{self.config.loss} loss gives no probabilities")

    def predict(self, batch: Batch) -> np.ndarray:
        """A probability (logistic), the class 1..K (multiclass), else the margin."""
        return self.predictions(self.decision_function(batch))

    def predictions(self, margins: np.ndarray) -> np.ndarray:
        """What ``predict`` gives for the margins ``decision_function`` gave."""
        if self.config.loss == "logistic":
            return _sigmoid(margins)
        if self.config.loss == "multiclass":
            return np.argmax(margins, axis=1) + 1
        return margins

    # -- records and tables: conversion lives in ``shoal.data.frames`` ------------------------

    def learn_one(self, x: Mapping[str, Any], y: float, weight: float = 1.0) -> None:
        """Learn one record, River's style: ``x`` is ``{"name": value}`` or ``{"ns": {...}}``.

        Hashes as the same record in JSON lines or VW text (``frames.batch_from_dicts``);
        learning records one by one equals learning them as one batch.
        """
        self.learn(frames.batch_from_dicts([x], self.spec, labels=[y], weights=[weight]))

    def predict_one(self, x: Mapping[str, Any]) -> float:
        """``predict`` of one record (a dict, as in ``learn_one``)."""
        return self.predict(frames.batch_from_dicts([x], self.spec))[0].item()

    def learn_frame(
        self, data: Any, y: Any = None, weight: Any = None, *, progress: Progress | None = None
    ) -> Progress:
        """Learn the rows of a pandas DataFrame or pyarrow Table/RecordBatch, in order.

        Labels are ``y`` or else the table's label column (the spec's schema, or a column named
        ``label``: ``frames.batch_from_frame``); the table hashes as the same Parquet file.
        """
        return self.learn(frames.batch_from_frame(data, self.spec, y, weight), progress=progress)

    def predict_frame(self, data: Any) -> np.ndarray:
        """``predict`` of every row of a pandas DataFrame or pyarrow Table/RecordBatch."""
        return self.predict(frames.batch_from_frame(data, self.spec))


def check_kind(spec: FeatureSpec, config: LearnerConfig) -> None:
    """Refuse a spec and config that do not make one model: fields without a field-aware FM,
    or a field-aware FM without fields."""
    if config.model == "ffm" and not spec.fields:
        raise ConfigError(
            "fields",
            "a field-aware FM (--model ffm) needs its fields: --fields with the namespace "
            "letters of each, e.g. --fields u,i,c (one field per namespace: --fields uic)",
        )
    if spec.fields and config.model != "ffm":
        raise ConfigError("fields", f"are for --model ffm, not {config.model}")


def _sigmoid(m: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow."""
    return np.exp(-np.logaddexp(0.0, -m))
