"""The tiny pipeline through a REAL one-node SLURM cluster on loopback (tests/slurm/start.sh: Debian's
slurmctld, slurmd, munge) with workflow/profiles/slurm + workflow/profiles/slurm-test, against a local run.

Tracking: the jobs share the SQLite store of the test. That is safe here because every job runs on this
one node, on its local disk; on a real cluster the store must be an `mlflow server`
(test_tracking_server.py, workflow/profiles/README.md).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import BIN, REPO, mlflow_runs, tiny_params, write_params
from trickbench import tracking

pytestmark = pytest.mark.slurm
SCRIPTS = REPO / "tests" / "slurm"
SLURM_RULES = {"prepare", "stats", "train"}  # tracking, download, ensemble, report are local rules
PROFILES = ["--profile", "workflow/profiles/slurm", "--profile", "workflow/profiles/slurm-test"]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: tests/slurm/start.sh installs SLURM with apt-get and runs slurmctld/slurmd")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and apt-get is not available to install it")
    state = tmp_path_factory.mktemp("slurm-state")
    started = subprocess.run(["bash", str(SCRIPTS / "start.sh"), str(state)], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(state)], capture_output=True, timeout=120)
        pytest.fail(f"tests/slurm/start.sh failed ({started.returncode}):\n{started.stderr[-3000:]}")
    try:
        yield state
    finally:
        stopped = subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(state)], capture_output=True, text=True,
                                 timeout=120)
        assert stopped.returncode == 0, stopped.stderr


def local_reference(workdir: Path, params: dict) -> dict[str, dict]:
    """The same params trained directly in this process (one torch thread, as the jobs): metrics per point."""
    from trickbench.grid import expand_grid
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats
    from trickbench.stages.train import train_point

    workdir.mkdir()
    params = load_params(write_params(workdir / "params.yaml", params))
    params["tracking"]["enabled"] = False
    layout = Layout(workdir / "artifacts", workdir / "results")
    download(params, layout), prepare(params, layout, progress=False), stats(params, layout)
    threads = torch.get_num_threads()
    torch.set_num_threads(params["resources"]["threads"])
    try:
        return {p.point_id: train_point(params, layout, p.study, p.point_id) for p in expand_grid(params)}
    finally:
        torch.set_num_threads(threads)


def test_tiny_pipeline_on_slurm_equals_a_local_run(slurm_cluster, tmp_path):
    params = tiny_params()
    workdir = tmp_path / "slurm"
    workdir.mkdir()
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    write_params(workdir / "params.yaml", params)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}  # sbatch --export=ALL hands it to the jobs
    slurm_run = subprocess.Popen(["timeout", "-k", "10", "600", str(BIN / "snakemake"), *PROFILES, "--jobs", "4"],
                                 cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # meanwhile (Snakemake mostly waits for SLURM), the same params trained here
        reference = local_reference(tmp_path / "local", params)
        output = slurm_run.communicate(timeout=660)[0]
    finally:
        if slurm_run.poll() is None:
            slurm_run.kill()
            slurm_run.wait()
    assert slurm_run.returncode == 0, output[-6000:]

    # which jobs went through SLURM, and with the profile's resources
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
    rules = [re.search(r"/rule_(\w+?)(?:/|$)", log).group(1) for _, log in submitted]
    assert sorted(rules) == ["prepare", "stats", "train", "train", "train", "train"], output[-4000:]
    for rule in ("tracking", "download", "ensemble", "report"):
        assert f"localrule {rule}:" in output, rule
    slurm_logs = workdir / ".snakemake/slurm_logs"
    assert {p.name for p in slurm_logs.iterdir()} == {f"rule_{rule}" for rule in SLURM_RULES}
    train_job = next(job for job, log in submitted if "/rule_train/" in log)
    shown = subprocess.run(["scontrol", "show", "job", train_job], capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in shown and "mem=1000M" in shown and "TimeLimit=00:10:00" in shown, shown

    # the same numbers as a local run: CPU training with one thread is deterministic
    for point_id, ours in reference.items():
        theirs = json.loads((workdir / "artifacts/runs/acts" / point_id / "metrics.json").read_text())
        assert theirs["status"] == ours["status"] == "completed"
        assert theirs["data_digest"] == ours["data_digest"]
        for key in ("train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error"):
            assert theirs[key] == ours[key], (point_id, key)
    assert (workdir / "results/runs.csv").is_file()

    # every job reached the one store
    uri = os.environ["MLFLOW_TRACKING_URI"]
    runs = [r for r in mlflow_runs(uri, "trickbench-acts") if r.data.tags.get("trickbench.grid_point")]
    assert sorted(r.data.tags["trickbench.grid_point"] for r in runs) == sorted(reference)
    for run in runs:
        assert [m.step for m in tracking.metric_history(uri, run.info.run_id, "val_loss")] == [1, 2]
