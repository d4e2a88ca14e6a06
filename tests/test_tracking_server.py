"""Tracking server mode: every job of a Snakemake run logs to one `mlflow server` (what a cluster needs:
SQLite on a network file system is unsafe). A real server on 127.0.0.1, stopped afterwards."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO, mlflow_runs, mlflow_server, tiny_params, write_params
from trickbench import tracking

pytestmark = pytest.mark.slow
POINTS = ["activation-relu__seed-0", "activation-relu__seed-1", "activation-rrelu__seed-0", "activation-rrelu__seed-1"]
STABLE, UNSTABLE = "lr-0.05", "lr-100.0"


@pytest.fixture(scope="module")
def mlflow_server_fixture(tmp_path_factory):
    store = tmp_path_factory.mktemp("server")
    with mlflow_server(store) as (uri, _process):
        yield uri, store


def copy_project(target: Path, params: dict) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", target)
    shutil.copytree(REPO / "workflow", target / "workflow")
    write_params(target / "params.yaml", params)
    return target


def test_pipeline_logs_every_run_to_the_server(mlflow_server_fixture, tmp_path):
    """The tiny study plus a study whose second point diverges (lr 100): every job logs to the server;
    the diverged point ends as `diverged` without stopping the rest (see also test_divergence.py)."""
    uri, store = mlflow_server_fixture
    params = tiny_params()
    params["studies"]["lr"] = {"axes": {"lr": [0.05, 100.0]}}
    params["tracking"]["uri"] = uri  # the params route; the environment route is tested below
    workdir = copy_project(tmp_path / "project", params)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI")
    done = subprocess.run(["timeout", "-k", "10", "600", str(BIN / "snakemake"), "--cores", "2"], cwd=workdir,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlartifacts").exists(), "a local store was used"
    client = tracking.client(uri)
    for study, points in (("acts", POINTS), ("lr", [STABLE, UNSTABLE])):
        runs = [r for r in mlflow_runs(uri, f"trickbench-{study}") if r.data.tags.get("trickbench.grid_point")]
        assert sorted(r.data.tags["trickbench.grid_point"] for r in runs) == sorted(points)  # one run per point
        for run in runs:
            diverged = run.data.tags["trickbench.grid_point"] == UNSTABLE
            assert run.data.tags["trickbench.status"] == ("diverged" if diverged else "completed")
            assert run.info.status == ("FAILED" if diverged else "FINISHED")
            epochs = [1] if diverged else [1, 2]  # a diverged run stops after the epoch that diverged
            for key in ("train_loss", "val_loss", "val_error", "lr"):
                assert [m.step for m in tracking.metric_history(uri, run.info.run_id, key)] == epochs, key
            assert "final_test_error" in run.data.metrics
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"metrics.json", "history.csv", "learning_curves.png"} <= artifacts
        assert any(r.data.tags.get("trickbench.kind") == "summary" for r in mlflow_runs(uri, f"trickbench-{study}"))
    data_runs = {r.info.run_name for r in mlflow_runs(uri, "trickbench-data")}
    assert {"prepare", "stats"} <= data_runs
    assert list((store / "artifacts").rglob("metrics.json"))  # artifacts went through the server

    # divergence: recorded, left out of the ensembles, listed by the report
    runs_dir = workdir / "artifacts/runs/lr"
    assert json.loads((runs_dir / UNSTABLE / "metrics.json").read_text())["status"] == "diverged"
    assert json.loads((runs_dir / STABLE / "metrics.json").read_text())["status"] == "completed"
    ensemble = json.loads((workdir / "artifacts/ensembles/lr.json").read_text())
    assert ensemble["best_single"]["point_id"] == STABLE
    assert all(UNSTABLE not in row["members"] for row in ensemble["rows"])
    with open(workdir / "results/runs.csv", newline="") as handle:
        status = {row["point_id"]: row["status"] for row in csv.DictReader(handle) if row["study"] == "lr"}
    assert status == {STABLE: "completed", UNSTABLE: "diverged"}


def test_mlflow_tracking_uri_in_the_environment_points_jobs_at_the_server(mlflow_server_fixture, tmp_path):
    uri, _ = mlflow_server_fixture
    workdir = tmp_path / "project"
    workdir.mkdir()
    params = tiny_params()  # tracking.uri: null
    params["tracking"]["experiment_prefix"] = "envroute"
    write_params(workdir / "params.yaml", params)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([str(BIN / "trickbench"), "tracking"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"tracking: {uri}" in done.stdout
    assert not (workdir / "mlflow.db").exists()
    names = {e.name for e in tracking.client(uri).search_experiments()}
    assert {"envroute-data", "envroute-acts"} <= names
