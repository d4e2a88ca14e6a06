"""Resume after a failure: `trickbench train` killed at several points, rerun, gives bit-identical outputs.

The kill comes from outside, timed by polling the run's checkpoint.pt (written atomically at the end of
each epoch). CPU training with one thread is deterministic, so every output of a resumed run must equal
the uninterrupted run's except what records the interruption (metrics.json `resumed_from_epoch`,
`mlflow_run_id` of a different run) and the wall-clock `seconds` column of history.csv.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from conftest import (BIN, RESUME_EPOCHS, RESUME_POINT, RESUME_STUDY, StopTraining, cli_env, prepare_project,
                      resume_params, stop_after, train_command)
from trickbench import tracking
from trickbench.paths import Layout
from trickbench.train.checkpoint import CHECKPOINT_VERSION, TrainState, read_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow
STUDY, EPOCHS, POINT = RESUME_STUDY, RESUME_EPOCHS, RESUME_POINT


class Watch:
    """The epoch of the newest checkpoint, re-read only when the file was replaced."""

    def __init__(self, path: Path):
        self.path, self.key, self.epoch = path, None, 0

    def __call__(self) -> int:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return 0
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key != self.key:
            try:
                self.epoch = torch.load(self.path, map_location="cpu", weights_only=True)["epoch"]
                self.key = key
            except Exception:  # replaced while we read it: read again on the next poll
                pass
        return self.epoch


def run_and_kill(workdir: Path, layout: Layout, when: Callable[[int], bool], delay: float = 0.0,
                 sig: int = signal.SIGKILL, timeout: float = 240) -> int:
    """Start `trickbench train`, wait until `when(checkpoint epoch)`, sleep `delay`, send `sig`; the
    checkpoint epoch the rerun will resume from."""
    watch = Watch(layout.checkpoint(STUDY, POINT))
    proc = subprocess.Popen(train_command(), cwd=workdir, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not when(watch()):
            if proc.poll() is not None:
                pytest.fail(f"train ended (rc {proc.returncode}) before the kill point:\n{proc.stdout.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("train did not reach the kill point in time")
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(sig)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, output[-3000:]
    else:
        assert proc.returncode == 128 + sig, output[-3000:]  # cmd_train turns SIGTERM into a clean exit
        assert "Traceback" not in output, output[-3000:]
    watch.key = None
    return watch()


def train_to_end(workdir: Path) -> dict:
    done = subprocess.run(train_command(), cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((workdir / "artifacts/runs" / STUDY / POINT / "metrics.json").read_text())


def without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def history_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [without(row, "seconds") for row in csv.DictReader(handle)]  # wall clock: never equal


def assert_same_outputs(ours: Path, reference: Path) -> None:
    """Every output of a run, bit for bit (exceptions: see the module docstring)."""
    mine, theirs = (json.loads((d / "metrics.json").read_text()) for d in (ours, reference))
    assert without(mine, "mlflow_run_id", "resumed_from_epoch") == without(theirs, "mlflow_run_id", "resumed_from_epoch")
    assert history_rows(ours / "history.csv") == history_rows(reference / "history.csv")
    for name in ("batch_loss.csv", "diagnostics.json"):
        assert (ours / name).read_bytes() == (reference / name).read_bytes(), name
    with np.load(ours / "predictions.npz") as a, np.load(reference / "predictions.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    model_a = torch.load(ours / "model.pt", weights_only=True)
    model_b = torch.load(reference / "model.pt", weights_only=True)
    assert model_a.keys() == model_b.keys()
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    assert not list(ours.glob(".*.tmp")), "a temporary file of an interrupted write was left behind"


def assert_mlflow_run(metrics: dict, status: str = "FINISHED") -> None:
    """One MLflow run per grid point, continued after the kill, every epoch logged exactly once."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    run = tracking.client(uri).get_run(metrics["mlflow_run_id"])
    assert run.info.status == status
    for key in ("val_loss", "train_loss", "lr"):
        steps = sorted(m.step for m in tracking.metric_history(uri, run.info.run_id, key))
        assert steps == list(range(1, EPOCHS + 1)), (key, steps)


def checkpoint_state(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing or unreadable
        return None


def test_killed_runs_resume_bit_identically(tmp_path):
    """One run interrupted four times (SIGKILL during epoch 2, SIGKILL right after the checkpoint of
    epoch 3, SIGTERM during epoch 5, SIGKILL during the final evaluation), each time rerun; against an
    uninterrupted run of the same point beside it."""
    reference_dir, workdir = tmp_path / "reference", tmp_path / "interrupted"
    prepare_project(reference_dir, resume_params())
    shutil.copytree(reference_dir, workdir)
    tracking.ensure_experiments(os.environ["MLFLOW_TRACKING_URI"], [f"trickbench-{STUDY}"])
    layout = Layout(workdir / "artifacts", workdir / "results")
    checkpoint, run_dir = layout.checkpoint(STUDY, POINT), layout.run_dir(STUDY, POINT)
    uri = os.environ["MLFLOW_TRACKING_URI"]

    kills = [  # (what, checkpoint epoch to wait for, then seconds to wait, signal)
        ("SIGKILL during epoch 2", 1, 0.3, signal.SIGKILL),
        ("SIGKILL right after the checkpoint of epoch 3", 3, 0.0, signal.SIGKILL),
        ("SIGTERM during epoch 5", 4, 0.2, signal.SIGTERM),
        ("SIGKILL during the final evaluation", EPOCHS, 0.0, signal.SIGKILL),
    ]
    with ThreadPoolExecutor(max_workers=1) as pool:  # the reference on the other core
        reference_future = pool.submit(train_to_end, reference_dir)
        epochs_at_kill, kept_seconds, run_ids = [], {}, set()
        for what, epoch, delay, sig in kills:
            killed_at = run_and_kill(workdir, layout, lambda e, epoch=epoch: e >= epoch, delay, sig)
            assert not (run_dir / "metrics.json").exists(), f"{what}: too late, the run had finished"
            state = checkpoint_state(checkpoint)
            assert state is not None and state["epoch"] == killed_at
            epochs_at_kill.append(killed_at)
            # wall-clock seconds of the finished epochs: equal in the end only if they were not retrained
            kept_seconds.update({row["epoch"]: row["seconds"] for row in state["history"]})
            run_ids.add(state["mlflow_run_id"])
            if sig == signal.SIGTERM:  # the handler unwound: the MLflow run was marked FAILED
                assert tracking.client(uri).get_run(state["mlflow_run_id"]).info.status == "FAILED"
        metrics = train_to_end(workdir)
        reference = reference_future.result()

    assert epochs_at_kill[0] >= 1 and epochs_at_kill[1] >= 3 and epochs_at_kill[-1] == EPOCHS, epochs_at_kill
    assert epochs_at_kill == sorted(epochs_at_kill)
    assert metrics["resumed_from_epoch"] == EPOCHS and reference["resumed_from_epoch"] == 0
    assert reference["status"] == metrics["status"] == "completed"
    with open(run_dir / "history.csv", newline="") as handle:
        seconds = {int(row["epoch"]): float(row["seconds"]) for row in csv.DictReader(handle)}
    assert all(seconds[epoch] == value for epoch, value in kept_seconds.items()), "a finished epoch was retrained"
    assert_same_outputs(run_dir, reference_dir / "artifacts/runs" / STUDY / POINT)
    assert run_ids == {metrics["mlflow_run_id"]}, "the MLflow run was not continued"
    assert_mlflow_run(metrics)
    assert_mlflow_run(reference)


def test_truncated_checkpoint_retrains_from_scratch(tmp_path):
    """A damaged checkpoint of this very run is detected and not loaded: the stage trains from epoch 0
    and gets the uninterrupted result; the intact file resumes (the control). In this process, tracking
    off; the CLI path is the test above."""
    from trickbench.data.prepared import load_prepared
    from trickbench.data.stats import load_stats
    from trickbench.grid import find_point
    from trickbench.io import read_json
    from trickbench.params import load_params
    from trickbench.stages.train import run_digest, train_point
    from trickbench.train.loop import train

    prepare_project(tmp_path, resume_params())
    params = load_params(tmp_path / "params.yaml")
    params["tracking"]["enabled"] = False
    layout = Layout(tmp_path / "artifacts", tmp_path / "results")
    checkpoint, run_dir = layout.checkpoint(STUDY, POINT), layout.run_dir(STUDY, POINT)
    point = find_point(params, STUDY, POINT)

    threads = torch.get_num_threads()
    torch.set_num_threads(params["resources"]["threads"])
    try:
        first = train_point(params, layout, STUDY, POINT)
        assert not checkpoint.exists()  # a complete run drops its checkpoint: a rerun trains afresh
        shutil.copytree(run_dir, tmp_path / "reference")
        with pytest.raises(StopTraining):  # a real checkpoint of this run after epoch 2
            train(point.config, load_prepared(layout.prepared),
                  load_stats(layout.stats_json, layout.stats_arrays, device=torch.device("cpu")),
                  config_digest=run_digest(point, read_json(layout.manifest)["digest"], "cpu"),
                  checkpoint_path=checkpoint, on_epoch=stop_after(2))
        intact = checkpoint.read_bytes()
        checkpoint.write_bytes(intact[: len(intact) // 2])
        from_scratch = train_point(params, layout, STUDY, POINT)
        assert_same_outputs(run_dir, tmp_path / "reference")
        checkpoint.write_bytes(intact)
        resumed = train_point(params, layout, STUDY, POINT)
        assert_same_outputs(run_dir, tmp_path / "reference")
    finally:
        torch.set_num_threads(threads)
    assert first["resumed_from_epoch"] == 0 and from_scratch["resumed_from_epoch"] == 0
    assert resumed["resumed_from_epoch"] == 2


# ------------------------------------------------------------------------------- corrupt checkpoints

def _valid_checkpoint(path: Path) -> dict:
    state = {"version": CHECKPOINT_VERSION, "config_digest": "abc", "epoch": 3,
             "model": {"w": torch.arange(1000.0)}, "history": [{"epoch": 1, "val_loss": 0.5}]}
    save_checkpoint(path, state)
    return state


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "zeros", "pickle-with-code",
                                    "other-config", "other-version", "not-a-dict"])
def test_a_corrupt_or_foreign_checkpoint_is_not_loaded(tmp_path, monkeypatch, damage):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint.pt"
    _valid_checkpoint(path)
    assert read_checkpoint(path)["epoch"] == 3
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "zeros":
        path.write_bytes(bytes(len(data)))
    elif damage == "pickle-with-code":  # weights_only=True refuses to run it
        torch.save({"version": CHECKPOINT_VERSION, "config_digest": "abc", "epoch": 3, "x": _Exploit()}, path)
    elif damage == "other-config":
        save_checkpoint(path, {"version": CHECKPOINT_VERSION, "config_digest": "other", "epoch": 3})
    elif damage == "other-version":
        save_checkpoint(path, {"version": CHECKPOINT_VERSION + 1, "config_digest": "abc", "epoch": 3})
    elif damage == "not-a-dict":
        save_checkpoint(path, [1, 2, 3])
    assert TrainState.load(path, {"cpu": "abc"}, "cpu", patience=None) is None
    assert not (tmp_path / "exploited").exists()


def test_pickle_exploit_really_runs_without_weights_only(tmp_path, monkeypatch):
    """The control for the case above: the file would run code if it were loaded unsafely."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump(_Exploit(), handle)
    with open(path, "rb") as handle:
        pickle.load(handle)
    assert (tmp_path / "exploited").exists()


# ---------------------------------------------------------------------------------- interrupted writes

SLOW_WRITER = """
import sys, time
from trickbench.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as handle:
        for i in range(100000):
            handle.write("partial line %d\\n" % i)
            handle.flush()
            if i == 100:
                print("writing", flush=True)
            time.sleep(0.001)
"""


@pytest.mark.parametrize("existing", [False, True])
def test_a_write_killed_midway_leaves_no_partial_file(tmp_path, existing):
    """SIGKILL inside an atomic write: the target is absent (or still the old, complete file)."""
    target = tmp_path / "out" / "metrics.json"
    if existing:
        target.parent.mkdir()
        target.write_text('{"complete": true}\n')
    proc = subprocess.Popen([str(BIN / "python"), "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    if existing:
        assert target.read_text() == '{"complete": true}\n'
    else:
        assert not target.exists()
    leftovers = list(target.parent.glob(".metrics.json.*.tmp"))
    assert len(leftovers) == 1 and "partial line" in leftovers[0].read_text()  # only the hidden temporary


def test_a_write_that_raises_leaves_nothing(tmp_path):
    from trickbench.io import atomic_path, write_json

    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a table")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json(target, {"not serialisable": object()})
    assert json.loads(target.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [target]


def test_the_train_stage_removes_temporaries_of_a_killed_job(tmp_path):
    """A job killed inside an atomic write leaves `.<name>.<random>.tmp`; the next run of the point
    deletes it (one job per grid point: nobody else writes there)."""
    from trickbench.params import load_params
    from trickbench.stages.train import train_point

    params = resume_params()
    params["train"].update({"epochs": 1, "width": 4, "batch_size": 128})
    prepare_project(tmp_path, params)
    loaded = load_params(tmp_path / "params.yaml")
    loaded["tracking"]["enabled"] = False
    layout = Layout(tmp_path / "artifacts", tmp_path / "results")
    run_dir = layout.run_dir(STUDY, POINT)
    run_dir.mkdir(parents=True)
    stale = run_dir / ".predictions.npz.k2j4x9.tmp"
    stale.write_bytes(b"half")
    train_point(loaded, layout, STUDY, POINT)
    assert not stale.exists() and not list(run_dir.glob(".*.tmp"))


FILE_WRITERS = {"savez", "savez_compressed", "save", "savefig", "to_csv", "to_parquet", "dump"}  # f(..., file)


def unsafe_writes(text: str) -> list[str]:
    """File writes in Python source that do not target a name bound by `with atomic_path(...) as x` (or a
    handle opened on one): open(x, "w"), x.write_text(), np.savez(x), torch.save(_, x), fig.savefig(x),
    frame.to_csv(x), json.dump(_, x), shutil.copy, os.replace ..."""
    import ast

    tree = ast.parse(text)
    atomic: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call, target = item.context_expr, item.optional_vars
                if isinstance(call, ast.Call) and isinstance(target, ast.Name):
                    name = _call_name(call)
                    opened_on_atomic = name == "open" and call.args and _is(call.args[0], atomic)
                    if name == "atomic_path" or opened_on_atomic:
                        atomic.add(target.id)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name, func = _call_name(node), node.func
        owner = getattr(getattr(func, "value", None), "id", "")
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if name == "open" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            unsafe = any(c in str(node.args[1].value) for c in "wax+") and not _is(node.args[0], atomic)
        elif name in ("write_text", "write_bytes") and isinstance(func, ast.Attribute):
            unsafe = not _is(func.value, atomic)
        elif name in FILE_WRITERS and isinstance(func, ast.Attribute) and (name != "save" or owner in ("torch", "np")):
            unsafe = not any(_is(arg, atomic) for arg in arguments)
        else:
            unsafe = owner in ("shutil", "os") and name in ("copy", "copyfile", "copy2", "move", "rename", "replace")
        if unsafe:
            problems.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return problems


def _call_name(call) -> str:
    import ast

    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _is(expr, names: set[str]) -> bool:
    return getattr(expr, "id", None) in names


def test_the_write_audit_catches_plain_writes():
    assert unsafe_writes("""
with atomic_path(p) as tmp:
    with open(tmp, "wb") as handle:
        np.savez(handle, a=1)
    torch.save(state, tmp)
    tmp.write_text("x")
""") == []
    bad = unsafe_writes("""
with open(path, "w") as handle:
    json.dump(obj, handle)
path.write_text("x")
np.savez(path, a=1)
torch.save(state, path)
figure.savefig(path)
frame.to_csv(path)
shutil.copy(a, b)
os.replace(a, b)
""")
    assert len(bad) == 9, bad  # the open() and the json.dump() into its handle both count


def test_every_write_in_the_package_goes_through_an_atomic_path():
    """The audit over src/trickbench (trickbench.io implements atomic_path, write_text, write_json)."""
    package = Path(__file__).resolve().parents[1] / "src" / "trickbench"
    problems = [f"{source.relative_to(package)} {problem}" for source in sorted(package.rglob("*.py"))
                if source != package / "io.py" for problem in unsafe_writes(source.read_text())]
    assert not problems, "\n".join(problems)
