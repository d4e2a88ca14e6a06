"""Shared fixtures: the repository root, a tiny params file, and an isolated MLflow store per test."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def tiny_params(**overrides) -> dict:
    """The default params cut to a few seconds of work: digits, 2 activations x 2 seeds, 2 epochs."""
    with open(REPO / "params.yaml") as handle:
        params = yaml.safe_load(handle)
    params["train"].update({"epochs": 2, "width": 4, "batch_size": 128})
    params["studies"] = {"acts": {"axes": {"activation": ["relu", "rrelu"], "seed": [0, 1]}}}
    for key, value in overrides.items():
        params[key] = value
    return copy.deepcopy(params)


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Each test gets its own SQLite store unless it sets the URI itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(REPO / ".pytest_cache" / "xdg"))
    # tests put paths.* under tmp_path, outside the repository they run in (the project of an in-process
    # validate); tests of that rule run their subprocesses without this variable
    monkeypatch.setenv("TRICKBENCH_ALLOW_OUTSIDE", "1")
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for in-process training: the runs are tiny and the cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
