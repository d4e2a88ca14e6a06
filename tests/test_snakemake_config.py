"""`snakemake --config` and `--configfile`, for real: the overrides are deep-merged over the params file,
validated by the one schema, plan exactly the jobs they touch, and reach every job (which reads the same
merged params through `trickbench --overrides`); a params file named with a space and a quote works.

The runs stop after training (no ensemble, no report) to stay short; tests/test_engines.py runs it all.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO, tiny_params, write_params

pytestmark = pytest.mark.slow
POINTS = ["seed-0", "seed-1"]
PARAMS_NAME = "it's my params.yaml"  # a space and a quote: both reach the shell of every job


def run(command: list[str], workdir: Path, expect: int = 0) -> str:
    env = {key: value for key, value in os.environ.items() if key != "TRICKBENCH_ALLOW_OUTSIDE"}
    env.update(PATH=f"{BIN}:{os.environ['PATH']}", MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}")
    done = subprocess.run([str(BIN / "snakemake"), *command], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == expect, output[-4000:]
    return output


def targets(workdir: Path) -> list[str]:
    return [f"artifacts/runs/seeds/{point}/metrics.json" for point in POINTS]


def planned(output: str) -> dict[str, int]:
    """Job counts from Snakemake's dry-run summary ("Job stats:" table)."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)
            if name != "total"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("smk config")  # a space in the project path too
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    params = tiny_params()
    params["train"].update(epochs=1)
    params["tracking"]["enabled"] = False
    params["studies"] = {"seeds": {"axes": {"seed": [0, 1]}}}
    write_params(workdir / PARAMS_NAME, params)
    run(["--cores", "2", f"--configfile={workdir / PARAMS_NAME}", *targets(workdir)], workdir)
    return workdir


def history_epochs(workdir: Path, point: str) -> int:
    lines = (workdir / f"artifacts/runs/seeds/{point}/history.csv").read_text().strip().splitlines()
    return len(lines) - 1


def test_a_params_file_with_a_space_and_a_quote_runs(project):
    assert [history_epochs(project, point) for point in POINTS] == [1, 1]
    log = (project / "artifacts/logs/train/seeds/seed-0.log").read_text()
    assert "Traceback" not in log
    # relative and absolute names of the file plan the same: nothing
    for name in (PARAMS_NAME, str(project / PARAMS_NAME)):
        assert planned(run(["-n", "--cores", "2", f"--configfile={name}", *targets(project)], project)) == {}


def test_config_override_plans_every_train_job_and_nothing_else(project):
    output = run(["-n", "--cores", "2", *targets(project), f"--configfile={PARAMS_NAME}",
                  "--config", 'train={"epochs": 2}'], project)  # --config takes all values after it
    assert planned(output) == {"train": 2}


def test_an_override_of_a_data_key_plans_the_data_stages(project):
    output = run(["-n", "--cores", "2", *targets(project), f"--configfile={PARAMS_NAME}",
                  "--config", 'data={"split_seed": 7}'], project)
    assert planned(output) == {"download": 1, "prepare": 1, "stats": 1, "train": 2}


def test_a_bad_override_fails_before_any_job_naming_the_key(project):
    before = sorted(p for p in project.rglob("*") if ".snakemake" not in p.parts)
    output = run(["-n", "--cores", "2", f"--configfile={PARAMS_NAME}", "--config", 'train={"epochs": -5}'],
                 project, expect=2)
    errors = [line for line in output.splitlines() if line.startswith("trickbench: error:")]
    assert len(errors) == 1 and "train.epochs: -5 is less than the minimum of 1" in errors[0], output[-2000:]
    assert "--config train" in errors[0] and "rule " not in output
    assert sorted(p for p in project.rglob("*") if ".snakemake" not in p.parts) == before


def test_the_jobs_see_the_merged_params(project):
    """Run one train job with an override: it trains 2 epochs (the job validated file + overrides itself)
    and the other point, not asked for, keeps its 1-epoch run."""
    target = f"artifacts/runs/seeds/{POINTS[0]}/metrics.json"
    output = run(["--cores", "1", "-p", target, f"--configfile={PARAMS_NAME}", "--config", 'train={"epochs": 2}'],
                 project)
    assert "--overrides '{\"train\": {\"epochs\": 2}}'" in output
    assert history_epochs(project, POINTS[0]) == 2 and history_epochs(project, POINTS[1]) == 1
    metrics = json.loads((project / target).read_text())
    assert metrics["config"]["epochs"] == 2
