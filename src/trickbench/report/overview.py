"""The report's files over every study, built in memory: runs and curves tables, the class counts of the data,
the headline numbers (`dvc metrics show`, the MLflow summary run) and this preset's claim verdicts.
stages/report.py writes them; report/study.py builds each study's own files."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from trickbench.report.study import Table


def runs_table(records: list[dict[str, Any]], footer: str) -> Table:
    """runs.csv and runs.html: every run of every study (report.tables.runs_frame)."""
    from trickbench.report.tables import runs_frame

    return Table(runs_frame(records), "Every run of every study: axis values, status and final metrics.",
                 footer=footer)


def curves_frame(curves: list[pd.DataFrame]) -> pd.DataFrame:
    """Every run's per-epoch curves in long format, a `run` column (study/point id) first; an infinite
    value (a diverged run) becomes an empty cell."""
    frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if len(frame):
        frame.insert(0, "run", frame["study"] + "/" + frame["point_id"])
        numeric = frame.select_dtypes("number").columns
        frame[numeric] = frame[numeric].where(frame[numeric].abs() != math.inf)
    return frame


def class_counts_table(manifest: dict[str, Any]) -> Table:
    """Images per class and split of the prepared data (the seed's class imbalance, made visible)."""
    table = pd.DataFrame({"class": manifest["class_names"], **manifest["class_counts"]})
    train = table["train"]
    caption = (f"Images per class and split of `{manifest['source']}` (data digest {manifest['digest'][:12]}); "
               f"imbalance: the largest training class has {train.max() / max(train.min(), 1):.1f}x the images "
               "of the smallest.")
    return Table(table, caption)


def summary_metrics(paper_table_csv: Path) -> dict[str, float]:
    """Headline numbers of a paper table for the MLflow summary run: `<metric>_mean.<activation>`, p-values."""
    table = pd.read_csv(paper_table_csv)
    metrics: dict[str, float] = {}
    for _, row in table.iterrows():
        for column, value in row.items():
            if column.endswith(("_mean", "_p")) and isinstance(value, (int, float)) and math.isfinite(value):
                metrics[f"{column}.{row['activation']}"] = float(value)
    return metrics


def headline(records: list[dict[str, Any]], ensemble: dict[str, Any],
             paper_table_csv: Path | None) -> dict[str, Any]:
    """A study's numbers for `dvc metrics show`: run counts, the best single model and the ensembles' gains,
    and per activation the mean of each paper-table metric (from the paper table's CSV, where it has one)."""
    done = [r for r in records if r["status"] == "completed"]
    result: dict[str, Any] = {"runs": len(records), "completed": len(done)}
    if "best_single" in ensemble:
        result["best_single"] = {k: v for k, v in ensemble["best_single"].items() if k != "point_id"}
        result["ensemble_gain_test_error"] = {f"{row['kind']}:{row['label']}": row["gain_test_error"]
                                              for row in ensemble["rows"] if row["kind"] != "best_single"}
    if paper_table_csv is not None:
        table = pd.read_csv(paper_table_csv)
        means = [c for c in table.columns if c.endswith("_mean")]
        result["activations"] = {row["activation"]: {c: row[c] for c in means} for _, row in table.iterrows()}
    return result


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float (at any depth of dicts) as None: JSON has no NaN or infinity."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def claims_report(params: dict[str, Any], footer: str) -> tuple[Table, str] | None:
    """The verdicts on the claims this preset tests (trickbench.claims), read from the tables the report has
    just written: the table (CSV and HTML) and the Markdown; None when params are no preset's."""
    from trickbench.claims import claims_markdown, claims_table, preset_claims

    claims = preset_claims(params)
    if not claims:
        return None
    table, scales = claims_table(claims)
    caption = f"Verdicts on the claims this preset tests ({', '.join(scales.values())})"
    return Table(table, caption, footer=footer), claims_markdown(table, scales) + f"\n{footer}\n"
