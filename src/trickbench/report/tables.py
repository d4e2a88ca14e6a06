"""Tables from one tidy DataFrame of runs: mean ± std over seeds, as Markdown, LaTeX, HTML and CSV.

`paper_table` lays a study out like Xu et al.'s Tables 3-5: per activation the training and held-out
metric as mean ± std over seeds, the paper's value and our difference from it, and whether each
activation differs from the baseline (ReLU) by a paired t-test over seeds (scipy.stats.ttest_rel; runs
are paired on every other axis value, i.e. the same seed), with an optional Holm correction over the
activations compared.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from trickbench.provenance import KEYS as PROVENANCE_KEYS
from trickbench.registry import Registry
from trickbench.stats import holm as stats_holm
from trickbench.report.paper import ACTIVATION_ORDER, ReferenceTable

METRIC_LABELS = {
    "train_error": "train error", "val_error": "val error", "test_error": "test error",
    "train_loss": "train loss", "val_loss": "val loss", "test_loss": "test loss",
    # the last epoch's running values (training mode: dropout, augmentation, RReLU noise on), from history.csv
    "train_error_running": "train error (running)", "train_loss_running": "train loss (running)",
    # from the run's test predictions (predictions.npz): the minority classes weigh as much as the others
    "test_mean_recall": "test mean per-class recall",
    # max-norm runs only (metrics.json): units the constraint rescaled over the run, the premise that it binds
    "max_norm_rescalings": "units rescaled by max-norm",
}


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: study, point id, status, every axis value (as text) and every final metric."""
    rows = []
    for record in records:
        row = {"study": record["study"], "point_id": record["point_id"], "status": record["status"]}
        row.update({key: label(value) for key, value in record["axes"].items()})
        row.update({key: record.get(key, math.nan) for key in METRIC_LABELS})
        row["epochs_run"] = record.get("epochs_run", math.nan)
        row.update({key: (record.get("provenance") or {}).get(key, "") for key in PROVENANCE_KEYS})
        rows.append(row)
    return pd.DataFrame(rows)


def label(value: Any) -> Any:
    """An axis value as a table cell: a list (regularizers, augmentations) joined by +, empty as none."""
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


HTML_STYLE = ("body{font-family:system-ui,sans-serif;font-size:14px;margin:1em}"
              "table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #ddd;"
              "text-align:right;white-space:nowrap}th{background:#f2f2f2}"
              "td:first-child,th:first-child{text-align:left}p{max-width:60em}")


def _html_cell(value: Any) -> str:
    """Six significant digits (the CSV keeps every digit); a missing value shows as — as in the Markdown."""
    if isinstance(value, (float, np.floating)):
        return "—" if math.isnan(value) else f"{value:.6g}"
    if value is None or value is pd.NA:
        return "—"
    return str(value)


def to_html(table: pd.DataFrame, caption: str, footer: str = "") -> str:
    """A standalone HTML page (the Snakemake report shows it inline): the caption, the table, every cell
    escaped, and `footer` (the Markdown's italic line of where the runs were made) under it."""
    import html

    body = table.map(_html_cell).to_html(index=False, border=0, escape=True)
    title = html.escape(caption.splitlines()[0] if caption else "table")
    under = f'\n<p class="footer"><em>{html.escape(footer.strip("_"))}</em></p>' if footer else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{HTML_STYLE}</style></head>\n<body>\n<p>{html.escape(caption)}</p>\n{body}{under}\n"
            "</body>\n</html>\n")


# ------------------------------------------------------------------------------------------ paper table

def ordered_activations(values: list[str]) -> list[str]:
    """The paper's row order first, then any other activation in first-seen order."""
    seen = list(dict.fromkeys(values))
    return [a for a in ACTIVATION_ORDER if a in seen] + [a for a in seen if a not in ACTIVATION_ORDER]


def paired_difference(frame: pd.DataFrame, metric: str, activation: str, baseline: str,
                      pair_keys: list[str]) -> tuple[int, float, float]:
    """(pairs, mean of activation − baseline, two-sided paired t-test p: trickbench.stats) over runs that
    agree on every `pair_keys` value (the seed and any other axis). Fewer than 2 pairs, or differences
    without variance: p = NaN ("n/a")."""
    from trickbench import stats

    def values(name: str) -> pd.Series:
        part = frame[(frame["activation"] == name) & frame[metric].notna()]
        if not pair_keys:
            return part[metric].reset_index(drop=True)
        return part.groupby(pair_keys, dropna=False)[metric].mean()

    ours, base = values(activation), values(baseline)
    common = ours.index.intersection(base.index)
    diffs = (ours.loc[common] - base.loc[common]).to_numpy(dtype=float)
    if len(diffs) == 0:
        return 0, math.nan, math.nan
    mean = float(diffs.mean())
    if len(diffs) < 2 or np.allclose(diffs, diffs[0], rtol=0, atol=1e-15):
        return len(diffs), mean, math.nan
    return len(diffs), mean, stats.p_two_sided(stats.summarize(diffs))


# report.paper_table.correction: fn(p-values) -> adjusted p-values; `adjusted` names the correction in the
# caption and the table (None: the raw p is the one tested, nothing to show in brackets)
CORRECTIONS = Registry("correction", extras=("adjusted",))


@CORRECTIONS.register("holm", "Holm-Bonferroni step-down over the activations compared with the baseline",
                      adjusted="Holm-adjusted")
def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (trickbench.stats.holm)."""
    return stats_holm(pvalues)


@CORRECTIONS.register("none", "no correction: each p is tested at alpha on its own", adjusted=None)
def no_correction(pvalues: list[float]) -> list[float]:
    return list(pvalues)


def paper_table(frame: pd.DataFrame, metrics: list[str], reference: ReferenceTable | None = None,
                baseline: str = "relu", alpha: float = 0.05, correction: str = "holm") -> pd.DataFrame:
    """One row per activation (numeric, the CSV): for each metric its mean, std (ddof 1) and n over
    completed runs, the paper's value, ours − paper, the paired difference from `baseline`, its number of
    pairs, p, adjusted p and whether it is significant at `alpha`. metrics[0] is compared with the
    paper's training column, metrics[1] with its held-out column."""
    pair_keys = [c for c in frame.columns if c not in _NON_AXIS and c != "activation" and c not in metrics]
    done = frame[frame["status"] == "completed"]
    activations = ordered_activations(list(frame["activation"]))
    rows: list[dict[str, Any]] = []
    for activation in activations:
        runs = done[done["activation"] == activation]
        row: dict[str, Any] = {"activation": activation, "runs": int((frame["activation"] == activation).sum()),
                               "completed": len(runs)}
        for column, metric in enumerate(metrics):
            values = runs[metric].dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"{metric}_n"] = len(values)
            paper = reference.value(activation, column) if reference is not None and column < 2 else None
            row[f"{metric}_paper"] = math.nan if paper is None else paper
            row[f"{metric}_diff_paper"] = row[f"{metric}_mean"] - row[f"{metric}_paper"]
            if activation == baseline or baseline not in activations:
                pairs, diff, p = 0, math.nan, math.nan
            else:
                pairs, diff, p = paired_difference(done, metric, activation, baseline, pair_keys)
            row.update({f"{metric}_diff_baseline": diff, f"{metric}_pairs": pairs, f"{metric}_p": p})
        rows.append(row)
    table = pd.DataFrame(rows)
    for metric in metrics:
        raw = list(table[f"{metric}_p"]) if len(table) else []
        adjusted = CORRECTIONS.get(correction)(raw)
        table[f"{metric}_p_adjusted"] = adjusted
        table[f"{metric}_significant"] = [None if math.isnan(p) else bool(p < alpha) for p in adjusted]
    return table


_NON_AXIS = {"study", "point_id", "status", "epochs_run", *METRIC_LABELS}


def _number(value: float, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _paper_number(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:g}"


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def paper_display(table: pd.DataFrame, metrics: list[str], reference: ReferenceTable | None,
                  baseline: str = "relu", correction: str = "holm") -> pd.DataFrame:
    """The paper table as text cells, per metric: ours (mean ± std), the paper's value, ours − paper,
    Δ vs the baseline, the paired-t p-value ("p [Holm-adjusted p] (n pairs)") and a significance mark."""
    shows_adjusted = CORRECTIONS.entry(correction).extra["adjusted"] is not None
    shown = pd.DataFrame({"activation": table["activation"]})
    shown["n"] = [f"{c}" if c == r else f"{c} of {r}" for c, r in zip(table["completed"], table["runs"])]
    is_base = [a == baseline for a in table["activation"]]
    for column, metric in enumerate(metrics):
        metric_label = METRIC_LABELS.get(metric, metric)
        shown[f"{metric_label} (ours)"] = [mean_std_text(m, s) for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])]
        if reference is not None and column < 2:
            shown[f"{reference.columns[column]} (paper)"] = [_paper_number(v) for v in table[f"{metric}_paper"]]
            shown[f"{metric_label}: ours − paper"] = [_number(v, signed=True) for v in table[f"{metric}_diff_paper"]]
        shown[f"{metric_label}: Δ vs {baseline}"] = [
            "baseline" if base else _number(d, signed=True) for base, d in zip(is_base, table[f"{metric}_diff_baseline"])]
        shown[f"{metric_label}: p"] = [
            "" if base else ("n/a" if math.isnan(p) else _p_text(p) + (f" [{_p_text(q)}]" if shows_adjusted else ""))
            + ("" if base else f" (n={n})")
            for base, p, q, n in zip(is_base, table[f"{metric}_p"], table[f"{metric}_p_adjusted"], table[f"{metric}_pairs"])]
        shown[f"{metric_label}: sig."] = [
            "" if base else ("n/a" if s is None else ("yes" if s else "no"))
            for base, s in zip(is_base, table[f"{metric}_significant"])]
    return shown
