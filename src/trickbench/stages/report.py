"""Stage report: one tidy table of all runs -> tables, figures and a diagnosis under results/, and an MLflow
summary run per study holding the same files.

Which files a study gets is a pure function of params, in report/outputs.py (`study_outputs`), so that
Snakemake and DVC declare exactly these files without importing pandas: every study has the summary and
ensemble tables, the diagnosis, learning curves, per-batch loss, the accuracy gap and the ensemble gains;
a study with an `activation` axis adds the per-activation table, the paper-layout table
(report.paper_table) and the dead-unit figure; an `lr` axis adds the learning-rate curves (seed Fig. 1);
an `initializer` axis adds the activation std at initialisation, and with `activation` also the
initializer × activation heatmap. `report_entries` there says which of them the Snakemake report shows,
under which caption (workflow/report/<caption>.rst).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trickbench import provenance, tracking, versions
from trickbench.grid import axis_keys, study_points
from trickbench.io import atomic_path, digest_json, read_json, write_text
from trickbench.paths import Layout
from trickbench.report.outputs import (claims_outputs, class_counts_outputs, curves_table, manifest_file, metrics_file,
                                      runs_html, study_outputs)


def _label(value: Any) -> Any:
    if isinstance(value, list):
        return "+".join(map(str, value)) if value else "none"
    return value


# ------------------------------------------------------------------------------------------------ collect

@dataclass
class StudyData:
    records: list[dict[str, Any]]
    curves: pd.DataFrame  # per run and epoch (history.csv + axis values)
    batches: dict[str, pd.DataFrame]  # point id -> batch_loss.csv
    init_stats: pd.DataFrame  # per run and activation layer, at initialisation
    dead_units: pd.DataFrame  # per run and activation layer, after training


def collect(params: dict[str, Any], layout: Layout, study: str) -> StudyData:
    records, curves, batches, init_rows, dead_rows = [], [], {}, [], []
    for point in study_points(params, study):
        files = layout.run_files(study, point.point_id)
        records.append(read_json(files.metrics))
        labels = {key: _label(value) for key, value in point.axes.items()}
        history = pd.read_csv(files.history).rename(columns={"lr": "epoch_lr"})
        if len(history) and records[-1]["status"] == "completed":
            records[-1].setdefault("train_loss_running", float(history["train_loss"].iloc[-1]))
            records[-1].setdefault("train_error_running", float(history["train_error"].iloc[-1]))
        history = history.assign(study=study, point_id=point.point_id, **labels)
        curves.append(history)
        batch_path = files.batch_loss
        batches[point.point_id] = pd.read_csv(batch_path) if batch_path.exists() else pd.DataFrame(
            columns=["epoch", "batch", "loss"])
        diagnostics_path = files.diagnostics
        diagnostics = read_json(diagnostics_path) if diagnostics_path.exists() else {}
        for index, entry in enumerate(diagnostics.get("init_activation_stats", [])):
            init_rows.append({"point_id": point.point_id, "layer": entry["layer"], "layer_index": index,
                              "mean": entry["mean"], "std": entry["std"], **labels})
        for index, entry in enumerate(diagnostics.get("dead_units", [])):
            dead_rows.append({"point_id": point.point_id, "layer": entry["layer"], "layer_index": index,
                              "dead_fraction": entry["dead_fraction"], "units": entry["units"], **labels})
    return StudyData(records, pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(), batches,
                     pd.DataFrame(init_rows), pd.DataFrame(dead_rows))


# ------------------------------------------------------------------------------------------------ writing

def save_figure(figure: Any, path: Path, params: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=params["report"]["figure_format"], dpi=params["report"]["dpi"], bbox_inches="tight")
    plt.close(figure)
    return path


def write_table(table: pd.DataFrame, stem: Path, caption: str, csv_table: pd.DataFrame | None = None,
                footer: str = "") -> list[Path]:
    """Markdown, LaTeX and HTML of the display table, `footer` (where the runs were made) under it; the CSV
    holds `csv_table` (numbers) where given."""
    from trickbench.report.tables import to_html, to_latex, to_markdown

    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex"), stem.with_suffix(".html")]
    write_text(paths[0], f"{caption}\n\n{to_markdown(table)}" + (f"\n{footer}\n" if footer else ""))
    with atomic_path(paths[1]) as tmp:
        (table if csv_table is None else csv_table).to_csv(tmp, index=False)
    latex = to_latex(table, caption)
    write_text(paths[2], latex + (f"% {footer.strip('_')}\n" if footer else ""))
    write_text(paths[3], to_html(table, caption, footer))
    return paths


def main_axis(keys: list[str]) -> str:
    """The axis that colours a study's figures: activation if varied, else the first non-seed axis."""
    group_keys = [k for k in keys if k != "seed"]
    return "activation" if "activation" in keys else (group_keys[0] if group_keys else "point_id")


def batch_frame(data: StudyData, points: list[Any], hue: str) -> pd.DataFrame:
    """Per-batch losses of one run per `hue` value (the first in grid order, i.e. the lowest seed)."""
    chosen: dict[Any, str] = {}
    for point in points:
        value = _label(point.axes.get(hue, point.point_id)) if hue != "point_id" else point.point_id
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
    correction = settings["correction"]
    parts[-1] += "."
    parts.append(f"Δ vs {settings['baseline']}: mean paired difference over runs with the same seed (and the same "
                 f"value of every other axis); p: two-sided paired t-test (scipy.stats.ttest_rel)"
                 + (", in brackets Holm-adjusted over the activations compared" if correction == "holm" else "")
                 + f"; sig.: adjusted p < {settings['alpha']:g}; n/a: fewer than 2 pairs or no variance.")
    return " ".join(parts)


def study_report(params: dict[str, Any], layout: Layout, study: str, data: StudyData | None = None) -> list[Path]:
    from trickbench.report import figures
    from trickbench.report.diagnosis import Thresholds, diagnose, diagnosis_frame, diagnosis_markdown
    from trickbench.report.paper import reference as paper_reference
    from trickbench.report.tables import display_table, paper_display, paper_table, runs_frame, summary_table, to_html

    settings = params["report"]
    data = data if data is not None else collect(params, layout, study)
    frame = runs_frame(data.records)
    points = study_points(params, study)
    keys = axis_keys(points)
    group_keys = [k for k in keys if k != "seed"]
    metrics = settings["metrics"]
    outputs = study_outputs(params, layout, study)
    stem = lambda key: outputs[f"{key}_md"].with_suffix("")  # noqa: E731
    made = versions.extend_footer(provenance.footer(data.records), params,
                                  read_json(layout.manifest)["digest"] if layout.manifest.exists() else None)

    # tables
    summary = summary_table(frame, group_keys, metrics)
    write_table(display_table(summary, group_keys, metrics), stem("summary"),
                f"Study `{study}`: final metrics, mean ± std over seeds (n = seeds).", footer=made)
    if "activation" in keys:
        by_activation = summary_table(frame, ["activation"], metrics)
        write_table(display_table(by_activation, ["activation"], metrics), stem("activations"),
                    f"Study `{study}`: per activation, mean ± std over seeds and the other axes.", footer=made)
        table_settings = settings["paper_table"]
        reference = paper_reference(table_settings["reference"])
        pair = table_settings["metrics"]
        numeric = paper_table(frame, pair, reference, table_settings["baseline"], table_settings["alpha"],
                              table_settings["correction"])
        write_table(paper_display(numeric, pair, reference, table_settings["baseline"], table_settings["correction"]),
                    stem("paper_table"), paper_caption(params, study, reference, pair), csv_table=numeric,
                    footer=made)
    ensemble = read_json(layout.ensemble_json(study))
    columns = ["kind", "label", "size", ensemble["metric"], "test_error", "test_loss", "best_single_test_error",
               "gain_test_error", "best_single_test_loss", "gain_test_loss", "gain_over_best_member_test_error"]
    ensembles = pd.DataFrame(ensemble["rows"]).reindex(columns=columns)
    write_table(ensembles.round(4), stem("ensembles"),
                f"Study `{study}`: ensembles (members chosen by {ensemble['metric']}, never by a test metric) "
                f"against the best single model by {ensemble['metric']}"
                + (f" ({ensemble['best_single']['point_id']})" if "best_single" in ensemble else "")
                + "; gain = best single − ensemble (positive: the ensemble is better).", footer=made)

    # diagnosis
    thresholds = Thresholds.from_params(settings["diagnosis"])
    num_classes = len(read_json(layout.manifest)["class_names"]) if layout.manifest.exists() else None
    history_of = {pid: part for pid, part in data.curves.groupby("point_id", sort=False)} if len(data.curves) else {}
    rows = [{"point_id": record["point_id"], "status": record["status"],
             "diagnosis": diagnose(history_of.get(record["point_id"], pd.DataFrame(columns=["train_loss"])), record,
                                   thresholds, data.batches.get(record["point_id"]), num_classes)}
            for record in data.records]
    write_text(outputs["diagnosis_md"], diagnosis_markdown(study, rows, thresholds))
    diagnosis = diagnosis_frame(rows)
    with atomic_path(outputs["diagnosis_csv"]) as tmp:
        diagnosis.to_csv(tmp, index=False)
    write_text(outputs["diagnosis_html"], to_html(diagnosis, f"Study `{study}`: automatic diagnosis of every run "
                                                             "(seed §7); the rules in words: diagnosis.md.", made))

    # figures
    hue = main_axis(keys)
    curve_metric = settings["curve_metric"]
    curves = data.curves.assign(**{hue: data.curves[hue].astype(str)}) if hue in data.curves else data.curves
    save_figure(figures.study_curves_figure(curves, curve_metric, hue, f"{study}: {curve_metric} per epoch"),
                outputs["learning_curves"], params)
    other = next((k for k in group_keys if k != hue), None)
    done = frame[frame["status"] == "completed"]
    save_figure(figures.comparison_figure(done, "test_error", hue, other, f"{study}: test error by {hue}"),
                outputs["comparison"], params)
    save_figure(figures.accuracy_gap_figure(data.curves, hue, f"{study}: train vs validation accuracy by {hue}"),
                outputs["accuracy_gap"], params)
    batch_hue = "lr" if "lr" in keys else hue
    save_figure(figures.batch_loss_figure(batch_frame(data, points, batch_hue), batch_hue, settings["batch_loss_window"],
                                          f"{study}: loss of every training batch (lowest seed per {batch_hue})"),
                outputs["batch_loss"], params)
    if "lr_curves" in outputs:
        save_figure(figures.lr_curves_figure(data.curves, "train_loss", "lr", f"{study}: training loss per epoch by lr"),
                    outputs["lr_curves"], params)
    if "dead_units" in outputs:
        save_figure(figures.dead_units_figure(data.dead_units, "activation",
                                              f"{study}: units never positive on the validation split"),
                    outputs["dead_units"], params)
    if "init_activation_std" in outputs:
        col = "activation" if "activation" in keys else None
        save_figure(figures.init_std_figure(data.init_stats, "initializer", col,
                                            f"{study}: activation std per layer at initialisation"),
                    outputs["init_activation_std"], params)
    if "init_activation_heatmap" in outputs:
        save_figure(figures.heatmap_figure(frame, "initializer", "activation", "test_error",
                                           f"{study}: test error, initializer × activation (mean over seeds)"),
                    outputs["init_activation_heatmap"], params)
    gains = pd.DataFrame(ensemble["rows"]).reindex(columns=[
        "kind", "gain_test_error", "gain_test_loss", "gain_over_best_member_test_error", "gain_over_best_member_test_loss"])
    save_figure(figures.ensemble_gains_figure(gains, f"{study}: what ensembling gains"), outputs["ensemble_gains"], params)
    return list(outputs.values())


def spectrum(params: dict[str, Any], layout: Layout) -> Path:
    import numpy as np

    from trickbench.data.stats import plot_spectrum

    with np.load(layout.stats_arrays) as arrays:
        figure = plot_spectrum(read_json(layout.stats_json), {key: arrays[key] for key in arrays.files})
    return save_figure(figure, layout.spectrum_figure, params)


def class_counts(layout: Layout) -> list[Path]:
    """Images per class and split of the prepared data (the seed's class imbalance, made visible)."""
    manifest = read_json(layout.manifest)
    table = pd.DataFrame({"class": manifest["class_names"], **manifest["class_counts"]})
    train = table["train"]
    caption = (f"Images per class and split of `{manifest['source']}` (data digest {manifest['digest'][:12]}); "
               f"imbalance: the largest training class has {train.max() / max(train.min(), 1):.1f}x the images "
               "of the smallest.")
    stem = class_counts_outputs(layout)["csv"].with_suffix("")
    return write_table(table, stem, caption)


def summary_metrics(path: Path) -> dict[str, float]:
    """Headline numbers of a paper table for the MLflow summary run: `<metric>_mean.<activation>`, p-values."""
    table = pd.read_csv(path)
    metrics: dict[str, float] = {}
    for _, row in table.iterrows():
        for column, value in row.items():
            if column.endswith(("_mean", "_p")) and isinstance(value, (int, float)) and math.isfinite(value):
                metrics[f"{column}.{row['activation']}"] = float(value)
    return metrics


def headline(params: dict[str, Any], layout: Layout, study: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A study's numbers for `dvc metrics show`: run counts, the best single model and the ensembles' gains,
    and per activation the mean of each paper-table metric."""
    done = [r for r in records if r["status"] == "completed"]
    result: dict[str, Any] = {"runs": len(records), "completed": len(done)}
    ensemble = read_json(layout.ensemble_json(study))
    if "best_single" in ensemble:
        result["best_single"] = {k: v for k, v in ensemble["best_single"].items() if k != "point_id"}
        result["ensemble_gain_test_error"] = {f"{row['kind']}:{row['label']}": row["gain_test_error"]
                                              for row in ensemble["rows"] if row["kind"] != "best_single"}
    outputs = study_outputs(params, layout, study)
    if "paper_table_csv" in outputs:
        table = pd.read_csv(outputs["paper_table_csv"])
        means = [c for c in table.columns if c.endswith("_mean")]
        result["activations"] = {row["activation"]: {c: row[c] for c in means} for _, row in table.iterrows()}
    return result


def log_summary_run(params: dict[str, Any], layout: Layout, study: str, data: StudyData,
                    paths: list[Path]) -> str | None:
    """The study's MLflow summary run: every table and figure, the paper table's numbers as metrics; its id."""
    identity = digest_json(["summary", study, params["report"], [r["run_digest"] for r in data.records],
                            read_json(layout.ensemble_json(study)), str(layout.study_results(study).resolve())])
    run = tracking.open_run(params, tracking.experiment_name(params, study), f"summary-{study}",
                            {"trickbench.study": study, "trickbench.kind": "summary",
                             **versions.digest_tags(params, layout)}, {"report": params["report"]},
                            identity=identity, reuse_finished=True)
    for path in paths + [layout.spectrum_figure]:
        run.log_artifact(path, "report")
    outputs = study_outputs(params, layout, study)
    if "paper_table_csv" in outputs:
        run.log_metrics(summary_metrics(outputs["paper_table_csv"]), step=0)
    run_id = run.run_id
    run.end()
    return run_id


def preset_verdicts(params: dict[str, Any], layout: Layout, footer: str) -> list[Path]:
    """results/<preset>/claims.{md,csv,html}: the verdicts on the claims this preset tests, from the tables
    this report has just written (the same rule as `trickbench claims` over every preset)."""
    from trickbench.report.claims import claims_markdown, claims_table, preset_claims
    from trickbench.report.tables import to_html

    claims = preset_claims(params)
    if not claims:
        return []
    table, scales = claims_table(claims)
    paths = claims_outputs(params, layout)
    with atomic_path(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    write_text(paths["md"], claims_markdown(table, scales) + f"\n{footer}\n")
    write_text(paths["html"], to_html(table, f"Verdicts on the claims this preset tests ({', '.join(scales.values())})",
                                      footer))
    return list(paths.values())


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report(params: dict[str, Any], layout: Layout) -> list[Path]:
    from trickbench.io import write_json
    from trickbench.report.tables import runs_frame, to_html

    # read every input first: a missing run or ensemble fails the stage before any output is written
    collected = {study: collect(params, layout, study) for study in params["studies"]}
    for path in [*(layout.ensemble_json(study) for study in params["studies"]), layout.manifest,
                 layout.stats_json, layout.stats_arrays]:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; run the stages before report first")
    written = [spectrum(params, layout), *class_counts(layout)]
    all_records, all_curves, headlines, study_paths = [], [], {}, {}
    for study, data in collected.items():
        study_paths[study] = study_report(params, layout, study, data)
        written += study_paths[study]
        all_records += data.records
        all_curves.append(data.curves)
        headlines[study] = headline(params, layout, study, data.records)
    runs = runs_frame(all_records)
    made = versions.extend_footer(provenance.footer(all_records), params, read_json(layout.manifest)["digest"])
    with atomic_path(layout.runs_table) as tmp:
        runs.to_csv(tmp, index=False)
    write_text(runs_html(layout), to_html(runs, "Every run of every study: axis values, status and final metrics.",
                                          made))
    curves = pd.concat(all_curves, ignore_index=True) if all_curves else pd.DataFrame()
    if len(curves):
        curves.insert(0, "run", curves["study"] + "/" + curves["point_id"])
        numeric = curves.select_dtypes("number").columns
        curves[numeric] = curves[numeric].where(curves[numeric].abs() != math.inf)  # inf -> empty cell
    with atomic_path(curves_table(layout)) as tmp:
        curves.to_csv(tmp, index=False)
    write_json(metrics_file(layout), _finite_or_none(headlines))
    claims = preset_verdicts(params, layout, made)  # reads the tables just written
    written += claims
    summary_runs = {study: log_summary_run(params, layout, study, data, study_paths[study] + claims)
                    for study, data in collected.items()}
    versions.write_manifest(manifest_file(layout), versions.report_manifest(params, layout, collected, summary_runs))
    outputs = [layout.runs_table, runs_html(layout), curves_table(layout), metrics_file(layout), manifest_file(layout),
               *written]
    # the record of this report (not committed): what makes a fresh clone's `snakemake` run the pipeline
    write_json(layout.report_record, {"outputs": [str(path) for path in outputs],
                                      "runs": [r["run_digest"] for r in all_records],
                                      "sha256": versions.output_digests(outputs)})
    return outputs
