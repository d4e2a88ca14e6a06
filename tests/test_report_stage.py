"""The report stage without the engines: outputs are a pure function of params, and every declared file is
written from crafted run artifacts (no training; conftest.crafted)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, report_params
from trickbench.io import read_json
from trickbench.paths import Layout
from trickbench.report import figures
from trickbench.report.outputs import REPORT_ITEMS, report_entries, report_outputs, study_figures, study_outputs, study_tables
from trickbench.report.study import FIGURES, TABLES, Study
from trickbench.metrics import mean_class_recall
from trickbench.stages.report import collect, report


def keys_of(params: dict, tmp_path: Path, study: str) -> set[str]:
    return set(study_outputs(params, Layout.from_params(params), study))


def test_outputs_depend_only_on_the_axes(tmp_path):
    params = report_params({
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
    svg = report_params({"lrs": {"axes": {"lr": [0.1]}}}, tmp_path, figure_format="svg")
    assert study_outputs(svg, Layout.from_params(svg), "lrs")["lr_curves"].suffix == ".svg"


def test_every_shown_output_has_a_caption_file(tmp_path):
    params = report_params({"both": {"axes": {"activation": ["relu"], "initializer": ["zeros"], "lr": [0.1]}}}, tmp_path)
    entries = report_entries(params, Layout.from_params(params))
    shown = [e for e in entries if e.caption]
    assert {e.caption for e in shown} >= {item[1] for item in REPORT_ITEMS.values()}
    for entry in shown:
        assert (REPO / "workflow" / "report" / f"{entry.caption}.rst").is_file(), entry.caption
    assert all(e.path.suffix in (".html", ".png") for e in shown)  # tables as HTML (shown inline), figures as images
    declared = report_outputs(params, Layout.from_params(params))
    assert len(set(declared)) == len(declared) == len(entries)  # each output declared once


def test_report_writes_exactly_the_declared_outputs(crafted):
    params, layout = crafted
    written = report(params, layout)
    declared = report_outputs(params, layout)
    assert sorted(map(str, written)) == sorted(map(str, declared))
    results = layout.results
    files = {p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file()}
    assert files == {p.relative_to(results).as_posix() for p in declared}  # nothing undeclared

    paper = (results / "acts" / "paper_table.md").read_text()
    assert "SCALED test run" in paper and "Xu et al. 2015, Table 3" in paper
    assert "| relu | 6 |" in paper and "0.1245" in paper and "ttest_rel" in paper
    numeric = pd.read_csv(results / "acts" / "paper_table.csv")
    assert list(numeric["activation"]) == ["relu", "prelu", "rrelu"]
    assert numeric.loc[1, "test_error_pairs"] == 6  # paired on seed and initializer

    # the runs table's mean per-class recall is the run's own test predictions'
    runs = pd.read_csv(results / "runs.csv").set_index("point_id")
    for point_id, row in runs[runs["study"] == "acts"].iterrows():
        with np.load(layout.run_files("acts", point_id).predictions) as arrays:
            expected = mean_class_recall(arrays["test_probs"], arrays["test_labels"])
        assert row["test_mean_recall"] == pytest.approx(expected, abs=1e-12)
    assert runs.loc[runs["status"] == "diverged", "test_mean_recall"].isna().all()

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
    study_wide = ensembles[~ensembles["kind"].isin(["top_k_of_seed", "snapshot_of_run"])]
    assert study_wide["best_single_test_error"].nunique() == 1  # all against the same best single model
    # a snapshot row per completed run, each against that run itself
    per_run = ensembles[ensembles["kind"] == "snapshot_of_run"]
    assert per_run["label"].is_unique and len(per_run) == headline["acts"]["completed"]


def test_the_same_inputs_give_the_same_bytes(crafted):
    """Tables, figures (jittered dots included), headline and manifest: a second report over the same runs
    rewrites every file byte for byte (the report record holds their digests)."""
    params, layout = crafted
    declared = report(params, layout)
    first = {path: path.read_bytes() for path in declared}
    assert report(params, layout) == declared
    assert [path for path in declared if path.read_bytes() != first[path]] == []


def test_each_declared_table_and_figure_has_its_maker(tmp_path):
    """report/outputs.py names the tables and figures; report/study.py has a maker for each of them, and
    only for them (a study varying every axis that adds one has them all)."""
    params = report_params({"all": {"axes": {"activation": ["relu"], "initializer": ["zeros"], "lr": [0.1]}}}, tmp_path)
    assert study_tables(params, "all") == list(TABLES)
    assert study_figures(params, "all") == list(FIGURES)


def test_study_figures_plot_the_study_runs(crafted):
    """The study's figures are drawn from its runs: test error by activation over completed runs, one
    batch-loss panel per learning rate (the lowest seed's run), the heatmap's initializer x activation."""
    params, layout = crafted
    acts = Study("acts", params, collect(params, layout, "acts"), read_json(layout.ensemble_json("acts")), "")
    comparison = FIGURES["comparison"](acts)
    axis = comparison.axes[0]
    assert axis.get_title() == "acts: test error by activation"
    assert [t.get_text() for t in axis.get_xticklabels()] == ["relu", "prelu", "rrelu"]
    done = acts.frame[acts.frame["status"] == "completed"]
    expected = done.groupby(["initializer", "activation"], sort=False)["test_error"].mean()  # hue: initializer
    heights = [bar.get_height() for container in axis.containers for bar in container]
    assert heights == pytest.approx([expected[(i, a)] for i in ("he_normal", "zeros") for a in ("relu", "prelu", "rrelu")])
    heatmap = FIGURES["init_activation_heatmap"](acts).axes[0]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == ["he_normal", "zeros"]

    lrs = Study("lrs", params, collect(params, layout, "lrs"), read_json(layout.ensemble_json("lrs")), "")
    panels = [a for a in FIGURES["batch_loss"](lrs).axes if a.get_visible()]
    assert [a.get_title() for a in panels] == ["lr = 0.001", "lr = 0.1", "lr = 10.0"]
    lowest = next(p.point_id for p in lrs.points if p.axes["lr"] == 0.001)
    np.testing.assert_allclose(panels[0].lines[0].get_ydata(), lrs.data.batches[lowest]["loss"])
    figures.plt.close("all")
