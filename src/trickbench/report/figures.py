"""Seaborn figures; every function takes data and returns a matplotlib Figure (the caller saves it)."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


@contextlib.contextmanager
def fixed_jitter(seed: int = 0) -> Iterator[None]:
    """seaborn's stripplot jitters dots with numpy's global RNG: seed it for the call, so the same inputs give
    the same image bytes, and restore it after, so a figure never shifts anyone else's random draws."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def learning_curve_figure(history: list[dict[str, Any]], title: str) -> plt.Figure:
    """Loss and error per epoch, training against validation, for one run."""
    frame = pd.DataFrame(history)
    figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    if not frame.empty:
        long = frame.melt(id_vars="epoch", value_vars=["train_loss", "val_loss"], var_name="split", value_name="loss")
        sns.lineplot(long, x="epoch", y="loss", hue="split", ax=loss_axis, marker="o")
        long = frame.melt(id_vars="epoch", value_vars=["train_error", "val_error"], var_name="split", value_name="error")
        sns.lineplot(long, x="epoch", y="error", hue="split", ax=error_axis, marker="o")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def study_curves_figure(curves: pd.DataFrame, metric: str, hue: str, title: str) -> plt.Figure:
    """`metric` per epoch for every run of a study, coloured by `hue`, mean with a band over the rest."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(curves, x="epoch", y=metric, hue=hue, ax=axis, errorbar=("sd", 1))
    axis.set_title(title)
    axis.set_ylabel(metric.replace("_", " "))
    figure.tight_layout()
    return figure


def comparison_figure(frame: pd.DataFrame, metric: str, x: str, hue: str | None, title: str) -> plt.Figure:
    """Final `metric` per value of `x` (mean and one std over the remaining axes and seeds), each run a dot."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    sns.barplot(frame, x=x, y=metric, hue=hue, ax=axis, errorbar=("sd", 1), alpha=0.8)
    colour = {"palette": "dark:black"} if hue is not None else {"color": "black"}
    with fixed_jitter():
        sns.stripplot(frame, x=x, y=metric, hue=hue, ax=axis, dodge=hue is not None, size=3, legend=False, **colour)
    axis.set_title(title)
    axis.set_ylabel(metric.replace("_", " "))
    axis.tick_params(axis="x", rotation=20)
    figure.tight_layout()
    return figure


def _empty(axis: plt.Axes, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, fontsize=9, color="0.4")
    axis.set_xticks([])
    axis.set_yticks([])


def _numeric_order(values: pd.Series) -> list[Any]:
    """Axis values in numeric order where they are numbers (learning rates), else first-seen order."""
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=float)
    except (TypeError, ValueError):
        return unique


def lr_curves_figure(curves: pd.DataFrame, metric: str = "train_loss", hue: str = "lr",
                     title: str = "") -> plt.Figure:
    """Seed Fig. 1: `metric` per epoch, one line per learning rate (mean over seeds and other axes, band
    = one std); log scale; runs whose loss became non-finite end where they diverged (marked ×)."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    frame = curves.copy()
    frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    finite = frame[np.isfinite(frame[metric])]
    if finite.empty:
        _empty(axis, "no finite values")
    else:
        order = _numeric_order(frame[hue])
        finite = finite.assign(**{hue: finite[hue].astype(str)})
        sns.lineplot(finite, x="epoch", y=metric, hue=hue, hue_order=[str(v) for v in order], ax=axis,
                     errorbar=("sd", 1), marker="o", markersize=3)
        diverged = frame[~np.isfinite(frame[metric])].groupby(hue)["epoch"].min()
        for value, epoch in diverged.items():
            last = finite[finite[hue] == str(value)]
            y = last[metric].iloc[-1] if len(last) else finite[metric].max()
            axis.plot([epoch], [y], marker="x", color="black", markersize=8)
            axis.annotate(f"lr {value} diverged", (epoch, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if (finite[metric] > 0).all():
            axis.set_yscale("log")
        axis.legend(title=hue, fontsize=8)
    axis.set_title(title or f"{metric.replace('_', ' ')} per epoch by {hue}")
    axis.set_ylabel(metric.replace("_", " "))
    figure.tight_layout()
    return figure


def rolling_band(loss: pd.Series, window: int, log: bool) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(centre, lower, upper) of the batch-loss band over `window` batches.

    log (all losses > 0, drawn on a log axis): the geometric mean ×/÷ the geometric std, i.e. mean ± std of
    log(loss) taken back, so the band is > 0 and symmetric on the axis it is drawn on. An arithmetic
    mean − std goes below 0 wherever the loss is noisy, and a log axis turns that into false spikes to the
    bottom. Otherwise: the arithmetic mean ± one std."""
    values = np.log(loss) if log else loss
    rolling = values.rolling(window, min_periods=1)
    mean, std = rolling.mean(), rolling.std().fillna(0.0)
    if log:
        return np.exp(mean), np.exp(mean - std), np.exp(mean + std)
    return mean, mean - std, mean + std


def batch_loss_figure(batches: pd.DataFrame, hue: str, window: int, title: str = "") -> plt.Figure:
    """Seed Fig. 2: the loss of every training batch against the step, one panel per `hue` value: raw
    losses (faint), a rolling mean over `window` batches with a band of one rolling std (the curve's
    'width'; geometric on the log axis used when every loss is > 0: `rolling_band`) and a fainter band of
    the rolling min–max. Columns: step, loss, `hue`."""
    values = list(dict.fromkeys(batches[hue])) if len(batches) else []
    columns = min(3, max(1, len(values)))
    rows = max(1, math.ceil(len(values) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False,
                                sharey=True)
    palette = sns.color_palette(n_colors=max(1, len(values)))
    for index, axis in enumerate(axes.flat):
        if index >= len(values):
            axis.set_visible(index == 0 and not values)
            if not values:
                _empty(axis, "no batch losses")
            continue
        part = batches[batches[hue] == values[index]].sort_values("step")
        loss = pd.to_numeric(part["loss"], errors="coerce").where(lambda s: np.isfinite(s))
        finite = loss.dropna()
        log = bool(len(finite)) and bool((finite > 0).all())
        centre, lower, upper = rolling_band(loss, window, log)
        rolling = loss.rolling(window, min_periods=1)
        color = palette[index]
        axis.plot(part["step"], loss, color=color, alpha=0.2, linewidth=0.5)
        axis.fill_between(part["step"], rolling.min(), rolling.max(), color=color, alpha=0.12, linewidth=0,
                          label="rolling min–max")
        axis.fill_between(part["step"], lower, upper, color=color, alpha=0.3, linewidth=0,
                          label="×/÷ rolling geometric std" if log else "± rolling std")
        sns.lineplot(x=part["step"].to_numpy(), y=centre.to_numpy(), ax=axis, color=color, linewidth=1.2,
                     label=f"rolling {'geometric ' if log else ''}mean ({window})")
        axis.set_title(f"{hue} = {values[index]}", fontsize=9)
        axis.set_xlabel("batch")
        axis.set_ylabel("batch loss")
        if log:
            axis.set_yscale("log")
        axis.legend(fontsize=6, loc="upper right")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def accuracy_gap_figure(curves: pd.DataFrame, hue: str, title: str = "") -> plt.Figure:
    """Seed Fig. 3: training (solid) and validation (dashed) accuracy per epoch by `hue`, and their gap
    (train − validation accuracy); a large gap = overfitting, no gap at low accuracy = underfitting.
    The training accuracy is the running one of each epoch (dropout and augmentation on)."""
    figure, (acc_axis, gap_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    frame = curves.copy()
    frame["train"] = 1.0 - frame["train_error"]
    frame["validation"] = 1.0 - frame["val_error"]
    frame["gap"] = frame["train"] - frame["validation"]
    frame[hue] = frame[hue].astype(str)
    if frame.empty:
        _empty(acc_axis, "no curves")
        _empty(gap_axis, "no curves")
    else:
        long = frame.melt(id_vars=["epoch", hue], value_vars=["train", "validation"], var_name="split",
                          value_name="accuracy")
        sns.lineplot(long, x="epoch", y="accuracy", hue=hue, style="split", ax=acc_axis, errorbar=None)
        sns.lineplot(frame, x="epoch", y="gap", hue=hue, ax=gap_axis, errorbar=("sd", 1), legend=False)
        gap_axis.axhline(0.0, color="0.3", linewidth=0.8)
        acc_axis.legend(fontsize=7)
    acc_axis.set_title("accuracy: train (solid) vs validation (dashed)", fontsize=9)
    gap_axis.set_title("gap: train − validation accuracy", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def heatmap_figure(frame: pd.DataFrame, rows: str, columns: str, metric: str, title: str = "") -> plt.Figure:
    """Mean `metric` of completed runs for every (rows, columns) cell; cells whose runs all diverged say
    'diverged', cells with some diverged runs carry a '*'."""
    figure, axis = plt.subplots(figsize=(1.3 * max(3, frame[columns].nunique()) + 2,
                                         0.6 * max(3, frame[rows].nunique()) + 1.5))
    done = frame[frame["status"] == "completed"]
    row_order, col_order = list(dict.fromkeys(frame[rows])), list(dict.fromkeys(frame[columns]))
    means = done.pivot_table(index=rows, columns=columns, values=metric, aggfunc="mean")
    means = means.reindex(index=row_order, columns=col_order)
    failed = frame[frame["status"] != "completed"].groupby([rows, columns]).size()
    labels = means.map(lambda v: "" if math.isnan(v) else f"{v:.3f}").astype(object)
    for (r, c), _count in failed.items():
        labels.loc[r, c] = "diverged" if math.isnan(means.loc[r, c]) else labels.loc[r, c] + "*"
    sns.heatmap(means.astype(float), annot=labels.to_numpy(), fmt="", cmap="viridis_r", ax=axis,
                cbar_kws={"label": metric.replace("_", " ")}, linewidths=0.5, linecolor="white")
    for i, row_value in enumerate(means.index):  # seaborn leaves empty (NaN) cells unannotated
        for j, col_value in enumerate(means.columns):
            if math.isnan(means.loc[row_value, col_value]) and labels.loc[row_value, col_value]:
                axis.text(j + 0.5, i + 0.5, labels.loc[row_value, col_value], ha="center", va="center",
                          fontsize=9, color="0.25")
    axis.set_title(title or f"{metric.replace('_', ' ')}: {rows} × {columns}", fontsize=10)
    figure.tight_layout()
    return figure


def dead_units_figure(dead: pd.DataFrame, hue: str = "activation", title: str = "") -> plt.Figure:
    """Fraction of units never positive on the validation split after training, per activation layer
    (mean and std over runs), by `hue`. Columns: layer, dead_fraction, `hue`."""
    figure, axis = plt.subplots(figsize=(max(6.5, 0.6 * dead["layer"].nunique() + 3) if len(dead) else 6.5, 4))
    if dead.empty:
        _empty(axis, "no dead-unit records (diverged runs)")
    else:
        frame = dead.assign(**{hue: dead[hue].astype(str)})
        sns.barplot(frame, x="layer", y="dead_fraction", hue=hue, ax=axis, errorbar=("sd", 1))
        axis.tick_params(axis="x", rotation=45, labelsize=7)
        axis.set_ylim(0, max(0.05, min(1.0, frame["dead_fraction"].max() * 1.15)))
        axis.legend(fontsize=7, title=hue)
    axis.set_ylabel("dead-unit fraction")
    axis.set_title(title or f"dead units after training by {hue}", fontsize=10)
    figure.tight_layout()
    return figure


def init_std_figure(stats: pd.DataFrame, hue: str = "initializer", col: str | None = "activation",
                    title: str = "") -> plt.Figure:
    """Std of every activation layer's output at initialisation (one batch), layer by layer, one line per
    `hue` value, a panel per `col` value; log scale (zeros and tiny initialisations collapse to 0).
    Columns: layer_index, std, `hue` (and `col`)."""
    frame = stats.copy()
    if frame.empty:
        figure, axis = plt.subplots(figsize=(6.5, 4))
        _empty(axis, "no initialisation statistics")
        return figure
    frame[hue] = frame[hue].astype(str)
    floor = 1e-8  # zeros give std 0: show them at the floor of the log axis
    frame["std_shown"] = frame["std"].clip(lower=floor)
    kwargs: dict[str, Any] = {}
    if col is not None and col in frame and frame[col].nunique() > 1:
        kwargs = {"col": col, "col_wrap": min(3, frame[col].nunique())}
    grid = sns.relplot(frame, x="layer_index", y="std_shown", hue=hue, kind="line", marker="o",
                       errorbar=None, height=3.2, aspect=1.2, facet_kws={"sharey": True}, **kwargs)
    for axis in grid.axes.flat:
        axis.set_yscale("log")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_xlabel("activation layer (input → output)")
        axis.set_ylabel("output std at init")
        axis.axhline(1.0, color="0.5", linewidth=0.6, linestyle=":")
    grid.figure.suptitle(title or "activation std per layer at initialisation", fontsize=10)
    grid.figure.tight_layout()
    return grid.figure


def ensemble_gains_figure(rows: pd.DataFrame, title: str = "") -> plt.Figure:
    """Gain of every ensemble on test error and test log-loss (positive = the ensemble is better), over the
    study's best single model (chosen on validation) and over the ensemble's own best member. One bar per
    ensemble kind and reference (mean over its ensembles), dots for the individual ensembles. Columns:
    kind, gain_test_error, gain_test_loss, gain_over_best_member_test_error, gain_over_best_member_test_loss."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    frame = rows[rows["kind"] != "best_single"] if len(rows) else rows
    references = {"gain_test_{}": "over the best single model", "gain_over_best_member_test_{}": "over its best member"}
    for axis, metric in zip(axes, ["error", "loss"]):
        long = pd.concat([pd.DataFrame({"kind": frame["kind"], "gain": frame[column.format(metric)], "reference": name})
                          for column, name in references.items() if column.format(metric) in frame],
                         ignore_index=True) if len(frame) else pd.DataFrame(columns=["kind", "gain", "reference"])
        long = long.dropna(subset=["gain"])
        if long.empty:
            _empty(axis, "no ensembles")
        else:
            sns.barplot(long, x="kind", y="gain", hue="reference", ax=axis, errorbar=None, alpha=0.8)
            with fixed_jitter():
                sns.stripplot(long, x="kind", y="gain", hue="reference", dodge=True, ax=axis, palette="dark:black",
                              size=4, legend=False)
            axis.axhline(0.0, color="0.3", linewidth=0.8)
            axis.legend(fontsize=7, title=None)
        axis.set_ylabel(f"gain in test {metric}")
        axis.set_xlabel("ensemble")
        axis.set_title(f"test {metric}: reference − ensemble", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
