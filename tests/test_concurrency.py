"""Sixteen `trickbench train` processes at once on the default SQLite store (created first by
`trickbench tracking`, as the engines do): sixteen complete MLflow runs, no lock errors."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from conftest import BIN, mlflow_runs, tiny_params, write_params
from trickbench import tracking

pytestmark = pytest.mark.slow
JOBS = 16
PRIVATE_MB_PER_JOB = 700  # measured: ~550 MB private memory per train process (torch, mlflow, seaborn)


def available_mb() -> int:
    with open("/proc/meminfo") as handle:
        info = dict(line.split(":", 1) for line in handle)
    return int(info["MemAvailable"].split()[0]) // 1024


def test_sixteen_train_jobs_at_once_on_the_default_sqlite_store(tmp_path, monkeypatch):
    if available_mb() < JOBS * PRIVATE_MB_PER_JOB:
        pytest.skip(f"{JOBS} train processes need about {JOBS * PRIVATE_MB_PER_JOB} MB; {available_mb()} MB available")
    from trickbench.grid import expand_grid
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    params = tiny_params()
    params["train"].update({"epochs": 2, "width": 2, "batch_size": 256})
    params["studies"] = {"many": {"axes": {"activation": ["relu", "leaky_relu_a100", "prelu", "rrelu"],
                                           "seed": [0, 1, 2, 3]}}}
    write_params(tmp_path / "params.yaml", params)
    loaded = load_params(tmp_path / "params.yaml")
    points = expand_grid(loaded)
    assert len(points) == JOBS
    quiet = {**loaded, "tracking": {**loaded["tracking"], "enabled": False}}
    layout = Layout(tmp_path / "artifacts", tmp_path / "results")
    download(quiet, layout), prepare(quiet, layout, progress=False), stats(quiet, layout)

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI")  # the default: sqlite:///mlflow.db in the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    created = subprocess.run([str(BIN / "trickbench"), "tracking"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
    assert created.returncode == 0, created.stderr
    uri = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert f"tracking: {uri}" in created.stdout

    started = time.monotonic()
    procs = {point.point_id: subprocess.Popen(
        [str(BIN / "trickbench"), "train", "--study", "many", "--point", point.point_id], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for point in points}
    outputs = {}
    try:
        for point_id, proc in procs.items():
            outputs[point_id] = proc.communicate(timeout=max(10.0, 600 - (time.monotonic() - started)))[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = {p: out[-2000:] for p, out in outputs.items() if procs[p].returncode != 0}
    assert not failed, failed
    assert not [p for p, out in outputs.items() if "Traceback" in out or "database is locked" in out]

    runs = [r for r in mlflow_runs(uri, "trickbench-many") if r.data.tags.get("trickbench.grid_point")]
    assert sorted(r.data.tags["trickbench.grid_point"] for r in runs) == sorted(procs)  # 16, no duplicates
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["trickbench.status"] == "completed"
        assert run.data.params["activation"] in ("relu", "leaky_relu_a100", "prelu", "rrelu")
        for key in ("train_loss", "train_error", "val_loss", "val_error", "lr"):
            assert [m.step for m in tracking.metric_history(uri, run.info.run_id, key)] == [1, 2], key
        assert {"final_test_error", "final_val_loss"} <= set(run.data.metrics)
        assert (tmp_path / "artifacts/runs/many" / run.data.tags["trickbench.grid_point"] / "metrics.json").is_file()
