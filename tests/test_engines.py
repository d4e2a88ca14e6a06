"""End to end: the tiny pipeline through Snakemake and through DVC, for real, in temporary copies."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, mlflow_runs, tiny_params, write_params
from trickbench import tracking

pytestmark = pytest.mark.slow
POINTS = ["activation-relu__seed-0", "activation-relu__seed-1", "activation-rrelu__seed-0", "activation-rrelu__seed-1"]


def engine_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    return env


def run(command: list[str], workdir: Path, timeout: int = 900) -> str:
    done = subprocess.run(command, cwd=workdir, env=engine_env(workdir), capture_output=True, text=True,
                          timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def copy_project(target: Path, params: dict) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", target)
    shutil.copy(REPO / "dvc.yaml", target)
    shutil.copytree(REPO / "workflow", target / "workflow")
    write_params(target / "params.yaml", params)
    return target


def edit_params(workdir: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params[section][key] = value
    write_params(workdir / "params.yaml", params)


def snakemake_jobs(workdir: Path) -> list[str]:
    output = run([str(BIN / "snakemake"), "-n", "--cores", "2"], workdir)
    return [job for job in re.findall(r"^rule (\w+):", output, flags=re.M) if job != "all"]


@pytest.fixture(scope="module")
def snakemake_project(tmp_path_factory):
    workdir = copy_project(tmp_path_factory.mktemp("smk"), tiny_params())
    run([str(BIN / "snakemake"), "--cores", "2"], workdir)
    return workdir


def test_snakemake_builds_every_declared_output(snakemake_project):
    for point in POINTS:
        for name in ("metrics.json", "history.csv", "batch_loss.csv", "predictions.npz", "model.pt", "diagnostics.json"):
            assert (snakemake_project / "artifacts/runs/acts" / point / name).is_file()
    results = snakemake_project / "results"
    for name in ("runs.csv", "data/pca_spectrum.png", "data/class_counts.md", "acts/summary.md", "acts/activations.tex",
                 "acts/ensembles.csv", "acts/learning_curves.png", "acts/comparison.png"):
        assert (results / name).stat().st_size > 0, name
    summary = (results / "acts/activations.md").read_text()
    assert "| rrelu |" in summary and "±" in summary


def test_snakemake_second_run_has_nothing_to_do(snakemake_project):
    output = run([str(BIN / "snakemake"), "-n", "--cores", "2"], snakemake_project)
    assert "Nothing to be done" in output


def test_mlflow_has_one_full_run_per_grid_point(snakemake_project):
    uri = f"sqlite:///{snakemake_project / 'mlflow.db'}"
    runs = [r for r in mlflow_runs(uri, "trickbench-acts") if r.data.tags.get("trickbench.grid_point")]
    assert sorted(r.data.tags["trickbench.grid_point"] for r in runs) == sorted(POINTS)
    for run in runs:
        assert run.data.params["activation"] in ("relu", "rrelu") and run.data.params["epochs"] == "2"
        assert run.data.tags["trickbench.status"] == "completed"
        for tag in ("trickbench.git_commit", "trickbench.params_digest", "trickbench.data_digest"):
            assert run.data.tags[tag]
        history = tracking.metric_history(uri, run.info.run_id, "val_error")
        assert [m.step for m in history] == [1, 2]
        assert "final_test_error" in run.data.metrics
    summaries = [r for r in mlflow_runs(uri, "trickbench-acts") if r.data.tags.get("trickbench.kind") == "summary"]
    assert len(summaries) == 1


def test_snakemake_reruns_exactly_what_an_edit_touches(snakemake_project):
    edit_params(snakemake_project, "report", "dpi", 90)
    assert snakemake_jobs(snakemake_project) == ["report"]
    edit_params(snakemake_project, "train", "epochs", 3)
    jobs = snakemake_jobs(snakemake_project)
    assert sorted(jobs) == sorted(["train"] * 4 + ["ensemble", "report"])
    edit_params(snakemake_project, "report", "dpi", 120)
    edit_params(snakemake_project, "train", "epochs", 2)


def test_fresh_clone_with_committed_results_runs_the_whole_pipeline(snakemake_project, tmp_path):
    """results/ is committed, artifacts/ is not: a fresh clone's `snakemake` must still train every point."""
    clone = copy_project(tmp_path / "clone", tiny_params())
    shutil.copytree(snakemake_project / "results", clone / "results")
    jobs = snakemake_jobs(clone)
    assert sorted(jobs) == sorted(["tracking", "download", "prepare", "stats", *["train"] * 4, "ensemble", "report"])


def test_tracking_edits_rerun_no_compute(snakemake_project):
    for key, value in (("experiment_prefix", "renamed"), ("enabled", False)):
        edit_params(snakemake_project, "tracking", key, value)
        assert snakemake_jobs(snakemake_project) == ["tracking"], key
    edit_params(snakemake_project, "tracking", "experiment_prefix", "trickbench")
    edit_params(snakemake_project, "tracking", "enabled", True)
    run([str(BIN / "snakemake"), "--cores", "2"], snakemake_project)  # the record back as it was
    assert "Nothing to be done" in run([str(BIN / "snakemake"), "-n", "--cores", "2"], snakemake_project)


def test_every_result_says_where_it_was_made(snakemake_project):
    import torch

    from trickbench.provenance import KEYS, cpu_model

    uri = f"sqlite:///{snakemake_project / 'mlflow.db'}"
    for point in POINTS:
        made = json.loads((snakemake_project / "artifacts/runs/acts" / point / "metrics.json").read_text())["provenance"]
        assert set(KEYS) <= set(made)
        assert made["cpu"].startswith(cpu_model()) and made["torch"] == torch.__version__ and made["threads"] == 1
        assert made["gpu"] == "none" and made["git_commit"]
    runs = [r for r in mlflow_runs(uri, "trickbench-acts") if r.data.tags.get("trickbench.grid_point")]
    for run_ in runs:
        assert run_.data.tags["trickbench.cpu"].startswith(cpu_model())
        assert run_.data.tags["trickbench.torch"] == torch.__version__
        assert run_.data.tags["mlflow.source.git.commit"] == made["git_commit"].removesuffix("-dirty")
    header = (snakemake_project / "results/runs.csv").read_text().splitlines()[0].split(",")
    assert set(KEYS) <= set(header)
    for table in ("summary", "activations", "paper_table", "ensembles"):
        last = (snakemake_project / f"results/acts/{table}.md").read_text().strip().splitlines()[-1]
        assert last.startswith("_Runs made on ") and cpu_model() in last and f"torch {torch.__version__}" in last


def test_dvc_after_snakemake_logs_nothing_twice(snakemake_project):
    """The same project driven by Snakemake, then by DVC: DVC redoes the data stages (it has no lock yet),
    but MLflow keeps one run per piece of work; a tracking.* edit reruns only DVC's tracking stage."""
    uri = f"sqlite:///{snakemake_project / 'mlflow.db'}"
    run(["git", "init", "-q"], snakemake_project)
    run([str(BIN / "dvc"), "init", "-q"], snakemake_project)
    run([str(BIN / "dvc"), "repro"], snakemake_project)
    data_runs = sorted(r.info.run_name for r in mlflow_runs(uri, "trickbench-data"))
    assert data_runs == ["prepare", "stats"]
    runs = mlflow_runs(uri, "trickbench-acts")
    assert sorted(r.info.run_name for r in runs) == sorted([*POINTS, "summary-acts"])
    edit_params(snakemake_project, "tracking", "experiment_prefix", "renamed")
    ran = re.findall(r"Running stage '([^']+)'", run([str(BIN / "dvc"), "repro"], snakemake_project))
    assert ran == ["tracking"]


def test_dvc_repro_and_same_numbers_as_snakemake(snakemake_project, tmp_path):
    workdir = copy_project(tmp_path / "dvc", tiny_params())
    run(["git", "init", "-q"], workdir)
    run([str(BIN / "dvc"), "init", "-q"], workdir)
    first = run([str(BIN / "dvc"), "repro"], workdir)
    for stage in ("tracking", "download", "prepare", "stats", "train@acts", "ensemble@acts", "report"):
        assert f"Running stage '{stage}'" in first
    for point in POINTS:
        ours = json.loads((workdir / "artifacts/runs/acts" / point / "metrics.json").read_text())
        theirs = json.loads((snakemake_project / "artifacts/runs/acts" / point / "metrics.json").read_text())
        for metric in ("train_loss", "val_loss", "test_loss", "test_error"):
            assert ours[metric] == theirs[metric], (point, metric)

    assert "Running stage" not in run([str(BIN / "dvc"), "repro"], workdir)
    edit_params(workdir, "report", "dpi", 90)
    ran = re.findall(r"Running stage '([^']+)'", run([str(BIN / "dvc"), "repro"], workdir))
    assert ran == ["report"]
    edit_params(workdir, "train", "epochs", 3)
    ran = re.findall(r"Running stage '([^']+)'", run([str(BIN / "dvc"), "repro"], workdir))
    assert sorted(ran) == ["ensemble@acts", "report", "train@acts"]
    metrics = json.loads((workdir / "artifacts/runs/acts" / POINTS[0] / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
