"""Shared fixtures and helpers: the repository root, a tiny params file, an isolated MLflow store per test, a real
MLflow server, in-process training on the digits (train_config, digits, run), a prepared project to resume
runs in, and crafted run folders for the report stage (crafted)."""
from __future__ import annotations

import contextlib
import copy
import csv
import functools
import math
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
REPO_PARAMS = REPO / "params.yaml"
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
    """An `on_epoch` hook for train() that interrupts it once epoch `stop_epoch` has ended, as a kill would."""
    def callback(row: dict) -> None:
        if row["epoch"] == stop_epoch:
            raise StopTraining
    return callback


# ---------------------------------------------------------------------- in-process training on the digits
# (imports inside: torch and the schema load only for the tests that train)

@functools.lru_cache(maxsize=1)
def train_schema() -> dict:
    """The JSON schema of one train config (with the registries' names as enums)."""
    from trickbench.params import schema_with_registries

    schema = schema_with_registries()
    return {**schema["$defs"]["train_config"], "$defs": schema["$defs"]}


def train_config(**overrides) -> dict:
    """A full, schema-valid train config: the schema's defaults, on the CPU, width 4, one epoch."""
    import jsonschema

    from trickbench.params import fill_defaults, raw_schema

    schema = raw_schema()
    config: dict = {}
    fill_defaults(config, schema["$defs"]["train_config"], schema)
    config.update(device="cpu", width=4, epochs=1, batch_size=64)
    unknown = set(overrides) - set(config)
    assert not unknown, f"not train keys: {unknown}"
    config.update(overrides)
    jsonschema.Draft202012Validator(train_schema()).validate(config)
    return config


@functools.lru_cache(maxsize=1)
def digits():
    """scikit-learn's digits split as the prepare stage splits them (uint8 (N, 8, 8, 1), 10 classes).

    Cached and shared: never modify it; build a new Prepared instead.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    from trickbench.data.prepared import Prepared, stratified_split

    bunch = load_digits()
    images = np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    kept, test = stratified_split(labels, 0.15, 0)
    train_idx, val_idx = stratified_split(labels[kept], 0.15, 1)
    pool_images, pool_labels = images[kept], labels[kept]
    return Prepared(
        images={"train": pool_images[train_idx], "val": pool_images[val_idx], "test": images[test]},
        labels={"train": pool_labels[train_idx], "val": pool_labels[val_idx], "test": labels[test]},
        class_names=[str(i) for i in range(10)],
    )


def stats_of(prepared) -> dict:
    """The runtime stats dict (channel statistics, colour PCA, whitening) of a prepared set."""
    from trickbench.data.stats import compute_stats, runtime_stats

    return runtime_stats(*compute_stats(prepared.images["train"]))


@functools.lru_cache(maxsize=1)
def digits_stats() -> dict:
    return stats_of(digits())


def run(prepared=None, stats: dict | None = None, **overrides):
    """train() on `prepared` (the digits by default) with train_config(**overrides); its TrainResult."""
    from trickbench.train.loop import train

    prepared = prepared if prepared is not None else digits()
    stats = stats if stats is not None else (digits_stats() if prepared is digits() else stats_of(prepared))
    return train(train_config(**overrides), prepared, stats, config_digest="test")


# ------------------------------------------------------------------- a prepared project to resume runs in

RESUME_STUDY, RESUME_EPOCHS, RESUME_POINT = "resume", 5, "seed-0"


def resume_params() -> dict:
    """Digits with epochs of ~1 s (width 16, batch 8) so that a kill can land inside one."""
    params = tiny_params()
    params["train"].update({"width": 16, "batch_size": 8, "lr": 0.01, "epochs": RESUME_EPOCHS, "snapshots": 2,
                            "device": "cpu"})
    params["studies"] = {RESUME_STUDY: {"axes": {"seed": [0]}}}
    return params


def prepare_project(workdir: Path, params: dict):
    """params.yaml plus prepared data and statistics (in this process, without tracking: seconds); its Layout."""
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    workdir.mkdir(parents=True, exist_ok=True)
    write_params(workdir / "params.yaml", params)
    loaded = load_params(workdir / "params.yaml")
    loaded["tracking"]["enabled"] = False
    layout = Layout(workdir / loaded["paths"]["artifacts"], workdir / loaded["paths"]["results"])
    download(loaded, layout)
    prepare(loaded, layout, progress=False)
    stats(loaded, layout)
    return layout


def train_command() -> list[str]:
    return [str(BIN / "trickbench"), "train", "--study", RESUME_STUDY, "--point", RESUME_POINT]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


# ------------------------------------------------------------------- crafted run folders for the report stage

REPORT_CLASSES = 3


def report_params(studies: dict, tmp_path: Path, **report) -> dict:
    """Validated tiny params with these studies, paths under tmp_path, tracking off and `report` settings."""
    from trickbench.params import validate

    params = tiny_params()
    params["studies"] = studies
    params["paths"] = {"artifacts": str(tmp_path / "artifacts"), "results": str(tmp_path / "results")}
    params["tracking"]["enabled"] = False
    params["report"].update(report)
    return validate(params)


def write_run(layout, point, rng, diverged: bool = False) -> None:
    """The files a finished (or diverged) run of `point` leaves: history, batch losses, diagnostics,
    predictions on one shared set of labels, metrics.json; the better activation (prelu) learns faster."""
    import numpy as np

    from trickbench.io import write_json

    run_dir = layout.run_dir(point.study, point.point_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    epochs, batches = 6, 8
    skill = 1.0 + (0.5 if point.axes.get("activation") == "prelu" else 0.0) + 0.1 * point.axes.get("seed", 0)
    loss = [math.log(REPORT_CLASSES) * math.exp(-0.3 * skill * e) for e in range(1, epochs + 1)]
    if diverged:
        loss[-2:] = [math.inf, math.nan]
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_loss", "train_error", "val_loss", "val_error", "lr", "seconds"])
        for epoch, value in enumerate(loss, 1):
            writer.writerow([epoch, value, value / 3, value * 1.2, value / 2.5, 0.1, 0.01])
    with open(run_dir / "batch_loss.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "batch", "loss"])
        for epoch in range(epochs):
            for batch in range(batches):
                writer.writerow([epoch, batch, loss[epoch] * (1 + 0.2 * rng.normal())])
    layers = ["blocks.stage1.act1", "blocks.stage2.act1"]
    write_json(run_dir / "diagnostics.json", {
        "init_activation_stats": [{"layer": name, "mean": 0.1, "std": 0.0 if point.axes.get("initializer") == "zeros"
                                   else 0.8 / (i + 1)} for i, name in enumerate(layers)],
        "dead_units": [] if diverged else [{"layer": name, "dead_fraction": 0.1 * i, "units": 8}
                                           for i, name in enumerate(layers)]})
    # one prepared data set: every run is evaluated on the same images
    labels = {split: np.random.default_rng(1).integers(0, REPORT_CLASSES, 30) for split in ("val", "test")}
    predictions = {}
    metrics = {"epochs_run": float(epochs)}
    for split in ("train", "val", "test"):
        metrics[f"{split}_loss"] = math.nan if diverged else loss[-1] * (1.0 if split == "train" else 1.3)
        metrics[f"{split}_error"] = math.nan if diverged else 0.1 / skill * (1.0 if split == "train" else 2.0)
    if not diverged:
        for split, y in labels.items():
            logits = rng.normal(size=(30, REPORT_CLASSES))
            logits[np.arange(30), y] += skill
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            predictions |= {f"{split}_probs": p, f"{split}_labels": y}
        predictions["snapshot_val_probs"] = np.stack([predictions["val_probs"]] * 2)
        predictions["snapshot_test_probs"] = np.stack([predictions["test_probs"]] * 2)
    np.savez(run_dir / "predictions.npz", **predictions)
    write_json(run_dir / "metrics.json", {"study": point.study, "point_id": point.point_id, "axes": point.axes,
                                          "config": point.config, "status": "diverged" if diverged else "completed",
                                          "run_digest": point.config_digest,  # as train_point writes one
                                          **metrics})


@pytest.fixture
def crafted(tmp_path):
    """(params, layout) of two finished studies written by write_run (acts: 3 activations x 2 initializers
    x 3 seeds; lrs: 3 learning rates x 2 seeds, lr 10 diverged), with data statistics, a manifest and the
    ensembles: everything the report stage reads."""
    import numpy as np

    from trickbench.data.stats import compute_stats
    from trickbench.grid import expand_grid
    from trickbench.io import write_json
    from trickbench.paths import Layout
    from trickbench.stages.ensemble import ensemble

    params = report_params({
        "acts": {"description": "crafted", "axes": {"activation": ["relu", "prelu", "rrelu"],
                                                    "initializer": ["he_normal", "zeros"], "seed": [0, 1, 2]}},
        "lrs": {"axes": {"lr": [0.001, 0.1, 10.0], "seed": [0, 1]}},
    }, tmp_path, paper_table={"metrics": ["train_error", "test_error"], "reference": "cifar10",
                              "note": "SCALED test run"})
    layout = Layout.from_params(params)
    rng = np.random.default_rng(0)
    for point in expand_grid(params):
        write_run(layout, point, rng, diverged=point.axes.get("lr") == 10.0)
    images = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    summary, arrays = compute_stats(images)
    write_json(layout.stats_json, summary)
    np.savez(layout.stats_arrays, **arrays)
    write_json(layout.manifest, {"class_names": [f"c{i}" for i in range(REPORT_CLASSES)], "source": "crafted",
                                 "digest": "0" * 64, "class_counts": {split: [5] * REPORT_CLASSES for split in ("train", "val", "test")}})
    for study in params["studies"]:
        ensemble(params, layout, study)
    return params, layout
