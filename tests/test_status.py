"""`trickbench status` against real `trickbench train` processes: a job paused mid-run is `running` with the
epoch its log and progress record show, then `done`; a job stopped by SIGTERM, one killed by SIGKILL and a
diverged run are `failed`; the rest `pending`; the time left is the epochs left times the measured rate.
The job's log holds one aligned line per epoch, flushed as the epoch ends."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, tiny_params, write_params
from trickbench.io import read_json

EPOCHS = 60  # ~0.05 s each on the digits: a job lives long enough to be caught and paused mid-run
STUDY = "acts"
PAUSED, TERMINATED, KILLED, UNTOUCHED = ("activation-relu__seed-0", "activation-relu__seed-1",
                                         "activation-rrelu__seed-0", "activation-rrelu__seed-1")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    root = tmp_path_factory.mktemp("status")
    params = tiny_params()
    params["tracking"]["enabled"] = False
    params["train"].update({"epochs": EPOCHS, "width": 2, "batch_size": 256})
    params["studies"]["blowup"] = {"base": {"lr": 100, "epochs": 3, "width": 4, "batch_size": 128},  # NaN in epoch 1
                                   "axes": {"seed": [0]}}
    write_params(root / "params.yaml", params)
    loaded = load_params(root / "params.yaml")
    layout = Layout(root / "artifacts", root / "results")
    download(loaded, layout), prepare(loaded, layout, progress=False), stats(loaded, layout)
    return root, loaded, layout


def start_train(root: Path, study: str, point: str) -> tuple[subprocess.Popen, Path]:
    log = root / f"{point}.log"
    with open(log, "w") as handle:  # as the Snakemake rule: `trickbench train ... > {log} 2>&1`
        proc = subprocess.Popen([str(BIN / "trickbench"), "train", "--study", study, "--point", point], cwd=root,
                                stdout=handle, stderr=subprocess.STDOUT)
    return proc, log


def wait_for_epoch(proc: subprocess.Popen, run_dir: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = read_json(run_dir / "progress.json") if (run_dir / "progress.json").exists() else {}
        if record.get("epoch", 0) >= 1:
            return
        assert proc.poll() is None, f"train exited with {proc.returncode} before its first epoch"
        time.sleep(0.01)
    raise AssertionError("no epoch within the timeout")


def run_status(root: Path) -> str:
    done = subprocess.run([str(BIN / "trickbench"), "status"], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def point_line(output: str, point: str) -> str:
    (line,) = [line for line in output.splitlines() if f" {point} " in line]
    return " ".join(line.split())


def test_status_follows_real_train_jobs(project):
    from trickbench.stages.status import duration_text, history_seconds, status

    root, params, layout = project
    run_dir = layout.run_dir(STUDY, PAUSED)

    before = run_status(root)
    assert before.splitlines()[0].startswith(f"{STUDY}: 4 grid points: 0 done, 0 running, 0 failed, 4 pending")

    # a job caught mid-run (paused, so it cannot finish while we look)
    proc, log = start_train(root, STUDY, PAUSED)
    try:
        wait_for_epoch(proc, run_dir)
        proc.send_signal(signal.SIGSTOP)
        epoch = read_json(run_dir / "progress.json")["epoch"]
        assert 1 <= epoch < EPOCHS
        output = run_status(root)
        assert f"{STUDY}: 4 grid points: 0 done, 1 running, 0 failed, 3 pending" in output
        assert point_line(output, PAUSED) == f"running {PAUSED} epoch {epoch}/{EPOCHS}"
        # the log already holds every finished epoch (flushed), one aligned row each (paused between its
        # line and its record, the job has printed one epoch more than the record says)
        rows = [line for line in log.read_text().splitlines() if line.startswith("|")]
        assert len(rows) - 2 in (epoch, epoch + 1) and rows[2 + epoch - 1].split("|")[1].strip() == f"{epoch}/{EPOCHS}"
        # the time left, from the running job's rate: the rest of it plus three whole pending points
        (acts, _blowup) = status(params, layout)
        record = read_json(run_dir / "progress.json")
        rate = record["seconds"] / epoch
        assert acts.measured_from == "running jobs" and acts.seconds_per_epoch == pytest.approx(rate)
        assert acts.seconds_left == pytest.approx((EPOCHS - epoch + 3 * EPOCHS) * rate)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]

    lines = log.read_text().splitlines()
    header = [line for line in lines if "train loss" in line]
    assert len(header) == 1 and all(word in header[0] for word in
                                    ("epoch", "train err", "val loss", "val err", "lr", "seconds", "images/s"))
    rows = [line for line in lines if line.startswith("|")]
    assert len(rows) == 2 + EPOCHS and len({len(row) for row in rows}) == 1  # fixed width
    last = [cell.strip() for cell in rows[-1].strip("|").split("|")]
    history = (run_dir / "history.csv").read_text().splitlines()
    final = dict(zip(history[0].split(","), history[-1].split(",")))
    assert last[0] == f"{EPOCHS}/{EPOCHS}" and float(last[1]) == pytest.approx(float(final["train_loss"]), abs=1e-4)
    assert float(last[4]) == pytest.approx(float(final["val_error"]), abs=1e-4) and float(last[7]) > 0

    output = run_status(root)
    assert f"{STUDY}: 4 grid points: 1 done, 0 running, 0 failed, 3 pending" in output
    (acts, _blowup) = status(params, layout)
    seconds = history_seconds(run_dir / "history.csv")
    assert acts.measured_from == "finished runs" and acts.seconds_per_epoch == pytest.approx(sum(seconds) / EPOCHS)
    assert acts.seconds_left == pytest.approx(3 * EPOCHS * sum(seconds) / EPOCHS)
    assert f"time left: {duration_text(acts.seconds_left)} of training" in output.splitlines()[0]

    # SIGTERM (scancel, Snakemake stopping a job): recorded as failed by the job itself
    proc, log = start_train(root, STUDY, TERMINATED)
    wait_for_epoch(proc, layout.run_dir(STUDY, TERMINATED))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    # SIGKILL (out of memory, a node lost): no chance to record it; the record's process is gone
    proc, log = start_train(root, STUDY, KILLED)
    wait_for_epoch(proc, layout.run_dir(STUDY, KILLED))
    proc.kill()
    proc.wait(timeout=120)
    # a diverged run writes metrics.json with status diverged
    proc, log = start_train(root, "blowup", "seed-0")
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert read_json(layout.run_dir("blowup", "seed-0") / "metrics.json")["status"] == "diverged"

    output = run_status(root)
    assert f"{STUDY}: 4 grid points: 1 done, 0 running, 2 failed, 1 pending" in output
    assert point_line(output, TERMINATED).startswith(f"failed {TERMINATED} epoch ")
    assert point_line(output, TERMINATED).endswith(f": stopped (exit {128 + signal.SIGTERM})")
    assert "job gone" in point_line(output, KILLED)
    assert UNTOUCHED not in output  # pending points are only counted
    assert "blowup: 1 grid point: 0 done, 0 running, 1 failed, 0 pending; nothing left to train" in output
    assert point_line(output, "seed-0") == "failed seed-0 epoch 1/3: diverged in epoch 1"

    # another configuration of the same points: nothing on disk is theirs
    changed = {**params, "train": {**params["train"], "width": 3}}
    changed["studies"] = {STUDY: params["studies"][STUDY]}
    write_params(root / "changed.yaml", changed)
    done = subprocess.run([str(BIN / "trickbench"), "--params", "changed.yaml", "status"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith(f"{STUDY}: 4 grid points: 0 done, 0 running, 0 failed, 4 pending"), done.stderr


def test_status_before_any_data_counts_every_point_pending(tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    output = run_status(tmp_path)
    assert output == "acts: 4 grid points: 0 done, 0 running, 0 failed, 4 pending; " \
                     "time left: unknown (no epoch measured yet)\n"
    assert not (tmp_path / "artifacts").exists()  # status writes nothing


def test_duration_text():
    from trickbench.stages.status import duration_text

    assert [duration_text(s) for s in (0.4, 59.6, 61, 3599, 3600 * 5 + 60 * 7 + 3)] == \
           ["0s", "1m 00s", "1m 01s", "59m 59s", "5h 07m"]
    assert duration_text(None) == duration_text(math.nan) == "unknown"


def test_bad_params_file_is_one_line(tmp_path):
    done = subprocess.run([str(BIN / "trickbench"), "--params", str(tmp_path / "missing.yaml"), "status"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "missing.yaml" in done.stderr


def test_progress_bar_only_when_asked_and_lines_unchanged(tmp_path, capsys):
    import io

    from trickbench.progress import TrainProgress

    row = {"epoch": 1, "train_loss": 2.5, "train_error": 0.9, "val_loss": 2.4, "val_error": 0.8, "lr": 0.05,
           "seconds": 0.5, "images": 1000}
    outputs = {}
    for bar in (True, False):
        out = io.StringIO()
        progress = TrainProgress(tmp_path, "s/p", 2, "digest", out=out, bar=bar)
        progress.start()
        progress(row)
        progress.finished("completed")
        outputs[bar] = (out.getvalue(), capsys.readouterr().err)
    assert outputs[True][0] == outputs[False][0]  # the log lines are the same with or without a bar
    assert outputs[True][0].splitlines()[-1].split("|")[1:-1] == \
           ["       1/2 ", "     2.5000 ", "    0.9000 ", "    2.4000 ", "   0.8000 ", " 5.000e-02 ", "     0.50 ",
            "      2000 "]
    assert "1/2" in outputs[True][1] and "epoch" in outputs[True][1]  # tqdm on stderr
    assert outputs[False][1] == ""
    assert read_json(tmp_path / "progress.json")["state"] == "finished"


def test_bad_input_inside_training_leaves_no_record(project):
    """A finetune_from file that matches nothing fails inside the loop: one line, exit 2, and no progress
    record (bad input leaves nothing behind); status still counts the point pending."""
    import torch

    root, params, layout = project
    torch.save({"unrelated.weight": torch.zeros(3)}, root / "unrelated.pt")
    tune = {**params, "studies": {"tune": {"base": {"finetune_from": str(root / "unrelated.pt")},
                                           "axes": {"seed": [0]}}}}
    write_params(root / "tune.yaml", tune)
    done = subprocess.run([str(BIN / "trickbench"), "--params", "tune.yaml", "train", "--study", "tune", "--point",
                           "seed-0"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "train.finetune_from" in done.stderr
    assert not (layout.run_dir("tune", "seed-0") / "progress.json").exists()
    status = subprocess.run([str(BIN / "trickbench"), "--params", "tune.yaml", "status"], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert status.stdout.startswith("tune: 1 grid point: 0 done, 0 running, 0 failed, 1 pending"), status.stderr
