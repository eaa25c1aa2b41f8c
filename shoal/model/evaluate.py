"""Evaluate a model on batches: the metrics that fit its loss."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from shoal.data.batch import Batch
from shoal.errors import ShoalError
from shoal.model import metrics
from shoal.model.model import Model


def evaluate(model: Model, batches: Iterable[Batch]) -> dict[str, float]:
    """Metrics over every labeled row: log loss, AUC and accuracy for logistic; accuracy and AUC
    for hinge; RMSE for squared; accuracy and log loss for multiclass. Also ``examples``."""
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch in batches:
        model.check_labels(batch)
        keep = ~np.isnan(batch.labels)
        if model.config.loss in ("logistic", "multiclass"):
            out = model.predict_proba(batch)
        else:
            out = model.decision_function(batch)
        scores.append(out[keep])
        labels.append(batch.labels[keep])
    if not labels or sum(len(y) for y in labels) == 0:
        raise ShoalError("no labeled examples to evaluate on")
    s = np.concatenate(scores)
    y = np.concatenate(labels)
    loss = model.config.loss
    result: dict[str, float] = {"examples": float(len(y))}
    if loss == "logistic":
        result["log_loss"] = metrics.log_loss(s, y)
        result["auc"] = metrics.auc(s, y)
        result["accuracy"] = metrics.accuracy(s > 0.5, y > 0)
    elif loss == "hinge":
        result["accuracy"] = metrics.accuracy(s > 0, y > 0)
        result["auc"] = metrics.auc(s, y)
    elif loss == "squared":
        result["rmse"] = metrics.rmse(s, y)
    else:
        result["accuracy"] = metrics.accuracy(np.argmax(s, axis=1) + 1, y)
        result["log_loss"] = metrics.multiclass_log_loss(s, y)
    return result
