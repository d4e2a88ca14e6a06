"""The report stage without the engines: outputs are a pure function of params, and every declared file is
written from crafted run artifacts (no training)."""
from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, tiny_params
from trickbench.grid import expand_grid
from trickbench.io import write_json
from trickbench.params import validate
from trickbench.paths import Layout
from trickbench.report.outputs import REPORT_ITEMS, report_entries, report_outputs, study_outputs
from trickbench.stages.ensemble import ensemble
from trickbench.stages.report import report

CLASSES = 3


def params_with(studies: dict, tmp_path: Path, **report) -> dict:
    params = tiny_params()
    params["studies"] = studies
    params["paths"] = {"artifacts": str(tmp_path / "artifacts"), "results": str(tmp_path / "results")}
    params["tracking"]["enabled"] = False
    params["report"].update(report)
    return validate(params)


def keys_of(params: dict, tmp_path: Path, study: str) -> set[str]:
    return set(study_outputs(params, Layout.from_params(params), study))


def test_outputs_depend_only_on_the_axes(tmp_path):
    params = params_with({
        "both": {"axes": {"activation": ["relu", "prelu"], "initializer": ["zeros", "he_normal"], "seed": [0]}},
        "lrs": {"axes": {"lr": [0.01, 0.1], "seed": [0, 1]}},
        "regs": {"axes": {"regularizers": [[], ["l2"]]}},
        "inits": {"axes": {"initializer": ["zeros", "he_normal"]}},
    }, tmp_path)
    common = {"summary_md", "summary_csv", "summary_tex", "summary_html", "ensembles_md", "ensembles_csv",
              "ensembles_tex", "ensembles_html", "diagnosis_md", "diagnosis_csv", "diagnosis_html", "learning_curves", "comparison", "accuracy_gap", "batch_loss",
              "ensemble_gains"}
    paper = {f"{name}_{ext}" for name in ("activations", "paper_table") for ext in ("md", "csv", "tex", "html")}
    assert keys_of(params, tmp_path, "both") == common | paper | {"dead_units", "init_activation_std",
                                                                   "init_activation_heatmap"}
    assert keys_of(params, tmp_path, "lrs") == common | {"lr_curves"}
    assert keys_of(params, tmp_path, "regs") == common
    assert keys_of(params, tmp_path, "inits") == common | {"init_activation_std"}  # no heatmap without activation
    assert report_outputs(params, Layout.from_params(params)) == report_outputs(copy.deepcopy(params),
                                                                                Layout.from_params(params))
    svg = params_with({"lrs": {"axes": {"lr": [0.1]}}}, tmp_path, figure_format="svg")
    assert study_outputs(svg, Layout.from_params(svg), "lrs")["lr_curves"].suffix == ".svg"


def test_every_shown_output_has_a_caption_file(tmp_path):
    params = params_with({"both": {"axes": {"activation": ["relu"], "initializer": ["zeros"], "lr": [0.1]}}}, tmp_path)
    entries = report_entries(params, Layout.from_params(params))
    shown = [e for e in entries if e.caption]
    assert {e.caption for e in shown} >= {item[1] for item in REPORT_ITEMS.values()}
    for entry in shown:
        assert (REPO / "workflow" / "report" / f"{entry.caption}.rst").is_file(), entry.caption
    assert all(e.path.suffix in (".html", ".png") for e in shown)  # tables as HTML (shown inline), figures as images
    declared = report_outputs(params, Layout.from_params(params))
    assert len(set(declared)) == len(declared) == len(entries)  # each output declared once


# ------------------------------------------------------------------------------------------ crafted runs

LABELS = {split: np.random.default_rng(1).integers(0, CLASSES, 30) for split in ("val", "test")}


def write_run(layout: Layout, point, rng: np.random.Generator, diverged: bool = False) -> None:
    run_dir = layout.run_dir(point.study, point.point_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    epochs, batches = 6, 8
    skill = 1.0 + (0.5 if point.axes.get("activation") == "prelu" else 0.0) + 0.1 * point.axes.get("seed", 0)
    loss = [math.log(CLASSES) * math.exp(-0.3 * skill * e) for e in range(1, epochs + 1)]
    if diverged:
        loss[-2:] = [math.inf, math.nan]
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_loss", "train_error", "val_loss", "val_error", "lr", "seconds"])
        for epoch, value in enumerate(loss, 1):
            writer.writerow([epoch, value, value / 3, value * 1.2, value / 2.5, 0.1, 0.01])
    with open(run_dir / "batch_loss.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "batch", "loss"])
        for epoch in range(epochs):
            for batch in range(batches):
                writer.writerow([epoch, batch, loss[epoch] * (1 + 0.2 * rng.normal())])
    layers = ["blocks.stage1.act1", "blocks.stage2.act1"]
    write_json(run_dir / "diagnostics.json", {
        "init_activation_stats": [{"layer": name, "mean": 0.1, "std": 0.0 if point.axes.get("initializer") == "zeros"
                                   else 0.8 / (i + 1)} for i, name in enumerate(layers)],
        "dead_units": [] if diverged else [{"layer": name, "dead_fraction": 0.1 * i, "units": 8}
                                           for i, name in enumerate(layers)]})
    labels = LABELS  # one prepared data set: every run is evaluated on the same images
    predictions = {}
    metrics = {"epochs_run": float(epochs)}
    for split in ("train", "val", "test"):
        metrics[f"{split}_loss"] = math.nan if diverged else loss[-1] * (1.0 if split == "train" else 1.3)
        metrics[f"{split}_error"] = math.nan if diverged else 0.1 / skill * (1.0 if split == "train" else 2.0)
    if not diverged:
        for split, y in labels.items():
            logits = rng.normal(size=(30, CLASSES))
            logits[np.arange(30), y] += skill
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            predictions |= {f"{split}_probs": p, f"{split}_labels": y}
        predictions["snapshot_val_probs"] = np.stack([predictions["val_probs"]] * 2)
        predictions["snapshot_test_probs"] = np.stack([predictions["test_probs"]] * 2)
    np.savez(run_dir / "predictions.npz", **predictions)
    write_json(run_dir / "metrics.json", {"study": point.study, "point_id": point.point_id, "axes": point.axes,
                                          "config": point.config, "status": "diverged" if diverged else "completed",
                                          "run_digest": point.config_digest,  # as train_point writes one
                                          **metrics})


@pytest.fixture
def crafted(tmp_path):
    from trickbench.data.stats import compute_stats

    params = params_with({
        "acts": {"description": "crafted", "axes": {"activation": ["relu", "prelu", "rrelu"],
                                                    "initializer": ["he_normal", "zeros"], "seed": [0, 1, 2]}},
        "lrs": {"axes": {"lr": [0.001, 0.1, 10.0], "seed": [0, 1]}},
    }, tmp_path, paper_table={"metrics": ["train_error", "test_error"], "reference": "cifar10",
                              "note": "SCALED test run"})
    layout = Layout.from_params(params)
    rng = np.random.default_rng(0)
    for point in expand_grid(params):
        write_run(layout, point, rng, diverged=point.axes.get("lr") == 10.0)
    images = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    summary, arrays = compute_stats(images)
    write_json(layout.stats_json, summary)
    np.savez(layout.stats_arrays, **arrays)
    write_json(layout.manifest, {"class_names": [f"c{i}" for i in range(CLASSES)], "source": "crafted",
                                 "digest": "0" * 64, "class_counts": {split: [5] * CLASSES for split in ("train", "val", "test")}})
    for study in params["studies"]:
        ensemble(params, layout, study)
    return params, layout


def test_report_writes_exactly_the_declared_outputs(crafted):
    params, layout = crafted
    written = report(params, layout)
    declared = report_outputs(params, layout)
    assert sorted(map(str, written)) == sorted(map(str, declared))
    for path in declared:
        assert path.stat().st_size > 0, path
    results = layout.results
    files = {p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file()}
    assert files == {p.relative_to(results).as_posix() for p in declared}  # nothing undeclared

    paper = (results / "acts" / "paper_table.md").read_text()
    assert "SCALED test run" in paper and "Xu et al. 2015, Table 3" in paper
    assert "| relu | 6 |" in paper and "0.1245" in paper and "ttest_rel" in paper
    numeric = pd.read_csv(results / "acts" / "paper_table.csv")
    assert list(numeric["activation"]) == ["relu", "prelu", "rrelu"]
    assert numeric.loc[1, "test_error_pairs"] == 6  # paired on seed and initializer

    diagnosis = pd.read_csv(results / "lrs" / "diagnosis.csv")
    assert set(diagnosis.loc[diagnosis["status"] == "diverged", "verdict"]) == {"diverged"}
    assert "**diverged**" in (results / "lrs" / "diagnosis.md").read_text()

    curves = pd.read_csv(results / "curves.csv")
    assert {"run", "study", "point_id", "epoch", "val_error", "train_loss"} <= set(curves.columns)
    assert curves["run"].str.startswith(("acts/", "lrs/")).all()
    assert not np.isinf(curves.select_dtypes("number").to_numpy()).any()
    headline = json.loads((results / "metrics.json").read_text())
    assert headline["lrs"]["runs"] == 6 and headline["lrs"]["completed"] == 4
    assert set(headline["acts"]["activations"]) == {"relu", "prelu", "rrelu"}

    ensembles = pd.read_csv(results / "acts" / "ensembles.csv")
    assert {"best_single", "top_k", "seeds", "snapshot"} <= set(ensembles["kind"])
    assert ensembles["best_single_test_error"].nunique() == 1  # all against the same best single model
