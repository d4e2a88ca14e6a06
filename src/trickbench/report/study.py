"""One study's report, built in memory from its collected runs: its tables (display cells, numbers, caption,
footer), its diagnosis and its figures. stages/report.py collects the inputs and writes what this builds.

Which tables and figures a study has is decided in one place, report/outputs.py (`study_tables`,
`study_figures`); `TABLES` and `FIGURES` here say how each named one is made, and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import pandas as pd

from trickbench.grid import GridPoint, axis_keys, study_points
from trickbench.report.tables import CORRECTIONS, label, runs_frame


@dataclass
class StudyData:
    """What the runs of one study left on disk (stages/report.py: `collect`)."""
    records: list[dict[str, Any]]  # metrics.json of every run, in grid order
    curves: pd.DataFrame  # per run and epoch (history.csv + axis values)
    batches: dict[str, pd.DataFrame]  # point id -> batch_loss.csv
    init_stats: pd.DataFrame  # per run and activation layer, at initialisation
    dead_units: pd.DataFrame  # per run and activation layer, after training


@dataclass(frozen=True)
class Table:
    """A report table: `display` (text cells) becomes the Markdown, LaTeX and HTML; the CSV holds `numbers`
    where given, else the display cells; `footer` (where the runs were made) goes under it."""
    display: pd.DataFrame
    caption: str
    numbers: pd.DataFrame | None = None
    footer: str = ""

    @property
    def csv_frame(self) -> pd.DataFrame:
        return self.display if self.numbers is None else self.numbers

    def texts(self) -> dict[str, str]:
        """The md, tex and html files' text."""
        from trickbench.report.tables import to_html, to_latex, to_markdown

        footer = self.footer
        return {"md": f"{self.caption}\n\n{to_markdown(self.display)}" + (f"\n{footer}\n" if footer else ""),
                "tex": to_latex(self.display, self.caption) + (f"% {footer.strip('_')}\n" if footer else ""),
                "html": to_html(self.display, self.caption, footer)}


@dataclass
class Study:
    """One study's inputs to its report: params, its runs, its ensembles (ensemble.json) and the footer line."""
    name: str
    params: dict[str, Any]
    data: StudyData
    ensemble: dict[str, Any]
    footer: str

    @cached_property
    def points(self) -> list[GridPoint]:
        return study_points(self.params, self.name)

    @cached_property
    def keys(self) -> list[str]:
        return axis_keys(self.points)

    @property
    def group_keys(self) -> list[str]:
        return [k for k in self.keys if k != "seed"]

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per run (report.tables.runs_frame)."""
        return runs_frame(self.data.records)

    @property
    def hue(self) -> str:
        return main_axis(self.keys)

    @property
    def settings(self) -> dict[str, Any]:
        return self.params["report"]


def main_axis(keys: list[str]) -> str:
    """The axis that colours a study's figures: activation if varied, else the first non-seed axis."""
    group_keys = [k for k in keys if k != "seed"]
    return "activation" if "activation" in keys else (group_keys[0] if group_keys else "point_id")


# ------------------------------------------------------------------------------------------------ tables

def paper_caption(params: dict[str, Any], study: str, reference: Any, metrics: list[str]) -> str:
    settings = params["report"]["paper_table"]
    description = params["studies"][study].get("description", "").strip().rstrip(".")
    parts = [f"Study `{study}`" + (f": {description}" if description else "") + "."]
    if settings["note"]:
        parts.append(settings["note"].strip())
    parts.append(f"Per activation: {' and '.join(m.replace('_', ' ') for m in metrics)} as mean ± std over seeds "
                 f"(n = completed runs)")
    if reference is not None:
        parts[-1] += (f"; beside them {reference.title} (single runs) and ours − paper, the paper's "
                      f"{reference.columns[0]} set against our {metrics[0].replace('_', ' ')} and its "
                      f"{reference.columns[1]} against our {metrics[1].replace('_', ' ') if len(metrics) > 1 else '—'}")
    adjusted = CORRECTIONS.entry(settings["correction"]).extra["adjusted"]
    parts[-1] += "."
    parts.append(f"Δ vs {settings['baseline']}: mean paired difference over runs with the same seed (and the same "
                 f"value of every other axis); p: two-sided paired t-test (scipy.stats.ttest_rel)"
                 + (f", in brackets {adjusted} over the activations compared" if adjusted else "")
                 + f"; sig.: adjusted p < {settings['alpha']:g}; n/a: fewer than 2 pairs or no variance.")
    return " ".join(parts)


def summary_table(study: Study) -> Table:
    from trickbench.report.tables import display_table, summary_table as summarise

    metrics = study.settings["metrics"]
    summary = summarise(study.frame, study.group_keys, metrics)
    return Table(display_table(summary, study.group_keys, metrics),
                 f"Study `{study.name}`: final metrics, mean ± std over seeds (n = seeds).", footer=study.footer)


def activations_table(study: Study) -> Table:
    from trickbench.report.tables import display_table, summary_table as summarise

    metrics = study.settings["metrics"]
    by_activation = summarise(study.frame, ["activation"], metrics)
    return Table(display_table(by_activation, ["activation"], metrics),
                 f"Study `{study.name}`: per activation, mean ± std over seeds and the other axes.", footer=study.footer)


def paper_table(study: Study) -> Table:
    """Xu et al.'s layout (report.tables.paper_table): the CSV holds its numbers, the other files its cells."""
    from trickbench.report.paper import reference as paper_reference
    from trickbench.report.tables import paper_display, paper_table as paper_numbers

    settings = study.settings["paper_table"]
    reference = paper_reference(settings["reference"])
    pair = settings["metrics"]
    numeric = paper_numbers(study.frame, pair, reference, settings["baseline"], settings["alpha"],
                            settings["correction"])
    return Table(paper_display(numeric, pair, reference, settings["baseline"], settings["correction"]),
                 paper_caption(study.params, study.name, reference, pair), numbers=numeric, footer=study.footer)


ENSEMBLE_COLUMNS = ["kind", "label", "size", "{metric}", "test_error", "test_loss", "best_single_test_error",
                    "gain_test_error", "best_single_test_loss", "gain_test_loss", "gain_over_best_member_test_error"]


def ensembles_table(study: Study) -> Table:
    ensemble = study.ensemble
    columns = [c.format(metric=ensemble["metric"]) for c in ENSEMBLE_COLUMNS]
    ensembles = pd.DataFrame(ensemble["rows"]).reindex(columns=columns)
    return Table(ensembles.round(4),
                 f"Study `{study.name}`: ensembles (members chosen by {ensemble['metric']}, never by a test metric) "
                 f"against the best single model by {ensemble['metric']}"
                 + (f" ({ensemble['best_single']['point_id']})" if "best_single" in ensemble else "")
                 + "; gain = best single − ensemble (positive: the ensemble is better).", footer=study.footer)


# report/outputs.py: study_tables names which of these a study has
TABLES: dict[str, Callable[[Study], Table]] = {
    "summary": summary_table, "activations": activations_table, "paper_table": paper_table,
    "ensembles": ensembles_table,
}


# ------------------------------------------------------------------------------------------------ diagnosis

@dataclass(frozen=True)
class DiagnosisReport:
    markdown: str  # diagnosis.md: the verdicts with the rules in words
    table: Table  # diagnosis.csv and diagnosis.html


def diagnosis_report(study: Study, num_classes: int | None) -> DiagnosisReport:
    """Every run's automatic diagnosis (report.diagnosis) from its curves and batch losses."""
    from trickbench.report.diagnosis import Thresholds, diagnose, diagnosis_frame, diagnosis_markdown

    data = study.data
    thresholds = Thresholds.from_params(study.settings["diagnosis"])
    history_of = {pid: part for pid, part in data.curves.groupby("point_id", sort=False)} if len(data.curves) else {}
    rows = [{"point_id": record["point_id"], "status": record["status"],
             "diagnosis": diagnose(history_of.get(record["point_id"], pd.DataFrame(columns=["train_loss"])), record,
                                   thresholds, data.batches.get(record["point_id"]), num_classes)}
            for record in data.records]
    table = Table(diagnosis_frame(rows), f"Study `{study.name}`: automatic diagnosis of every run "
                                         "(seed §7); the rules in words: diagnosis.md.", footer=study.footer)
    return DiagnosisReport(diagnosis_markdown(study.name, rows, thresholds), table)


# ------------------------------------------------------------------------------------------------ figures

def batch_frame(data: StudyData, points: list[Any], hue: str) -> pd.DataFrame:
    """Per-batch losses of one run per `hue` value (the first in grid order, i.e. the lowest seed)."""
    chosen: dict[Any, str] = {}
    for point in points:
        value = label(point.axes.get(hue, point.point_id)) if hue != "point_id" else point.point_id
        chosen.setdefault(value, point.point_id)
    frames = []
    for value, pid in chosen.items():
        batches = data.batches[pid]
        if batches.empty:
            continue
        per_epoch = int(batches["batch"].max()) + 1
        frames.append(pd.DataFrame({"step": batches["epoch"] * per_epoch + batches["batch"],
                                    "loss": batches["loss"], hue: str(value)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "loss", hue])


def learning_curves_figure(study: Study) -> Any:
    from trickbench.report import figures

    hue, curves, metric = study.hue, study.data.curves, study.settings["curve_metric"]
    curves = curves.assign(**{hue: curves[hue].astype(str)}) if hue in curves else curves
    return figures.study_curves_figure(curves, metric, hue, f"{study.name}: {metric} per epoch")


def comparison_figure(study: Study) -> Any:
    from trickbench.report import figures

    hue = study.hue
    other = next((k for k in study.group_keys if k != hue), None)
    done = study.frame[study.frame["status"] == "completed"]
    return figures.comparison_figure(done, "test_error", hue, other, f"{study.name}: test error by {hue}")


def accuracy_gap_figure(study: Study) -> Any:
    from trickbench.report import figures

    return figures.accuracy_gap_figure(study.data.curves, study.hue,
                                       f"{study.name}: train vs validation accuracy by {study.hue}")


def batch_loss_figure(study: Study) -> Any:
    from trickbench.report import figures

    hue = "lr" if "lr" in study.keys else study.hue
    return figures.batch_loss_figure(batch_frame(study.data, study.points, hue), hue,
                                     study.settings["batch_loss_window"],
                                     f"{study.name}: loss of every training batch (lowest seed per {hue})")


def lr_curves_figure(study: Study) -> Any:
    from trickbench.report import figures

    return figures.lr_curves_figure(study.data.curves, "train_loss", "lr",
                                    f"{study.name}: training loss per epoch by lr")


def dead_units_figure(study: Study) -> Any:
    from trickbench.report import figures

    return figures.dead_units_figure(study.data.dead_units, "activation",
                                     f"{study.name}: units never positive on the validation split")


def init_activation_std_figure(study: Study) -> Any:
    from trickbench.report import figures

    col = "activation" if "activation" in study.keys else None
    return figures.init_std_figure(study.data.init_stats, "initializer", col,
                                   f"{study.name}: activation std per layer at initialisation")


def init_activation_heatmap_figure(study: Study) -> Any:
    from trickbench.report import figures

    return figures.heatmap_figure(study.frame, "initializer", "activation", "test_error",
                                  f"{study.name}: test error, initializer × activation (mean over seeds)")


GAIN_COLUMNS = ["kind", "gain_test_error", "gain_test_loss", "gain_over_best_member_test_error",
                "gain_over_best_member_test_loss"]


def ensemble_gains_figure(study: Study) -> Any:
    from trickbench.report import figures

    gains = pd.DataFrame(study.ensemble["rows"]).reindex(columns=GAIN_COLUMNS)
    return figures.ensemble_gains_figure(gains, f"{study.name}: what ensembling gains")


# report/outputs.py: study_figures names which of these a study has
FIGURES: dict[str, Callable[[Study], Any]] = {
    "learning_curves": learning_curves_figure, "comparison": comparison_figure,
    "accuracy_gap": accuracy_gap_figure, "batch_loss": batch_loss_figure, "lr_curves": lr_curves_figure,
    "dead_units": dead_units_figure, "init_activation_std": init_activation_std_figure,
    "init_activation_heatmap": init_activation_heatmap_figure, "ensemble_gains": ensemble_gains_figure,
}
