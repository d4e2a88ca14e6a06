"""Tables from one tidy DataFrame of runs: mean ± std over seeds, as Markdown, LaTeX and CSV."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

METRIC_LABELS = {
    "train_error": "train error", "val_error": "val error", "test_error": "test error",
    "train_loss": "train loss", "val_loss": "val loss", "test_loss": "test loss",
}


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: study, point id, status, every axis value (as text) and every final metric."""
    rows = []
    for record in records:
        row = {"study": record["study"], "point_id": record["point_id"], "status": record["status"]}
        row.update({key: _label(value) for key, value in record["axes"].items()})
        row.update({key: record.get(key, math.nan) for key in METRIC_LABELS})
        row["epochs_run"] = record.get("epochs_run", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _label(value: Any) -> Any:
    if isinstance(value, list):
        return "+".join(map(str, value)) if value else "none"
    return value


def summary_table(frame: pd.DataFrame, group_keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Per group: mean, std (ddof=1; NaN for one seed) and n of each metric over completed runs."""
    done = frame[frame["status"] == "completed"]
    if not group_keys:
        done = done.assign(all="all")
        group_keys = ["all"]
    grouped = done.groupby(group_keys, sort=False, dropna=False)[metrics]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.reset_index()


def mean_std_text(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "—"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_table(summary: pd.DataFrame, group_keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Human-readable cells: one 'mean ± std' column per metric plus the number of seeds."""
    shown = summary[group_keys].copy() if group_keys else pd.DataFrame(index=summary.index)
    for metric in metrics:
        shown[METRIC_LABELS.get(metric, metric)] = [
            mean_std_text(m, s) for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"])]
    shown["n"] = summary[f"{metrics[0]}_count"].astype(int)
    return shown


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table without the optional `tabulate` dependency."""
    columns = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in table.columns) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, caption: str) -> str:
    escaped = table.map(lambda v: str(v).replace("±", r"$\pm$").replace("_", r"\_").replace("—", "--"))
    escaped.columns = [str(c).replace("_", r"\_") for c in table.columns]
    body = escaped.to_latex(index=False, escape=False)
    return f"% {caption}\n{body}"
