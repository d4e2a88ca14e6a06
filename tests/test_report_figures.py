"""Every figure function draws what its input frame holds: the axes' labels, the categories in order, and the
plotted values (line y data, bar heights, heatmap cells) against the frame, also in the awkward cases
(diverged runs, zero-std initialisations, no ensembles); and the same inputs give the same image bytes."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from trickbench.report import figures


def close(figure) -> None:
    figures.plt.close(figure)


def tick_labels(axis, which: str = "x") -> list[str]:
    ticks = axis.get_xticklabels() if which == "x" else axis.get_yticklabels()
    return [t.get_text() for t in ticks]


def bar_heights(axis) -> list[float]:
    """Heights of the bars drawn, hue level by hue level (ax.patches also holds the legend's swatches)."""
    return [bar.get_height() for container in axis.containers for bar in container]


def texts(axis) -> list[str]:
    return [t.get_text() for t in axis.texts]


@pytest.fixture
def curves() -> pd.DataFrame:
    rows = []
    for activation in ("relu", "prelu"):
        for lr in (0.001, 0.1, 10.0):
            for seed in (0, 1):
                for epoch in range(1, 6):
                    loss = math.inf if lr == 10.0 and epoch > 3 else 2.3 * math.exp(-epoch * lr * 5) + 0.1 * seed
                    worse = 0.1 if activation == "prelu" else 0.0
                    rows.append({"epoch": epoch, "activation": activation, "lr": lr, "seed": seed,
                                 "point_id": f"{activation}-{lr}-{seed}", "train_loss": loss,
                                 "train_error": 0.5 / epoch + 0.01 * seed, "val_loss": loss,
                                 "val_error": 0.6 / epoch + worse})
    return pd.DataFrame(rows)


def test_study_curves_draw_the_mean_per_epoch_of_each_hue_value(curves):
    figure = figures.study_curves_figure(curves, "val_error", "activation", "acts: val error per epoch")
    axis = figure.axes[0]
    assert (axis.get_xlabel(), axis.get_ylabel(), axis.get_title()) == ("epoch", "val error", "acts: val error per epoch")
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["relu", "prelu"]
    expected = curves.groupby(["activation", "epoch"])["val_error"].mean()
    for line, activation in zip(axis.lines, ["relu", "prelu"]):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_allclose(line.get_ydata(), expected[activation].to_numpy())
    close(figure)


COMPARED = pd.DataFrame({"activation": ["relu", "relu", "prelu", "prelu"], "initializer": ["a", "b", "a", "b"],
                         "test_error": [0.1, 0.2, 0.15, 0.35]})


def test_comparison_bars_are_the_means_and_the_dots_every_run():
    figure = figures.comparison_figure(COMPARED, "test_error", "activation", None, "acts: test error by activation")
    axis = figure.axes[0]
    assert tick_labels(axis) == ["relu", "prelu"] and axis.get_ylabel() == "test error"
    assert bar_heights(axis) == pytest.approx([0.15, 0.25])
    dots = np.concatenate([c.get_offsets()[:, 1] for c in axis.collections])
    assert sorted(dots) == pytest.approx(sorted(COMPARED["test_error"]))
    close(figure)
    by_initializer = figures.comparison_figure(COMPARED, "test_error", "activation", "initializer", "t")
    assert bar_heights(by_initializer.axes[0]) == pytest.approx([0.1, 0.15, 0.2, 0.35])  # per initializer, per x
    close(by_initializer)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=40)
    close(figure)
    return buffer.getvalue()


def test_jittered_dots_give_the_same_bytes_and_leave_the_global_rng_alone():
    rows = pd.DataFrame({"kind": ["top_k", "seeds", "seeds"], "gain_test_error": [0.01, 0.02, -0.01],
                         "gain_test_loss": [0.05, 0.04, 0.01], "gain_over_best_member_test_error": [0.01, 0.03, 0.01],
                         "gain_over_best_member_test_loss": [0.05, 0.06, 0.02]})
    np.random.seed(123)
    expected_next = np.random.get_state()[1].copy()
    first = png(figures.comparison_figure(COMPARED, "test_error", "activation", None, "t"))
    np.testing.assert_array_equal(np.random.get_state()[1], expected_next)  # the caller's draws are not shifted
    assert png(figures.comparison_figure(COMPARED, "test_error", "activation", None, "t")) == first
    assert png(figures.ensemble_gains_figure(rows, "t")) == png(figures.ensemble_gains_figure(rows, "t"))


def test_lr_curves_one_line_per_rate_ending_where_a_rate_diverged(curves):
    figure = figures.lr_curves_figure(curves, "train_loss", "lr")
    axis = figure.axes[0]
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["0.001", "0.1", "10.0"]  # numeric order
    assert axis.get_yscale() == "log" and axis.get_ylabel() == "train loss"
    finite = curves[np.isfinite(curves["train_loss"])]
    expected = finite.groupby(["lr", "epoch"])["train_loss"].mean()
    for line, lr in zip(axis.lines, [0.001, 0.1, 10.0]):
        np.testing.assert_allclose(line.get_ydata(), expected[lr].to_numpy())
    assert len(axis.lines[2].get_xdata()) == 3  # lr 10 ends after epoch 3
    (cross,) = [line for line in axis.lines if line.get_marker() == "x"]
    assert list(cross.get_xdata()) == [4]  # the first non-finite epoch
    assert texts(axis) == ["lr 10.0 diverged"]
    close(figure)


def test_batch_loss_one_panel_per_value_with_every_raw_loss():
    steps = np.arange(200)
    falling = 2 * np.exp(-steps / 50) + 0.1 * np.random.default_rng(0).random(200)
    batches = pd.DataFrame({"step": np.concatenate([steps, steps]), "loss": np.concatenate([falling, np.full(200, 2.3)]),
                            "lr": ["0.01"] * 200 + ["1.0"] * 200})
    figure = figures.batch_loss_figure(batches, "lr", window=20, title="t")
    shown = [a for a in figure.axes if a.get_visible()]
    assert [a.get_title() for a in shown] == ["lr = 0.01", "lr = 1.0"]
    assert {(a.get_xlabel(), a.get_ylabel()) for a in shown} == {("batch", "batch loss")}
    np.testing.assert_allclose(shown[0].lines[0].get_ydata(), falling)  # the raw losses, first
    bands = {c.get_label() for c in shown[0].collections}
    assert {"rolling min–max", "×/÷ rolling geometric std"} <= bands  # the std band (geometric: log axis) and min-max
    close(figure)
    empty = figures.batch_loss_figure(batches.iloc[:0], "lr", window=20)
    assert [texts(a) for a in empty.axes if a.get_visible()] == [["no batch losses"]]
    close(empty)


def test_accuracy_gap_is_train_minus_validation_accuracy(curves):
    figure = figures.accuracy_gap_figure(curves, "activation", "t")
    acc_axis, gap_axis = figure.axes
    gap = curves.assign(gap=curves["val_error"] - curves["train_error"]).groupby(["activation", "epoch"])["gap"].mean()
    for line, activation in zip(gap_axis.lines, ["relu", "prelu"]):
        np.testing.assert_allclose(line.get_ydata(), gap[activation].to_numpy())
    assert list(gap_axis.lines[-1].get_ydata()) == [0.0, 0.0]  # the zero line
    assert acc_axis.get_ylabel() == "accuracy" and gap_axis.get_ylabel() == "gap"
    close(figure)


def test_heatmap_cells_are_the_means_and_diverged_cells_say_so():
    frame = pd.DataFrame({"initializer": ["zeros", "zeros", "he", "he", "he"],
                          "activation": ["relu", "tanh", "relu", "tanh", "relu"],
                          "status": ["completed", "completed", "completed", "diverged", "completed"],
                          "test_error": [0.9, 0.9, 0.1, math.nan, 0.2]})
    figure = figures.heatmap_figure(frame, "initializer", "activation", "test_error")
    axis = figure.axes[0]
    assert tick_labels(axis, "y") == ["zeros", "he"] and tick_labels(axis) == ["relu", "tanh"]
    cells = axis.collections[0].get_array().ravel()
    assert list(cells.filled(np.nan)[:3]) == pytest.approx([0.9, 0.9, 0.15]) and cells.mask[3]
    assert set(texts(axis)) == {"0.900", "0.150", "diverged"}
    close(figure)


def test_dead_units_bars_per_layer_and_activation():
    dead = pd.DataFrame({"layer": ["l1", "l2"] * 4, "dead_fraction": [0.1, 0.3, 0.2, 0.5, 0.0, 0.05, 0.0, 0.05],
                         "activation": ["relu"] * 4 + ["prelu"] * 4})
    figure = figures.dead_units_figure(dead, "activation")
    axis = figure.axes[0]
    assert tick_labels(axis) == ["l1", "l2"] and axis.get_ylabel() == "dead-unit fraction"
    assert bar_heights(axis) == pytest.approx([0.15, 0.4, 0.0, 0.05])  # relu l1, l2; prelu l1, l2
    close(figure)
    empty = figures.dead_units_figure(dead.iloc[:0], "activation")
    assert texts(empty.axes[0]) == ["no dead-unit records (diverged runs)"]
    close(empty)


def test_init_std_one_panel_per_activation_zeros_at_the_log_floor():
    stats = pd.DataFrame({"layer_index": [0, 1, 0, 1, 0, 1, 0, 1], "std": [1.0, 0.9, 0.0, 0.0, 0.01, 1e-4, 1.0, 1.0],
                          "initializer": ["he", "he", "zeros", "zeros", "small", "small", "he", "he"],
                          "activation": ["relu"] * 6 + ["tanh"] * 2})
    figure = figures.init_std_figure(stats, "initializer", "activation")
    relu, tanh = figure.axes[:2]
    assert relu.get_yscale() == "log" and relu.get_ylabel() == "output std at init"
    assert [list(line.get_ydata()) for line in relu.lines[:3]] == [[1.0, 0.9], [1e-8, 1e-8], [0.01, 1e-4]]
    assert [list(line.get_ydata()) for line in tanh.lines if len(line.get_ydata()) == 2] == [[1.0, 1.0], [1.0, 1.0]]
    close(figure)  # tanh: the he line and the dotted reference at std 1
    single = figures.init_std_figure(stats, "initializer", None)
    assert len(single.axes) == 1
    close(single)
    empty = figures.init_std_figure(stats.iloc[:0], "initializer", None)
    assert texts(empty.axes[0]) == ["no initialisation statistics"]
    close(empty)


def test_ensemble_gains_bars_per_kind_and_reference_without_the_best_single():
    rows = pd.DataFrame({"kind": ["best_single", "top_k", "seeds", "seeds", "snapshot"],
                         "gain_test_error": [0.0, 0.01, 0.02, -0.01, 0.0],
                         "gain_test_loss": [0.0, 0.05, 0.04, 0.01, 0.01],
                         "gain_over_best_member_test_error": [0.0, 0.01, 0.03, 0.01, 0.0],
                         "gain_over_best_member_test_loss": [0.0, 0.05, 0.06, 0.02, 0.01]})
    figure = figures.ensemble_gains_figure(rows, "t")
    error_axis, loss_axis = figure.axes
    assert tick_labels(error_axis) == ["top_k", "seeds", "snapshot"]
    assert (error_axis.get_ylabel(), loss_axis.get_ylabel()) == ("gain in test error", "gain in test loss")
    # over the best single model, then over the ensemble's own best member; seeds: the mean of its two ensembles
    assert bar_heights(error_axis) == pytest.approx([0.01, 0.005, 0.0, 0.01, 0.02, 0.0])
    assert bar_heights(loss_axis) == pytest.approx([0.05, 0.025, 0.01, 0.05, 0.04, 0.01])
    close(figure)
    only_best = figures.ensemble_gains_figure(rows.iloc[:1], "t")
    assert [texts(a) for a in only_best.axes] == [["no ensembles"], ["no ensembles"]]
    close(only_best)
