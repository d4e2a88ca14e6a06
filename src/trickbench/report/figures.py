"""Seaborn figures; every function takes data and returns a matplotlib Figure (the caller saves it)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


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
    sns.stripplot(frame, x=x, y=metric, hue=hue, ax=axis, dodge=hue is not None, color="black", size=3,
                  legend=False)
    axis.set_title(title)
    axis.set_ylabel(metric.replace("_", " "))
    axis.tick_params(axis="x", rotation=20)
    figure.tight_layout()
    return figure
