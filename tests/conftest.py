"""Shared fixtures: the repository root, a tiny params file, and an isolated MLflow store per test."""
from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import time
import urllib.request
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
    # the slot allocator writes these into its own process: restore them after every test, whatever it did
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "unset")
            monkeypatch.delenv(name)
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


def mlflow_runs(uri: str, experiment: str) -> list:
    """Every active run of `experiment` in the store at `uri`, read with MLflow's own client (as a user would)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=10000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(store: Path, port: int | None = None):
    """A real `mlflow server` on 127.0.0.1 with its own SQLite store and served artifacts in `store`; yields
    (uri, process) once /health answers; stopped (its whole process group) on exit."""
    port = port or free_port()
    store.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner (7 processes) for a test
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(store / "server.log", "a")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
         "--artifacts-destination", str(store / "artifacts"), "--serve-artifacts"],
        cwd=store, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}):\n{(store / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.read().strip() == b"OK":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after 180 s:\n{(store / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri, proc
    finally:
        stop_process_group(proc)
        log.close()


def stop_process_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """`sig` to the process's own group (a server has worker children), SIGKILL after 15 s."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    try:  # children that outlived the main process
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class StopTraining(Exception):
    """Raised by `stop_after` to interrupt a training run as a kill would, right after an epoch's checkpoint."""


def stop_after(stop_epoch: int):
    """An `on_epoch_end` callback for train() that interrupts it once epoch `stop_epoch` has ended."""
    def callback(epoch: int) -> None:
        if epoch == stop_epoch:
            raise StopTraining
    return callback
