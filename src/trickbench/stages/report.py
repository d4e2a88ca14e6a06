"""Stage report: one tidy table of all runs -> tables and figures under results/, and an MLflow summary run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trickbench import tracking
from trickbench.grid import axis_keys, study_points
from trickbench.io import atomic_path, read_json, write_text
from trickbench.paths import Layout


def collect(params: dict[str, Any], layout: Layout, study: str) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    records, curves = [], []
    for point in study_points(params, study):
        run_dir = layout.run_dir(study, point.point_id)
        records.append(read_json(run_dir / "metrics.json"))
        history = pd.read_csv(run_dir / "history.csv")
        for key, value in point.axes.items():
            history[key] = "+".join(value) if isinstance(value, list) else value
        history["point_id"] = point.point_id
        curves.append(history)
    return records, pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()


def save_figure(figure: Any, path: Path, params: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=params["report"]["figure_format"], dpi=params["report"]["dpi"], bbox_inches="tight")
    plt.close(figure)
    return path


def write_table(table: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    from trickbench.report.tables import to_latex, to_markdown

    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex")]
    write_text(paths[0], f"{caption}\n\n{to_markdown(table)}")
    with atomic_path(paths[1]) as tmp:
        table.to_csv(tmp, index=False)
    write_text(paths[2], to_latex(table, caption))
    return paths


def study_outputs(params: dict[str, Any], layout: Layout, study: str) -> dict[str, Path]:
    """Every file the report writes for a study (the engines declare exactly these)."""
    out, fmt = layout.study_results(study), params["report"]["figure_format"]
    keys = axis_keys(study_points(params, study))
    outputs = {f"{name}_{ext}": out / f"{name}.{ext}" for name in ("summary", "ensembles") for ext in ("md", "csv", "tex")}
    if "activation" in keys:
        outputs |= {f"activations_{ext}": out / f"activations.{ext}" for ext in ("md", "csv", "tex")}
    outputs["learning_curves"] = out / f"learning_curves.{fmt}"
    outputs["comparison"] = out / f"comparison.{fmt}"
    return outputs


def report_outputs(params: dict[str, Any], layout: Layout) -> list[Path]:
    paths = [layout.runs_table, layout.spectrum_figure]
    for study in params["studies"]:
        paths += list(study_outputs(params, layout, study).values())
    return paths


def study_report(params: dict[str, Any], layout: Layout, study: str) -> list[Path]:
    from trickbench.report.figures import comparison_figure, study_curves_figure
    from trickbench.report.tables import display_table, runs_frame, summary_table

    records, curves = collect(params, layout, study)
    frame = runs_frame(records)
    keys = axis_keys(study_points(params, study))
    group_keys = [k for k in keys if k != "seed"]
    metrics = params["report"]["metrics"]
    outputs = study_outputs(params, layout, study)
    stem = lambda key: outputs[f"{key}_md"].with_suffix("")  # noqa: E731

    summary = summary_table(frame, group_keys, metrics)
    write_table(display_table(summary, group_keys, metrics), stem("summary"),
                f"Study `{study}`: final metrics, mean ± std over seeds (n = seeds).")
    if "activation" in keys:
        by_activation = summary_table(frame, ["activation"], metrics)
        write_table(display_table(by_activation, ["activation"], metrics), stem("activations"),
                    f"Study `{study}`: per activation, mean ± std over seeds and the other axes.")
    ensemble = read_json(layout.ensemble_json(study))
    columns = ["kind", "label", "size", "test_error", "test_loss", "best_single_test_error", "gain_test_error"]
    table = pd.DataFrame(ensemble["rows"], columns=None if ensemble["rows"] else columns)
    write_table(table[columns].round(4), stem("ensembles"),
                f"Study `{study}`: ensembles (members chosen by {ensemble['metric']}) against the best single model.")

    hue = "activation" if "activation" in keys else (group_keys[0] if group_keys else "point_id")
    curve_metric = params["report"]["curve_metric"]
    save_figure(study_curves_figure(curves, curve_metric, hue, f"{study}: {curve_metric} per epoch"),
                outputs["learning_curves"], params)
    other = next((k for k in group_keys if k != hue), None)
    done = frame[frame["status"] == "completed"]
    save_figure(comparison_figure(done, "test_error", hue, other, f"{study}: test error by {hue}"),
                outputs["comparison"], params)
    return list(outputs.values())


def spectrum(params: dict[str, Any], layout: Layout) -> Path:
    import numpy as np

    from trickbench.data.stats import plot_spectrum

    with np.load(layout.stats_arrays) as arrays:
        figure = plot_spectrum(read_json(layout.stats_json), {key: arrays[key] for key in arrays.files})
    return save_figure(figure, layout.spectrum_figure, params)


def report(params: dict[str, Any], layout: Layout) -> list[Path]:
    from trickbench.report.tables import runs_frame

    written = [spectrum(params, layout)]
    all_records = []
    for study in params["studies"]:
        paths = study_report(params, layout, study)
        written += paths
        all_records += [read_json(layout.run_dir(study, p.point_id) / "metrics.json") for p in study_points(params, study)]
        run = tracking.open_run(params, tracking.experiment_name(params, study), f"summary-{study}",
                                {"trickbench.study": study, "trickbench.kind": "summary"}, {"report": params["report"]})
        for path in paths + [layout.spectrum_figure]:
            run.log_artifact(path, "report")
        run.end()
    with atomic_path(layout.runs_table) as tmp:
        runs_frame(all_records).to_csv(tmp, index=False)
    return [layout.runs_table, *written]
