"""The seed §7 diagnosis rules on crafted curves."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trickbench.report.diagnosis import Thresholds, diagnose, diagnosis_frame, diagnosis_markdown

LN10 = math.log(10)
EPOCHS = np.arange(1, 21)


def history(train_loss, val_loss=None) -> pd.DataFrame:
    train_loss = list(train_loss)
    return pd.DataFrame({"epoch": np.arange(1, len(train_loss) + 1), "train_loss": train_loss,
                         "val_loss": list(val_loss) if val_loss is not None else train_loss})


def final(train_error=0.05, val_error=0.08, status="completed") -> dict:
    return {"status": status, "train_error": train_error, "val_error": val_error}


HEALTHY = 0.2 + 2.0 * np.exp(-EPOCHS / 3.0)


def test_healthy_curve_is_ok():
    result = diagnose(history(HEALTHY), final(), Thresholds(), num_classes=10)
    assert result.verdicts == ["ok"]
    assert result.evidence["drop"] > 0.8 and result.evidence["late_over_early"] < 0.2


def test_rising_loss_means_learning_rate_too_high():
    rising = np.concatenate([HEALTHY[:8], HEALTHY[7] + 0.08 * np.arange(1, 13)])  # falls, then climbs
    result = diagnose(history(rising), final(train_error=0.2, val_error=0.25), Thresholds(), num_classes=10)
    assert "lr_too_high" in result.verdicts
    assert result.evidence["rise"] > 0.1


def test_stalled_loss_near_chance_means_learning_rate_too_high():
    noise = np.random.default_rng(0).normal(0, 0.02, size=20)
    result = diagnose(history(LN10 + 0.05 + noise), final(train_error=0.9, val_error=0.9), Thresholds(), num_classes=10)
    assert result.verdicts[0] == "lr_too_high"
    assert "underfitting" in result.verdicts  # and nothing was learnt


def test_slow_linear_decline_means_learning_rate_too_low():
    linear = LN10 - 0.03 * EPOCHS  # 2.30 -> 1.70, a straight line
    result = diagnose(history(linear), final(train_error=0.55, val_error=0.57), Thresholds(), num_classes=10)
    assert result.verdicts[0] == "lr_too_low"
    assert result.evidence["late_over_early"] == pytest.approx(1.0, abs=0.15)
    assert result.evidence["steady"] == 1.0


def test_a_steady_crawl_that_removes_little_means_learning_rate_too_low():
    """lr 1e-4 in seed-learning-rates: the loss falls every epoch but decelerates (late/early ≈ 0.2) and removes
    7 % of ln C in 20 epochs; a stall that bounces is a too-high rate, one that falls every epoch a too-low one."""
    crawl = LN10 - 0.05 - 0.12 * (1 - np.exp(-EPOCHS / 6.0))
    result = diagnose(history(crawl), final(train_error=0.76, val_error=0.76), Thresholds(), num_classes=10)
    assert result.evidence["drop"] < 0.10 and result.evidence["steady"] == 1.0
    assert result.evidence["late_over_early"] < 0.6  # not a straight line
    assert result.verdicts[0] == "lr_too_low" and "crawled" in result.notes[0]


def test_large_gap_means_overfitting():
    val = 0.6 + 0.3 * np.exp(-EPOCHS / 3.0) + 0.02 * np.maximum(0, EPOCHS - 8)  # falls, then rises
    result = diagnose(history(HEALTHY, val), final(train_error=0.01, val_error=0.25), Thresholds(), num_classes=10)
    assert "overfitting" in result.verdicts and "lr_too_high" not in result.verdicts
    assert result.evidence["gap"] == pytest.approx(0.24)


def test_high_training_error_without_gap_means_underfitting():
    slow = 1.2 + 1.1 * np.exp(-EPOCHS / 3.0)
    result = diagnose(history(slow), final(train_error=0.42, val_error=0.44), Thresholds(), num_classes=10)
    assert result.verdicts == ["underfitting"]


def test_diverged_run():
    losses = list(HEALTHY[:5]) + [math.inf, math.nan]
    result = diagnose(history(losses), final(status="diverged", train_error=math.nan), Thresholds())
    assert result.verdicts == ["diverged"]


def test_thresholds_are_parameters_and_short_runs_skip_the_shape_rules():
    linear = LN10 - 0.03 * EPOCHS
    strict = Thresholds.from_params({"lr_low_max_drop": 0.1, "unknown_key_is_ignored": 1})
    assert diagnose(history(linear), final(), strict, num_classes=10).verdicts == ["ok"]
    short = diagnose(history(linear[:2]), final(), Thresholds(), num_classes=10)
    assert short.verdicts == ["ok"] and "min_epochs" in short.notes[0]


def test_batch_width_is_evidence_and_optionally_a_flag():
    batches = pd.DataFrame({"epoch": np.repeat([0, 1], 50), "batch": np.tile(np.arange(50), 2),
                            "loss": np.concatenate([np.full(50, 2.3), 0.5 + 0.4 * np.sin(np.arange(50))])})
    quiet = diagnose(history(HEALTHY), final(), Thresholds(), batches, num_classes=10)
    assert "batch_cv" in quiet.evidence and "noisy_batches" not in quiet.verdicts
    noisy = diagnose(history(HEALTHY), final(), Thresholds(noisy_batch_cv=0.3), batches, num_classes=10)
    assert "noisy_batches" in noisy.verdicts


def test_markdown_and_csv_carry_verdicts_and_evidence():
    rows = [{"point_id": "lr-0.001", "status": "completed",
             "diagnosis": diagnose(history(LN10 - 0.03 * EPOCHS), final(0.5, 0.52), Thresholds(), num_classes=10)},
            {"point_id": "lr-10", "status": "diverged",
             "diagnosis": diagnose(history([2.3, math.inf]), final(status="diverged"), Thresholds())}]
    text = diagnosis_markdown("lrs", rows, Thresholds())
    assert "`lr-0.001`: **lr_too_low" in text and "late/early 1.0" in text and "`lr-10`: **diverged**" in text
    frame = diagnosis_frame(rows)
    assert list(frame["verdict"]) == ["lr_too_low, underfitting", "diverged"]
    assert frame.loc[0, "steady"] == 1.0
