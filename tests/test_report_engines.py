"""Where the researcher reads it, for real on the tiny config in a temporary copy: `snakemake --report`
builds the HTML report from the marked outputs, and `dvc plots show` / `dvc metrics show` read what the
report stage declared in dvc.yaml."""
from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import BIN, REPO, mlflow_runs, tiny_params, write_params
from trickbench import tracking

pytestmark = pytest.mark.slow


def env(workdir: Path) -> dict[str, str]:
    values = dict(os.environ)
    values["PATH"] = f"{BIN}:{values['PATH']}"
    values["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    values["DVC_NO_ANALYTICS"] = "1"
    return values


def run(command: list[str], workdir: Path, timeout: int = 900) -> str:
    done = subprocess.run(command, cwd=workdir, env=env(workdir), capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("report")
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copy(REPO / "dvc.yaml", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    params = tiny_params()
    params["train"]["epochs"] = 3  # enough for the diagnosis' learning-rate rules
    params["studies"]["acts"]["axes"] = {"activation": ["relu", "prelu"], "initializer": ["he_normal", "zeros"],
                                         "seed": [0]}
    params["report"]["paper_table"]["reference"] = "cifar10"
    write_params(workdir / "params.yaml", params)
    run([str(BIN / "snakemake"), "--cores", "2"], workdir)
    return workdir


def test_snakemake_report_shows_every_marked_table_and_figure(project):
    run([str(BIN / "snakemake"), "--cores", "1", "--report", "results/report.zip"], project)
    with zipfile.ZipFile(project / "results" / "report.zip") as archive:
        names = archive.namelist()
    for name in ("paper_table.html", "diagnosis.html", "learning_curves.png", "batch_loss.png", "accuracy_gap.png",
                 "init_activation_heatmap.png", "init_activation_std.png", "dead_units.png", "ensemble_gains.png",
                 "ensembles.html", "runs.html", "pca_spectrum.png"):  # tables as HTML: shown inline
        assert any(n.endswith(name) for n in names), name
    run([str(BIN / "snakemake"), "--cores", "1", "--report", "results/report.html"], project)
    html = (project / "results" / "report.html").read_text(errors="replace")
    assert "paper_table.html" in html and "rolling minimum" in html  # the captions are embedded


def test_the_study_summary_run_in_mlflow_holds_the_report(project):
    uri = f"sqlite:///{project / 'mlflow.db'}"
    summaries = [r for r in mlflow_runs(uri, "trickbench-acts") if r.data.tags.get("trickbench.kind") == "summary"]
    assert len(summaries) == 1
    artifacts = {Path(a.path).name for a in tracking.client(uri).list_artifacts(summaries[0].info.run_id, "report")}
    assert {"paper_table.md", "paper_table.csv", "diagnosis.md", "batch_loss.png", "pca_spectrum.png"} <= artifacts
    assert "test_error_mean.relu" in summaries[0].data.metrics


def test_dvc_plots_and_metrics_show(project):
    run(["git", "init", "-q"], project)
    run([str(BIN / "dvc"), "init", "-q"], project)
    output = run([str(BIN / "dvc"), "plots", "show", "-o", "dvc_plots"], project)
    html = (project / "dvc_plots" / "index.html").read_text()
    assert "acts/activation-prelu__initializer-zeros__seed-0" in html  # one line per run
    assert "validation error per epoch" in html and "dvc_plots" in output
    metrics = run([str(BIN / "dvc"), "metrics", "show"], project)
    assert "results/metrics.json" in metrics and "best_single" in metrics
