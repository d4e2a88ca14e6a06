"""The metrics every table reports, defined once (numpy, on softmax probabilities)."""
from __future__ import annotations

import math

import numpy as np

CLIP = 1e-15  # Kaggle NDSB convention


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class log loss: natural log, rows normalised, probabilities clipped to [1e-15, 1 - 1e-15]."""
    if len(labels) == 0:
        return math.nan
    clipped = np.clip(probs.astype(np.float64), CLIP, 1 - CLIP)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(clipped[np.arange(len(labels)), labels])))


def mean_class_recall(probs: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the classes present in `labels` of the fraction of their images predicted as their
    class (balanced accuracy): every class weighs the same, however rare, unlike the error rate."""
    if len(labels) == 0:
        return math.nan
    hit = probs.argmax(axis=1) == labels
    return float(np.mean([hit[labels == c].mean() for c in np.unique(labels)]))


def error_rate(probs: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return math.nan
    return float(np.mean(probs.argmax(axis=1) != labels))
