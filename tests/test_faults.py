"""Faults a long run meets: a tracking store that cannot be used, or that dies mid-run; a job killed at any
moment; a full disk. Each leaves nothing half-written, loses nothing computed, and after the rerun exactly
one MLflow run per grid point. Real processes (trickbench, mlflow server) and a real small file system."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, free_port, mlflow_runs, mlflow_server, stop_process_group, tiny_params, write_params
from trickbench import tracking

pytestmark = pytest.mark.slow
POINT = "activation-relu__seed-0"


def env_for(uri: str | None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           # fail fast when the server is gone: no client-side HTTP retries, few of ours
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
           "TRICKBENCH_TRACKING_ATTEMPTS": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    return env


def trickbench(workdir: Path, *argv: str, uri: str | None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "trickbench"), *argv], cwd=workdir, env=env_for(uri), capture_output=True,
                          text=True, timeout=timeout)


def project(workdir: Path, epochs: int = 2, **tracking_settings) -> Path:
    params = tiny_params()
    params["train"]["epochs"] = epochs
    params["tracking"].update(tracking_settings)
    workdir.mkdir(parents=True, exist_ok=True)
    write_params(workdir / "params.yaml", params)
    return workdir


def prepare_data(workdir: Path, uri: str | None) -> None:
    for stage in ("tracking", "download", "prepare", "stats"):
        done = trickbench(workdir, stage, uri=uri)
        assert done.returncode == 0, done.stderr


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def grid_point_runs(uri: str, point: str, experiment: str = "trickbench-acts") -> list:
    return [r for r in mlflow_runs(uri, experiment) if r.data.tags.get("trickbench.grid_point") == point]


def steps(uri: str, run, key: str = "val_loss") -> list[int]:
    return [m.step for m in tracking.metric_history(uri, run.info.run_id, key)]


# ------------------------------------------------------------------------ a store that cannot be used

NOT_SQLITE = "not-a-database.db"
BAD_STORES = {
    "unknown-scheme": (lambda w: "foo://bar", "is not a tracking URI"),
    "missing-folder": (lambda w: f"sqlite:///{w}/no/such/folder/mlflow.db", "does not exist"),
    "not-sqlite": (lambda w: f"sqlite:///{w / NOT_SQLITE}", "is not an SQLite database"),
    "no-server": (lambda w: f"http://127.0.0.1:{free_port()}", "no MLflow server answers"),
}


@pytest.mark.parametrize("route", ["params", "environment"])
@pytest.mark.parametrize("case", sorted(BAD_STORES))
def test_unusable_store_fails_in_one_line_before_any_output(tmp_path, case, route):
    make_uri, expected = BAD_STORES[case]
    uri = make_uri(tmp_path)
    (tmp_path / NOT_SQLITE).write_text("hello")
    workdir = project(tmp_path, **({"uri": uri} if route == "params" else {}))
    env_uri = uri if route == "environment" else None
    # an unknown scheme in params is refused by validation, so by every stage; the others by the stages that log
    static = case == "unknown-scheme" and route == "params"
    if not static:
        assert trickbench(workdir, "download", uri=env_uri).returncode == 0  # download logs nothing
    before = files_under(workdir / "artifacts")
    for stage in ("download", "tracking", "prepare") if static else ("tracking", "prepare"):
        done = trickbench(workdir, stage, uri=env_uri)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert expected in lines[0]
        assert ("tracking.uri" if route == "params" else "$MLFLOW_TRACKING_URI") in lines[0]
        assert files_under(workdir / "artifacts") == before, f"{stage} wrote outputs before failing"


# ------------------------------------------------------------------------ a job killed at any moment

def wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def prepared_project(tmp_path_factory):
    workdir = project(tmp_path_factory.mktemp("killed"), epochs=12)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    prepare_data(workdir, uri)
    return workdir, uri


def train_process(workdir: Path, uri: str, point: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "trickbench"), "train", "--study", "acts", "--point", point], cwd=workdir,
                            env=env_for(uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rerun_and_check_one_run(workdir: Path, uri: str, point: str) -> None:
    done = trickbench(workdir, "train", "--study", "acts", "--point", point, uri=uri)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = grid_point_runs(uri, point)
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    assert runs[0].info.status == "FINISHED"
    assert steps(uri, runs[0]) == list(range(1, 13)), "every epoch in MLflow exactly once"
    metrics = json.loads((workdir / "artifacts/runs/acts" / point / "metrics.json").read_text())
    assert metrics["mlflow_run_id"] == runs[0].info.run_id


MOMENTS = {"start-up": "activation-relu__seed-0", "run-opened": "activation-relu__seed-1",
           "mid-training": "activation-rrelu__seed-0", "after-outputs-written": "activation-rrelu__seed-1"}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_at_any_moment_leaves_one_run_per_grid_point(prepared_project, moment):
    workdir, uri = prepared_project
    point = MOMENTS[moment]
    run_dir = workdir / "artifacts/runs/acts" / point
    job = train_process(workdir, uri, point)
    try:
        if moment == "start-up":  # importing torch: no run, no file yet
            time.sleep(1.0)
        elif moment == "run-opened":  # the MLflow run exists (a checkpoint may or may not)
            wait_for(lambda: grid_point_runs(uri, point), what="the MLflow run")
        elif moment == "mid-training":
            wait_for(lambda: (run_dir / "checkpoint.pt").exists() and len(
                steps(uri, grid_point_runs(uri, point)[0])) >= 3, what="three epochs")
        else:  # the job finished; the engine is killed before it records that, and its rerun deletes the outputs
            assert job.wait(timeout=600) == 0
            for name in os.listdir(run_dir):
                (run_dir / name).unlink()
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    rerun_and_check_one_run(workdir, uri, point)


def test_snakemake_killed_then_rerun_incomplete_has_one_run_per_point(tmp_path):
    """The issue's scenario as a user meets it: SIGKILL of `snakemake --cores 2` while train jobs run."""
    import shutil

    from conftest import REPO

    params = tiny_params()
    params["train"]["epochs"] = 12
    workdir = tmp_path / "smk"
    workdir.mkdir()
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    write_params(workdir / "params.yaml", params)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    engine = subprocess.Popen([str(BIN / "snakemake"), "--cores", "2"], cwd=workdir, env=env_for(uri),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: len(list((workdir / "artifacts/runs/acts").glob("*/metrics.json"))) >= 1
                 and len(list((workdir / "artifacts/runs/acts").glob("*/checkpoint.pt"))) >= 1,
                 timeout=600, what="one finished and one running grid point")
    finally:
        stop_process_group(engine, signal.SIGKILL)
    # what the README says to do after a killed Snakemake: unlock, then rerun the incomplete jobs
    unlocked = subprocess.run([str(BIN / "snakemake"), "--unlock"], cwd=workdir, env=env_for(uri),
                              capture_output=True, text=True, timeout=300)
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]
    done = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--rerun-incomplete"], cwd=workdir,
                          env=env_for(uri), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for point in ["activation-relu__seed-0", "activation-relu__seed-1", "activation-rrelu__seed-0",
                  "activation-rrelu__seed-1"]:
        runs = grid_point_runs(uri, point)
        assert len(runs) == 1 and runs[0].info.status == "FINISHED", (point, [r.info.status for r in runs])
        assert steps(uri, runs[0]) == list(range(1, 13))


# ------------------------------------------------------------------------ a server that dies mid-run

def test_server_dying_mid_run_loses_nothing(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    workdir = project(tmp_path / "project", epochs=12, uri=f"http://127.0.0.1:{port}")
    with mlflow_server(store, port) as (uri, server):
        prepare_data(workdir, None)
        job = train_process(workdir, None, POINT)
        try:
            wait_for(lambda: grid_point_runs(uri, POINT) and len(steps(uri, grid_point_runs(uri, POINT)[0])) >= 2,
                     what="two epochs logged")
            stop_process_group(server, signal.SIGKILL)
            output, _ = job.communicate(timeout=300)
        finally:
            job.kill()
    assert job.returncode == 2, output
    last = output.strip().splitlines()[-1]
    assert "tracking store stopped answering" in last and "checkpoint" in last and "Traceback" not in output
    run_dir = workdir / "artifacts/runs/acts" / POINT
    assert (run_dir / "checkpoint.pt").is_file(), "the work done is kept"
    assert not (run_dir / "metrics.json").exists(), "no output claims a complete run"
    with mlflow_server(store, port) as (uri, _server):  # the same store, back again
        done = trickbench(workdir, "train", "--study", "acts", "--point", POINT, uri=None)
        assert done.returncode == 0, done.stdout + done.stderr
        runs = grid_point_runs(uri, POINT)
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert steps(uri, runs[0]) == list(range(1, 13)), "the rerun logged what MLflow missed, once"


# ------------------------------------------------------------------------ a full disk

@pytest.fixture
def small_filesystem(tmp_path):
    """A real 256 KiB tmpfs where the machine allows mounting (root); else a folder whose writes past
    256 KiB fail with ENOSPC, injected in os.write."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode == 0:
        yield mount
        subprocess.run(["umount", "-l", str(mount)], check=False)
        return
    original, written = os.write, {"bytes": 0}

    def limited_write(fd, data):
        if os.path.realpath(f"/proc/self/fd/{fd}").startswith(str(mount)):
            written["bytes"] += len(data)
            if written["bytes"] > 256 * 1024:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(fd, data)

    pytest.MonkeyPatch().setattr(os, "write", limited_write)
    yield mount


def test_full_disk_during_a_write_keeps_the_previous_file(small_filesystem):
    import torch

    from trickbench.io import write_json
    from trickbench.train.checkpoint import save_checkpoint

    metrics, checkpoint = small_filesystem / "metrics.json", small_filesystem / "checkpoint.pt"
    write_json(metrics, {"test_error": 0.25})
    save_checkpoint(checkpoint, {"epoch": 3, "weights": torch.zeros(1000)})
    kept_metrics, kept_checkpoint = metrics.read_bytes(), checkpoint.read_bytes()
    with pytest.raises(OSError) as failure:
        write_json(metrics, {"test_error": 0.5, "padding": "x" * (1 << 20)})
    assert failure.value.errno == errno.ENOSPC
    with pytest.raises((OSError, RuntimeError)):  # torch.save wraps the ENOSPC of its writer
        save_checkpoint(checkpoint, {"epoch": 4, "weights": torch.zeros(1 << 18)})
    assert metrics.read_bytes() == kept_metrics and checkpoint.read_bytes() == kept_checkpoint
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["checkpoint.pt", "metrics.json"], "no temp file left"
