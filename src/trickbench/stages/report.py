"""Stage report: one tidy table of all runs -> tables, figures and a diagnosis under results/, and an MLflow
summary run per study holding the same files.

Wiring only: collect each study's run files, ask report/ for the contents (report/study.py per study,
report/overview.py over all of them), write them atomically, log the summary runs. Which files there are
is a pure function of params, decided in report/outputs.py alone (Snakemake and DVC declare exactly those).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trickbench import provenance, tracking
from trickbench.errors import MissingInputError
from trickbench.grid import study_points
from trickbench.io import atomic_path, digest_json, read_json, write_text
from trickbench.metrics import mean_class_recall
from trickbench.paths import Layout
from trickbench.report.outputs import (claims_outputs, class_counts_outputs, curves_table, manifest_file, metrics_file,
                                      runs_html, study_figures, study_outputs, study_tables, table_paths)
from trickbench.report.overview import (claims_report, class_counts_table, curves_frame, finite_or_none, headline,
                                        runs_table, summary_metrics)
from trickbench.report.study import FIGURES, TABLES, Study, StudyData, Table, diagnosis_report
from trickbench.report.tables import label
from trickbench.versions.manifest import digest_tags, extend_footer, output_digests, report_manifest, write_manifest
from trickbench.run_files import (BATCH_LOSS_COLUMNS, read_batch_loss, read_diagnostics, read_ensemble,
                                        read_history, read_manifest, read_metrics, read_predictions)


# ------------------------------------------------------------------------------------------------ collect

def collect(params: dict[str, Any], layout: Layout, study: str) -> StudyData:
    records, curves, batches, init_rows, dead_rows = [], [], {}, [], []
    for point in study_points(params, study):
        files = layout.run_files(study, point.point_id)
        records.append(read_metrics(files.metrics, point.point_id))
        labels = {key: label(value) for key, value in point.axes.items()}
        history = pd.DataFrame(read_history(files.history)).rename(columns={"lr": "epoch_lr"})
        if len(history) and records[-1]["status"] == "completed":
            records[-1].setdefault("train_loss_running", float(history["train_loss"].iloc[-1]))
            records[-1].setdefault("train_error_running", float(history["train_error"].iloc[-1]))
            records[-1].setdefault("test_mean_recall", test_mean_recall(files.predictions))
        history = history.assign(study=study, point_id=point.point_id, **labels)
        curves.append(history)
        batch_path = files.batch_loss
        batches[point.point_id] = pd.DataFrame(read_batch_loss(batch_path)) if batch_path.exists() else \
            pd.DataFrame(columns=list(BATCH_LOSS_COLUMNS))
        diagnostics = read_diagnostics(files.diagnostics)
        for index, entry in enumerate(diagnostics.get("init_activation_stats", [])):
            init_rows.append({"point_id": point.point_id, "layer": entry["layer"], "layer_index": index,
                              "mean": entry["mean"], "std": entry["std"], **labels})
        for index, entry in enumerate(diagnostics.get("dead_units", [])):
            dead_rows.append({"point_id": point.point_id, "layer": entry["layer"], "layer_index": index,
                              "dead_fraction": entry["dead_fraction"], "units": entry["units"], **labels})
    return StudyData(records, pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(), batches,
                     pd.DataFrame(init_rows), pd.DataFrame(dead_rows))


# ------------------------------------------------------------------------------------------------ writing

def test_mean_recall(predictions: Path) -> float:
    """Mean per-class recall on the test split of a completed run's predictions.npz (NaN without them)."""
    if not predictions.is_file():
        return float("nan")
    arrays = read_predictions(predictions)
    if "test_probs" not in arrays:
        return float("nan")
    return mean_class_recall(arrays["test_probs"], arrays["test_labels"])


def save_figure(figure: Any, path: Path, params: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=params["report"]["figure_format"], dpi=params["report"]["dpi"], bbox_inches="tight")
    plt.close(figure)
    return path


def write_table(table: Table, paths: dict[str, Path]) -> list[Path]:
    """Table `table` in each format of `paths` (csv, and md/tex/html as its texts)."""
    texts = table.texts()
    for ext, path in paths.items():
        if ext == "csv":
            with atomic_path(path) as tmp:
                table.csv_frame.to_csv(tmp, index=False)
        else:
            write_text(path, texts[ext])
    return list(paths.values())


def footer(params: dict[str, Any], layout: Layout, records: list[dict[str, Any]]) -> str:
    """The line under a table: where these runs were made, the params and the data digests."""
    return extend_footer(provenance.footer(records), params,
                         read_manifest(layout.manifest)["digest"] if layout.manifest.exists() else None)


def study_report(params: dict[str, Any], layout: Layout, study: str, data: StudyData | None = None) -> list[Path]:
    """Every table, the diagnosis and every figure of `study` that report/outputs.py declares."""
    data = data if data is not None else collect(params, layout, study)
    contents = Study(study, params, data, read_ensemble(layout.ensemble_json(study)), footer(params, layout, data.records))
    outputs = study_outputs(params, layout, study)
    for name in study_tables(params, study):
        write_table(TABLES[name](contents), table_paths(outputs, name))
    num_classes = len(read_manifest(layout.manifest)["class_names"]) if layout.manifest.exists() else None
    diagnosis = diagnosis_report(contents, num_classes)
    write_text(outputs["diagnosis_md"], diagnosis.markdown)
    write_table(diagnosis.table, {ext: outputs[f"diagnosis_{ext}"] for ext in ("csv", "html")})
    for name in study_figures(params, study):
        save_figure(FIGURES[name](contents), outputs[name], params)
    return list(outputs.values())


def spectrum(params: dict[str, Any], layout: Layout) -> Path:
    import numpy as np

    from trickbench.data.stats import plot_spectrum

    with np.load(layout.stats_arrays) as arrays:
        figure = plot_spectrum(read_json(layout.stats_json), {key: arrays[key] for key in arrays.files})
    return save_figure(figure, layout.spectrum_figure, params)


def log_summary_run(params: dict[str, Any], layout: Layout, study: str, data: StudyData,
                    paths: list[Path]) -> str | None:
    """The study's MLflow summary run: every table and figure, the paper table's numbers as metrics; its id."""
    identity = digest_json(["summary", study, params["report"], [r["run_digest"] for r in data.records],
                            read_ensemble(layout.ensemble_json(study)), str(layout.study_results(study).resolve())])
    run = tracking.open_run(params, tracking.experiment_name(params, study), f"summary-{study}",
                            {"trickbench.study": study, "trickbench.kind": "summary",
                             **digest_tags(params, layout)}, {"report": params["report"]},
                            identity=identity, reuse_finished=True)
    for path in paths + [layout.spectrum_figure]:
        run.log_artifact(path, "report")
    outputs = study_outputs(params, layout, study)
    if "paper_table_csv" in outputs:
        run.log_metrics(summary_metrics(outputs["paper_table_csv"]), step=0)
    run_id = run.run_id
    run.end()
    return run_id


def preset_verdicts(params: dict[str, Any], layout: Layout, made: str) -> list[Path]:
    """results/<preset>/claims.{md,csv,html,png}: the verdicts on the claims this preset tests and their forest
    plot, from the tables this report has just written (the same rule as `trickbench claims` over every preset)."""
    from trickbench.claims import forest_plot

    claims = claims_report(params, made)
    if claims is None:
        return []
    table, markdown = claims
    paths = claims_outputs(params, layout)
    write_table(table, {"csv": paths["csv"], "html": paths["html"]})
    write_text(paths["md"], markdown)
    forest_plot(table.csv_frame, paths["png"], dpi=params["report"]["dpi"])
    return list(paths.values())


def refresh_verdicts(params: dict[str, Any], layout: Layout) -> list[Path]:
    """A preset's claims files rewritten from its committed results alone, after the claims code changed:
    the provenance line from runs.csv's provenance columns and the data digest from the results manifest,
    so the artifacts the full report needs (predictions, checkpoints) are not. [] for params of no preset
    or a preset without committed runs."""
    if not layout.runs_table.is_file():
        return []
    runs = pd.read_csv(layout.runs_table)
    present = [key for key in provenance.KEYS if key in runs.columns]
    records = [{"provenance": dict(zip(present, map(str, row)))} for row in runs[present].itertuples(index=False)]
    manifest = manifest_file(layout)
    data_digest = read_json(manifest).get("data_digest") if manifest.is_file() else None
    return preset_verdicts(params, layout, extend_footer(provenance.footer(records), params, data_digest))


def report(params: dict[str, Any], layout: Layout) -> list[Path]:
    from trickbench.io import write_json

    tracking.check_store(params)  # a store MLflow cannot use fails before any output is written
    # read every input first: a missing run or ensemble fails the stage before any output is written
    collected = {study: collect(params, layout, study) for study in params["studies"]}
    for path in [*(layout.ensemble_json(study) for study in params["studies"]), layout.manifest,
                 layout.stats_json, layout.stats_arrays]:
        if not path.is_file():
            raise MissingInputError(f"{path}: missing; run the stages before report first")
    for study in params["studies"]:  # their shapes too, before the first output
        read_ensemble(layout.ensemble_json(study))
    read_manifest(layout.manifest)
    written = [spectrum(params, layout),
               *write_table(class_counts_table(read_manifest(layout.manifest)), class_counts_outputs(layout))]
    all_records, all_curves, headlines, study_paths = [], [], {}, {}
    for study, data in collected.items():
        study_paths[study] = study_report(params, layout, study, data)
        written += study_paths[study]
        all_records += data.records
        all_curves.append(data.curves)
        paper_csv = study_outputs(params, layout, study).get("paper_table_csv")
        headlines[study] = headline(data.records, read_ensemble(layout.ensemble_json(study)), paper_csv)
    made = footer(params, layout, all_records)
    write_table(runs_table(all_records, made), {"csv": layout.runs_table, "html": runs_html(layout)})
    with atomic_path(curves_table(layout)) as tmp:
        curves_frame(all_curves).to_csv(tmp, index=False)
    write_json(metrics_file(layout), finite_or_none(headlines))
    claims = preset_verdicts(params, layout, made)  # reads the tables just written
    written += claims
    summary_runs = {study: log_summary_run(params, layout, study, data, study_paths[study] + claims)
                    for study, data in collected.items()}
    write_manifest(manifest_file(layout), report_manifest(params, layout, collected, summary_runs))
    outputs = [layout.runs_table, runs_html(layout), curves_table(layout), metrics_file(layout), manifest_file(layout),
               *written]
    # the record of this report (not committed): what makes a fresh clone's `snakemake` run the pipeline
    write_json(layout.report_record, {"outputs": [str(path) for path in outputs],
                                      "runs": [r["run_digest"] for r in all_records],
                                      "sha256": output_digests(outputs)})
    return outputs
