"""The files the report stage writes, as a pure function of params: Snakemake and DVC declare exactly these.

The one place that decides which tables and figures a study has (from the axes it varies). Kept apart from
report/study.py, which makes them, so that parsing the Snakefile imports neither pandas nor mlflow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trickbench.grid import axis_keys, study_points
from trickbench.paths import Layout

# html: what the Snakemake report shows inline (Snakemake 9 only offers a CSV for download)
TABLE_FORMATS = ("md", "csv", "tex", "html")
# output key -> (Snakemake report subcategory, caption file workflow/report/<caption>.rst)
REPORT_ITEMS: dict[str, tuple[str, str]] = {
    "paper_table_html": ("1 tables", "paper_table"),
    "activations_html": ("1 tables", "activations"),
    "summary_html": ("1 tables", "summary"),
    "diagnosis_html": ("2 diagnosis", "diagnosis"),
    "learning_curves": ("3 curves", "learning_curves"),
    "lr_curves": ("3 curves", "lr_curves"),
    "batch_loss": ("3 curves", "batch_loss"),
    "accuracy_gap": ("3 curves", "accuracy_gap"),
    "comparison": ("4 comparisons", "comparison"),
    "init_activation_heatmap": ("4 comparisons", "init_activation_heatmap"),
    "dead_units": ("5 inside the network", "dead_units"),
    "init_activation_std": ("5 inside the network", "init_activation_std"),
    "ensembles_html": ("6 ensembles", "ensembles"),
    "ensemble_gains": ("6 ensembles", "ensemble_gains"),
}


def curves_table(layout: Layout) -> Path:
    return layout.curves_table


def runs_html(layout: Layout) -> Path:
    """runs.csv as an HTML table, for the Snakemake report."""
    return layout.runs_table.with_suffix(".html")


def metrics_file(layout: Layout) -> Path:
    """Headline numbers of every study (`dvc metrics show`)."""
    return layout.results / "metrics.json"


def manifest_file(layout: Layout) -> Path:
    """What made this results folder: params, data, code, engine, machines, MLflow runs (trickbench.versions)."""
    return layout.results / "manifest.json"


def has_axes(params: dict[str, Any], study: str) -> set[str]:
    return set(axis_keys(study_points(params, study)))


def study_tables(params: dict[str, Any], study: str) -> list[str]:
    """The tables of a study (report/study.py: TABLES makes each): a per-activation table and the
    paper-layout one where `activation` is an axis."""
    keys = has_axes(params, study)
    return ["summary", *(["activations", "paper_table"] if "activation" in keys else []), "ensembles"]


def study_figures(params: dict[str, Any], study: str) -> list[str]:
    """The figures of a study (report/study.py: FIGURES makes each), from the axes it varies: learning-rate
    curves (seed Fig. 1) for `lr`, dead units for `activation`, the activation std at initialisation for
    `initializer`, and with `activation` too the initializer × activation heatmap."""
    keys = has_axes(params, study)
    figures = ["learning_curves", "comparison", "accuracy_gap", "batch_loss"]
    if "lr" in keys:
        figures.append("lr_curves")
    if "activation" in keys:
        figures.append("dead_units")
    if "initializer" in keys:
        figures.append("init_activation_std")
        if "activation" in keys:
            figures.append("init_activation_heatmap")
    figures.append("ensemble_gains")
    return figures


def study_outputs(params: dict[str, Any], layout: Layout, study: str) -> dict[str, Path]:
    """Every file the report writes for a study (the engines declare exactly these)."""
    out, fmt = layout.study_results(study), params["report"]["figure_format"]
    outputs = {f"{name}_{ext}": out / f"{name}.{ext}" for name in study_tables(params, study) for ext in TABLE_FORMATS}
    outputs |= {f"diagnosis_{ext}": out / f"diagnosis.{ext}" for ext in ("md", "csv", "html")}
    outputs |= {name: out / f"{name}.{fmt}" for name in study_figures(params, study)}
    return outputs


def table_paths(outputs: dict[str, Path], name: str) -> dict[str, Path]:
    """The files of table `name` among `outputs` (study_outputs), by format."""
    return {ext: outputs[f"{name}_{ext}"] for ext in TABLE_FORMATS}


def claims_outputs(params: dict[str, Any], layout: Layout) -> dict[str, Path]:
    """The verdicts on the claims this preset tests (trickbench.claims) and their forest plot, if params are a
    preset's."""
    from trickbench.claims import preset_claims

    if not preset_claims(params):
        return {}
    return {ext: layout.claims_file(ext) for ext in ("md", "csv", "html", "png")}


def class_counts_outputs(layout: Layout) -> dict[str, Path]:
    return {ext: layout.class_counts_table.with_suffix(f".{ext}") for ext in TABLE_FORMATS}


@dataclass(frozen=True)
class ReportEntry:
    path: Path
    caption: str | None  # workflow/report/<caption>.rst; None: written but not shown in the Snakemake report
    category: str
    subcategory: str


def report_entries(params: dict[str, Any], layout: Layout) -> list[ReportEntry]:
    """Every report output, with where the Snakemake report (`snakemake --report`) shows it."""
    entries = [ReportEntry(runs_html(layout), "runs", "0 all studies", "tables"),
               ReportEntry(layout.runs_table, None, "0 all studies", "tables"),
               ReportEntry(curves_table(layout), None, "0 all studies", "tables"),
               ReportEntry(metrics_file(layout), None, "0 all studies", "tables"),
               ReportEntry(manifest_file(layout), None, "0 all studies", "tables"),
               ReportEntry(layout.spectrum_figure, "pca_spectrum", "0 all studies", "data"),
               *(ReportEntry(path, "class_counts" if ext == "html" else None, "0 all studies", "data")
                 for ext, path in class_counts_outputs(layout).items()),
               *(ReportEntry(path, {"html": "claims", "png": "claims_forest"}.get(ext), "0 all studies", "claims")
                 for ext, path in claims_outputs(params, layout).items())]
    for study in params["studies"]:
        for key, path in study_outputs(params, layout, study).items():
            subcategory, caption = REPORT_ITEMS.get(key, ("", None))  # type: ignore[assignment]
            entries.append(ReportEntry(path, caption, study, subcategory))
    return entries


def report_outputs(params: dict[str, Any], layout: Layout) -> list[Path]:
    """Every file the report stage writes (what the engines declare as its outputs)."""
    return [entry.path for entry in report_entries(params, layout)]
