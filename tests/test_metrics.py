"""The metrics every table reports: log loss, error rate and mean per-class recall, on hand-made outputs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trickbench.metrics import error_rate, log_loss, mean_class_recall


def one_hot(predicted: list[int], classes: int = 3) -> np.ndarray:
    return np.eye(classes)[predicted]


def test_mean_class_recall_weighs_every_class_the_same():
    # 8 images of class 0, 2 of class 1: always answering 0 is 80 % accurate but finds no class-1 image
    labels = np.array([0] * 8 + [1] * 2)
    always_zero = one_hot([0] * 10, 2)
    assert error_rate(always_zero, labels) == pytest.approx(0.2)
    assert mean_class_recall(always_zero, labels) == pytest.approx((1.0 + 0.0) / 2)
    # finding one class-1 image at the cost of two class-0 ones: more errors, a higher mean recall
    trade = one_hot([0] * 6 + [1, 1] + [1, 0], 2)
    assert error_rate(trade, labels) == pytest.approx(0.3)
    assert mean_class_recall(trade, labels) == pytest.approx((6 / 8 + 1 / 2) / 2)


def test_mean_class_recall_counts_only_the_classes_present():
    labels = np.array([0, 0, 2])  # class 1 has no image: it is not a class of zero recall
    assert mean_class_recall(one_hot([0, 1, 2]), labels) == pytest.approx((0.5 + 1.0) / 2)
    assert math.isnan(mean_class_recall(one_hot([]).reshape(0, 3), np.array([], dtype=int)))


def test_log_loss_is_the_clipped_mean_negative_log_probability():
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert log_loss(probs, np.array([0, 2])) == pytest.approx(-(math.log(0.5) + math.log(1 - 1e-15)) / 2)
    assert log_loss(probs, np.array([2, 2])) == pytest.approx(-(math.log(1e-15 / (1 + 1e-15)) + 0) / 2, rel=1e-6)
