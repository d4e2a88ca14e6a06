"""GPU slots (trickbench.slots) on CPU with a simulated device count ($TRICKBENCH_GPUS), plus the real
CUDA path where a GPU exists (marker `gpu`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import BIN
from trickbench import slots

HOLDER = textwrap.dedent("""
    import json, os, sys
    from trickbench import slots
    params = {"resources": {"slots_per_gpu": int(sys.argv[1])}}
    slot = slots.training_slot(params, sys.argv[2], timeout=float(sys.argv[3]), log=lambda m: None)
    print(json.dumps(None if slot is None else {"device": slot.device, "index": slot.index,
                                                "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}), flush=True)
    sys.stdin.readline()  # hold the slot until told (or killed)
""")


def forget(monkeypatch, *names: str) -> None:
    """Unset `names` for this test and restore them after it. Set first, then deleted: monkeypatch restores
    only what it recorded, and training_slot writes CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER itself; an
    unrecorded one would leak a fake GPU into every later test's subprocesses."""
    for name in names:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)


@pytest.fixture
def slot_env(tmp_path, monkeypatch):
    """Simulated GPUs, a private lock dir, no SLURM job around us."""
    monkeypatch.setenv("TRICKBENCH_SLOT_DIR", str(tmp_path / "slots"))
    forget(monkeypatch, "SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")

    def gpus(count: int) -> None:
        monkeypatch.setenv("TRICKBENCH_GPUS", str(count))
    return gpus


class Holder:
    """A separate process that takes a slot, reports it and holds it until released or killed."""

    def __init__(self, per_gpu: int = 1, device: str = "auto", timeout: float = 60):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(per_gpu), device, str(timeout)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def slot(self, timeout: float = 30) -> dict | None:
        line = self._readline(timeout)
        return json.loads(line)

    def _readline(self, timeout: float) -> str:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError("the holder has no slot yet")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"holder died: {self.proc.stderr.read()}")
        return line

    def waiting(self, seconds: float = 1.0) -> bool:
        try:
            self._readline(seconds)
        except TimeoutError:
            return self.proc.poll() is None
        return False

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(*args, **kwargs) -> Holder:
        holder = Holder(*args, **kwargs)
        started.append(holder)
        return holder
    yield start
    for holder in started:
        if holder.proc.poll() is None:
            holder.kill()


def test_two_processes_get_different_devices(slot_env, holders):
    slot_env(2)
    first, second = holders(), holders()
    a, b = first.slot(), second.slot()
    assert {a["device"], b["device"]} == {"0", "1"}
    assert a["cuda"] == a["device"] and b["cuda"] == b["device"]  # CUDA_VISIBLE_DEVICES set to the slot's GPU


def test_a_killed_holder_frees_its_slot(slot_env, holders):
    slot_env(1)
    first = holders()
    assert first.slot() == {"device": "0", "index": 0, "cuda": "0"}
    second = holders()
    assert second.waiting(1.5), "the second job should wait while the only slot is held"
    first.kill()  # SIGKILL: no cleanup code runs; the kernel drops the flock
    assert second.slot(timeout=10)["device"] == "0"


def test_slots_per_gpu_lets_jobs_share_a_device_and_the_next_one_waits(slot_env, holders):
    slot_env(1)
    jobs = [holders(per_gpu=2) for _ in range(2)]
    got = [job.slot() for job in jobs]
    assert sorted((g["device"], g["index"]) for g in got) == [("0", 0), ("0", 1)]
    third = holders(per_gpu=2)
    assert third.waiting(1.5)
    jobs[0].release()  # a normal exit frees it too
    assert third.slot(timeout=10) == {"device": "0", "index": got[0]["index"], "cuda": "0"}


def test_jobs_spread_over_devices_before_sharing(slot_env, tmp_path):
    slot_env(2)
    devices = slots.visible_devices()
    taken = [slots.try_acquire(devices, 2, tmp_path / "slots") for _ in range(4)]
    assert [(s.device, s.index) for s in taken] == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    assert slots.try_acquire(devices, 2, tmp_path / "slots") is None  # flock conflicts within one process too
    rows = slots.status(devices, 2, tmp_path / "slots")
    assert all(row["held"] and f"pid {os.getpid()}" in row["holder"] for row in rows)
    with pytest.raises(slots.SlotTimeout):
        slots.acquire(devices, 2, lock_dir=tmp_path / "slots", timeout=0.3, poll=0.05)
    taken[1].release()
    assert [row["held"] for row in slots.status(devices, 2, tmp_path / "slots")] == [True, False, True, True]
    again = slots.acquire(devices, 2, lock_dir=tmp_path / "slots", timeout=5, poll=0.05)
    assert (again.device, again.index) == ("1", 0)
    taken[1] = again
    for slot in taken:
        slot.release()


def test_no_gpu_slurm_or_an_explicit_device_changes_nothing(slot_env, monkeypatch):
    params = {"resources": {"slots_per_gpu": 1}}
    slot_env(0)
    assert slots.training_slot(params, "auto") is None
    slot_env(2)
    assert slots.training_slot(params, "cpu") is None
    assert slots.training_slot(params, "cuda:1") is None  # the user chose the device
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # SLURM binds the job's GPUs itself
    assert slots.training_slot(params, "auto") is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_devices_come_from_the_override_or_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("TRICKBENCH_GPUS", "3")
    assert slots.visible_devices() == ["0", "1", "2"]
    monkeypatch.delenv("TRICKBENCH_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert slots.visible_devices() == ["2", "3"]  # a job's slot is one of the devices it may see
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert slots.visible_devices() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert slots.visible_devices() == []
    monkeypatch.setenv("TRICKBENCH_GPUS", "two")
    with pytest.raises(slots.SlotError, match="TRICKBENCH_GPUS"):
        slots.visible_devices()


@pytest.mark.slow
def test_trickbench_train_waits_for_a_slot(slot_env, tmp_path, holders):
    """The CLI wiring: `trickbench train` takes a slot before training, waits while all are held."""
    from conftest import tiny_params, write_params
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    slot_env(1)
    params = tiny_params()
    params["train"]["epochs"] = 1
    params["studies"] = {"s": {"axes": {"seed": [0]}}}
    params["tracking"]["enabled"] = False
    write_params(tmp_path / "params.yaml", params)
    loaded = load_params(tmp_path / "params.yaml")
    layout = Layout(tmp_path / "artifacts", tmp_path / "results")
    download(loaded, layout), prepare(loaded, layout, progress=False), stats(loaded, layout)

    blocker = holders()
    assert blocker.slot()["device"] == "0"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = tmp_path / "train.log"
    with open(log, "w") as handle:
        train = subprocess.Popen([str(BIN / "trickbench"), "train", "--study", "s", "--point", "seed-0"],
                                 cwd=tmp_path, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "waiting" not in log.read_text():
            assert train.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "train did not report waiting for a slot"
            time.sleep(0.2)
        time.sleep(1.0)
        assert train.poll() is None and not (tmp_path / "artifacts/runs/s/seed-0").exists()
        blocker.release()
        assert train.wait(timeout=240) == 0, log.read_text()
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
    text = log.read_text()
    assert "all 1 GPU slots" in text and "slots: GPU 0 (slot 1 of 1)" in text, text
    assert json.loads((tmp_path / "artifacts/runs/s/seed-0/metrics.json").read_text())["status"] == "completed"


GPU_PROBE = textwrap.dedent("""
    import json, os, subprocess, sys
    from trickbench import slots
    slot = slots.training_slot({"resources": {"slots_per_gpu": 2}}, "auto", timeout=60, log=lambda m: None)
    import torch
    x = torch.ones(1, device="cuda")  # CUDA initialises only now, with CUDA_VISIBLE_DEVICES set
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    print(json.dumps({"slot": slot.device, "count": torch.cuda.device_count(), "uuid": uuid}), flush=True)
    sys.stdin.readline()
""")


@pytest.mark.gpu
def test_real_gpus_each_job_sees_only_its_slot_device(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    monkeypatch.setenv("TRICKBENCH_SLOT_DIR", str(tmp_path / "slots"))
    forget(monkeypatch, "TRICKBENCH_GPUS", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID")
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    uuids = [line.split("UUID: ")[1].rstrip(")").strip() for line in listing.splitlines()
             if line.startswith("GPU ") and "UUID: " in line]
    if any("MIG-" in line for line in listing.splitlines()):
        pytest.skip("GPUs in MIG mode: the probe below compares whole-GPU UUIDs")
    assert slots.visible_devices() == [str(i) for i in range(len(uuids))]
    procs = [subprocess.Popen([sys.executable, "-c", GPU_PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        seen = [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            p.communicate("\n", timeout=60)
    for probe in seen:
        assert probe["count"] == 1, probe  # the job sees exactly its slot's device ...
        assert uuids[int(probe["slot"])].removeprefix("GPU-") in probe["uuid"], (probe, uuids)  # ... and it is that one
    if len(uuids) >= 2:
        assert seen[0]["slot"] != seen[1]["slot"]  # two GPUs: spread before sharing


NVIDIA_SMI_LISTING = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0b6a3f52-7c1e-4c8e-9a57-1f2e3d4c5b6a)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-5f1d2e3c-4b5a-6978-8a9b-0c1d2e3f4a5b)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d2a1b4-8e3f-5a7b-9c1d-2e3f4a5b6c7d)
  MIG 3g.20gb     Device  1: (UUID: MIG-d7e3b2c5-9f4a-6b8c-0d2e-3f4a5b6c7d8e)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4)
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An `nvidia-smi` on PATH that prints a listing with a MIG-mode GPU between two whole ones."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 9\ncat <<'LISTING'\n{NVIDIA_SMI_LISTING}LISTING\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    forget(monkeypatch, "TRICKBENCH_GPUS", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID")
    monkeypatch.setenv("TRICKBENCH_SLOT_DIR", str(tmp_path / "slots"))


def test_nvidia_smi_gpus_are_slots_by_index_and_mig_instances_by_uuid(fake_nvidia_smi):
    assert slots.visible_devices() == ["0", "MIG-c6d2a1b4-8e3f-5a7b-9c1d-2e3f4a5b6c7d",
                                       "MIG-d7e3b2c5-9f4a-6b8c-0d2e-3f4a5b6c7d8e", "2"]
    assert slots.devices_from_listing("No devices were found\n") == []


def test_a_slot_from_nvidia_smi_sets_pci_bus_order_and_pins_the_process(fake_nvidia_smi):
    params = {"resources": {"slots_per_gpu": 1}}
    first = slots.training_slot(params, "auto", log=lambda m: None)
    try:
        assert first.device == "0"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        # the same process (train-study's next grid point) can only see that device now: it waits for a slot
        # there instead of taking GPU 2, which its CUDA could not reach
        assert slots.visible_devices() == ["0"]
        with pytest.raises(slots.SlotTimeout):
            slots.training_slot(params, "auto", timeout=0.3, log=lambda m: None)
    finally:
        first.release()


def test_user_given_cuda_visible_devices_keep_their_device_order(fake_nvidia_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    slot = slots.training_slot({"resources": {"slots_per_gpu": 1}}, "auto", log=lambda m: None)
    try:
        assert slot.device == "2" and "CUDA_DEVICE_ORDER" not in os.environ
    finally:
        slot.release()


@pytest.mark.slow
def test_train_study_takes_a_slot_for_every_grid_point(slot_env, tmp_path, holders):
    """DVC's grouping trains the points of a study in one process; each one holds a slot while it trains."""
    from conftest import tiny_params, write_params
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    slot_env(1)
    params = tiny_params()
    params["train"]["epochs"] = 1
    params["studies"] = {"s": {"axes": {"seed": [0, 1]}}}
    params["tracking"]["enabled"] = False
    write_params(tmp_path / "params.yaml", params)
    loaded = load_params(tmp_path / "params.yaml")
    layout = Layout(tmp_path / "artifacts", tmp_path / "results")
    download(loaded, layout), prepare(loaded, layout, progress=False), stats(loaded, layout)

    blocker = holders()
    assert blocker.slot()["device"] == "0"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = tmp_path / "train-study.log"
    with open(log, "w") as handle:
        study = subprocess.Popen([str(BIN / "trickbench"), "train-study", "--study", "s"], cwd=tmp_path, env=env,
                                 stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "waiting" not in log.read_text():
            assert study.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "train-study did not wait for a slot"
            time.sleep(0.2)
        assert not (tmp_path / "artifacts/runs/s").exists()
        blocker.release()
        assert study.wait(timeout=300) == 0, log.read_text()
    finally:
        if study.poll() is None:
            study.kill()
            study.wait()
    text = log.read_text()
    assert text.count("slots: GPU 0 (slot 1 of 1)") == 2, text
    for seed in (0, 1):
        assert json.loads((tmp_path / f"artifacts/runs/s/seed-{seed}/metrics.json").read_text())["status"] == "completed"


def test_slot_held_releases_its_slot_however_the_block_ends(slot_env, monkeypatch):
    """The helper both `trickbench train` and `train-study` take their slot with."""
    monkeypatch.setenv("TRICKBENCH_GPUS", "1")
    params = {"resources": {"slots_per_gpu": 1}}
    with pytest.raises(RuntimeError):
        with slots.slot_held(params, "auto") as slot:
            assert slot is not None and [r["held"] for r in slots.status(["0"], 1)] == [True]
            raise RuntimeError("the job failed")
    assert [r["held"] for r in slots.status(["0"], 1)] == [False]
    with slots.slot_held(params, "cpu") as slot:  # a job that chose its device takes none
        assert slot is None
