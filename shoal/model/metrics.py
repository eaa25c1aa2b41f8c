"""Evaluation metrics on predictions and labels (binary labels may be -1/+1 or 0/1)."""

from __future__ import annotations

import numpy as np


def _positive(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels) > 0


def log_loss(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of binary labels under predicted probabilities.

    >>> round(log_loss(np.array([0.9, 0.2]), np.array([1, -1])), 4)
    0.1643
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-15, 1 - 1e-15)
    y = _positive(labels)
    ll = -np.where(y, np.log(p), np.log1p(-p))
    return float(np.average(ll, weights=weights))


def multiclass_log_loss(probs: np.ndarray, classes: np.ndarray) -> float:
    """Mean negative log-probability of the true classes (1..K) under (n, K) probabilities."""
    idx = np.asarray(classes, dtype=np.int64) - 1
    p = np.clip(probs[np.arange(len(idx)), idx], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), by the rank-sum formula.

    >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    y = _positive(labels)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Share of predictions equal to the truth."""
    return float(np.mean(np.asarray(predicted) == np.asarray(truth)))


def rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d)))
