"""Every figure function renders from a small fixture (and copes with the awkward cases: diverged runs,
zero-std initialisations, no ensembles)."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from trickbench.report import figures


def render(figure) -> int:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=40)
    figures.plt.close(figure)
    return len(buffer.getvalue())


@pytest.fixture
def curves() -> pd.DataFrame:
    rows = []
    for activation in ("relu", "prelu"):
        for lr in (0.001, 0.1, 10.0):
            for seed in (0, 1):
                for epoch in range(1, 6):
                    loss = math.inf if lr == 10.0 and epoch > 3 else 2.3 * math.exp(-epoch * lr * 5) + 0.1 * seed
                    rows.append({"epoch": epoch, "activation": activation, "lr": lr, "seed": seed,
                                 "point_id": f"{activation}-{lr}-{seed}", "train_loss": loss,
                                 "train_error": 0.5 / epoch, "val_loss": loss, "val_error": 0.6 / epoch})
    return pd.DataFrame(rows)


def test_study_curves_and_comparison(curves):
    assert render(figures.study_curves_figure(curves, "val_error", "activation", "t")) > 0
    frame = pd.DataFrame({"activation": ["relu", "relu", "prelu"], "initializer": ["a", "b", "a"],
                          "test_error": [0.1, 0.2, 0.15]})
    assert render(figures.comparison_figure(frame, "test_error", "activation", "initializer", "t")) > 0
    assert render(figures.comparison_figure(frame, "test_error", "activation", None, "t")) > 0


def test_lr_curves_one_line_per_rate_with_a_diverged_rate(curves):
    figure = figures.lr_curves_figure(curves, "train_loss", "lr")
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["0.001", "0.1", "10.0"]  # numeric order
    assert any("diverged" in text.get_text() for text in figure.axes[0].texts)
    assert render(figure) > 0


def test_batch_loss_with_rolling_band():
    steps = np.arange(200)
    batches = pd.DataFrame({"step": np.concatenate([steps, steps]),
                            "loss": np.concatenate([2 * np.exp(-steps / 50) + 0.1 * np.random.default_rng(0).random(200),
                                                    np.full(200, 2.3)]),
                            "lr": ["0.01"] * 200 + ["1.0"] * 200})
    figure = figures.batch_loss_figure(batches, "lr", window=20, title="t")
    assert len([a for a in figure.axes if a.get_visible()]) == 2
    assert len(figure.axes[0].collections) >= 2  # the std band and the min-max band
    assert render(figure) > 0
    assert render(figures.batch_loss_figure(batches.iloc[:0], "lr", window=20)) > 0


def test_accuracy_gap(curves):
    figure = figures.accuracy_gap_figure(curves, "activation", "t")
    assert len(figure.axes) == 2
    assert render(figure) > 0


def test_heatmap_marks_diverged_cells():
    frame = pd.DataFrame({"initializer": ["zeros", "zeros", "he", "he"], "activation": ["relu", "tanh", "relu", "tanh"],
                          "status": ["completed", "completed", "completed", "diverged"],
                          "test_error": [0.9, 0.9, 0.1, math.nan]})
    figure = figures.heatmap_figure(frame, "initializer", "activation", "test_error")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert "diverged" in texts and "0.100" in texts
    assert render(figure) > 0


def test_dead_units_and_init_std():
    dead = pd.DataFrame({"layer": ["l1", "l2"] * 2, "dead_fraction": [0.1, 0.3, 0.0, 0.05],
                         "activation": ["relu", "relu", "prelu", "prelu"]})
    assert render(figures.dead_units_figure(dead, "activation")) > 0
    assert render(figures.dead_units_figure(dead.iloc[:0], "activation")) > 0
    stats = pd.DataFrame({"layer_index": [0, 1, 0, 1, 0, 1, 0, 1], "std": [1.0, 0.9, 0.0, 0.0, 0.01, 1e-4, 1.0, 1.0],
                          "initializer": ["he", "he", "zeros", "zeros", "small", "small", "he", "he"],
                          "activation": ["relu"] * 6 + ["tanh"] * 2})
    assert render(figures.init_std_figure(stats, "initializer", "activation")) > 0
    assert render(figures.init_std_figure(stats, "initializer", None)) > 0
    assert render(figures.init_std_figure(stats.iloc[:0], "initializer", None)) > 0


def test_ensemble_gains():
    rows = pd.DataFrame({"kind": ["best_single", "top_k", "seeds", "seeds", "snapshot"],
                         "gain_test_error": [0.0, 0.01, 0.02, -0.01, 0.0],
                         "gain_test_loss": [0.0, 0.05, 0.04, 0.01, 0.01],
                         "gain_over_best_member_test_error": [0.0, 0.01, 0.03, 0.01, 0.0],
                         "gain_over_best_member_test_loss": [0.0, 0.05, 0.06, 0.02, 0.01]})
    figure = figures.ensemble_gains_figure(rows, "t")
    assert len(figure.axes) == 2
    assert render(figure) > 0
    assert render(figures.ensemble_gains_figure(rows.iloc[:1], "t")) > 0  # only the best single model
