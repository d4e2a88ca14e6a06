"""A built wheel carries everything the package reads (the params schema): installed (not editable) into a
fresh environment, `trickbench` validates and runs the tiny pipeline from a directory that is not the
repository.

The fresh environment reuses the shared venv's third-party packages (torch etc.) through a .pth line
naming its site-packages; a plain path line does not run that directory's own .pth files, so the shared
venv's editable trickbench (a .pth pointing at /work/main/src) stays out, and only the wheel provides it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_params, write_params

pytestmark = pytest.mark.slow


def sh(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the wheel installed; returns its bin directory."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a copy: building in the repository would write build/ and *.egg-info there
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = base / "wheels"
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", ".", "-w",
        str(wheels)], source)
    (wheel,) = wheels.glob("trickbench-*.whl")
    assert "trickbench/schemas/params.schema.yaml" in zipfile.ZipFile(wheel).namelist()

    venv = base / "venv"
    sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], base)
    python = venv / "bin" / "python"
    site = Path(sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base).strip())
    (site / "shared-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    sh([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], base)
    return venv / "bin"


def test_the_installed_package_runs_the_tiny_pipeline_elsewhere(installed, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TRICKBENCH_ALLOW_OUTSIDE")}
    env["PATH"] = f"{installed}:{env['PATH']}"
    location = sh([str(installed / "python"), "-c", "import trickbench.params as p; print(p.SCHEMA_PATH)"],
                  tmp_path, env).strip()
    assert location.startswith(str(installed.parent)) and Path(location).is_file()  # the wheel's copy

    params = tiny_params()
    params["train"].update(epochs=1)
    params["tracking"]["enabled"] = False
    params["studies"] = {"one": {"axes": {"seed": [0]}}}
    write_params(tmp_path / "params.yaml", params)
    trickbench = str(installed / "trickbench")
    assert "valid; 1 studies, 1 grid points" in sh([trickbench, "validate"], tmp_path, env)
    for command in (["download"], ["prepare", "--no-progress"], ["stats"], ["train", "--study", "one", "--point", "seed-0"]):
        sh([trickbench, *command], tmp_path, env)
    metrics = yaml.safe_load((tmp_path / "artifacts/runs/one/seed-0/metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["epochs"] == 1
    # the bad-input path of the installed package reads the same schema
    params["train"]["width"] = 16.0
    write_params(tmp_path / "bad.yaml", params)
    done = subprocess.run([trickbench, "--params", "bad.yaml", "validate"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "train.width: 16.0 is a number; expected an integer" in done.stderr
