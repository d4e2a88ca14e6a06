"""GPU slots on one machine: which device a train job may use, through lock files.

Snakemake's `gpu` resource is only a counter (`--resources gpu=N` limits how many jobs run at once); it
never tells a job WHICH device to use. A train job therefore takes a slot here before torch touches CUDA
and sets `CUDA_VISIBLE_DEVICES` to that slot's device. Each slot is a file
`<lock dir>/gpu-<device>.slot-<k>.lock` held with `fcntl.flock`: the kernel drops the lock when the
holding process exits or is killed, so a crashed job never leaves a device taken. `slots_per_gpu`
(params `resources.slots_per_gpu`) slots per device let several small jobs share one GPU. When every
slot is taken the job waits for one.

Devices: `$TRICKBENCH_GPUS` (a count; 0 switches slots off; tests simulate GPUs with it), else the
entries of `$CUDA_VISIBLE_DEVICES` if set, else `nvidia-smi -L`: a GPU by its index, or, for a GPU split
into MIG instances, each instance by its `MIG-...` UUID (a process can use one MIG instance, and only
named by UUID). nvidia-smi numbers GPUs in PCI bus order while CUDA numbers them fastest first unless
`CUDA_DEVICE_ORDER=PCI_BUS_ID`, so a job given a slot gets that setting with its CUDA_VISIBLE_DEVICES.
No GPU, a SLURM job (SLURM binds its devices itself) or an explicit device (`device: cpu` or `cuda:1`)
-> no slot, nothing changes.
Lock dir: `$TRICKBENCH_SLOT_DIR`, else /tmp/trickbench-slots-<uid> (shared by every job of the user).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from trickbench.errors import BadInput

SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SlotError(BadInput, LookupError):
    """A bad slot setting ($TRICKBENCH_GPUS); the message names it."""


class SlotTimeout(TimeoutError):
    """No slot became free within the time asked for."""


def slot_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TRICKBENCH_SLOT_DIR") or f"/tmp/trickbench-slots-{os.getuid()}")


GPU_LINE = re.compile(r"^GPU (\d+):")
MIG_LINE = re.compile(r"^\s+MIG\b.*\(UUID: (MIG-[^)\s]+)\)")


def devices_from_listing(listing: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES entries of an `nvidia-smi -L` listing: "<index>" for a whole GPU, the
    instances' "MIG-<uuid>" for a GPU in MIG mode (its own index would reach only its first instance)."""
    devices: list[str] = []
    gpu: str | None = None
    migs: list[str] = []

    def close() -> None:
        if gpu is not None:
            devices.extend(migs if migs else [gpu])

    for line in listing.splitlines():
        if match := GPU_LINE.match(line):
            close()
            gpu, migs = match.group(1), []
        elif (match := MIG_LINE.match(line)) and gpu is not None:
            migs.append(match.group(1))
    close()
    return devices


def _devices_from_nvidia_smi() -> list[str] | None:
    """Devices listed by `nvidia-smi -L`; None if it is missing or fails (no CUDA is initialised here)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return devices_from_listing(out.stdout)


def _count_from_torch() -> int:
    """Ask torch in a child process: torch.cuda.device_count() may initialise CUDA in the caller, after
    which CUDA_VISIBLE_DEVICES would be ignored. Only tried when the driver's device files exist."""
    if not Path("/dev/nvidiactl").exists():
        return 0
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                             capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip() or 0)
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


def visible_devices(env: Mapping[str, str] | None = None) -> list[str]:
    """The devices slots are handed out on, as CUDA_VISIBLE_DEVICES entries ("0", "1", or GPU UUIDs)."""
    env = os.environ if env is None else env
    simulated = env.get("TRICKBENCH_GPUS")
    if simulated not in (None, ""):
        try:
            count = int(simulated)
        except ValueError:
            raise SlotError(f"$TRICKBENCH_GPUS: expected a number of GPUs, got {simulated!r}") from None
        return [str(i) for i in range(max(count, 0))]
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [entry.strip() for entry in listed.split(",") if entry.strip()]
        # CUDA stops at the first invalid entry; "-1" or "" hides every GPU
        valid = []
        for entry in entries:
            if entry.startswith("-"):
                break
            valid.append(entry)
        return valid
    listed_by_smi = _devices_from_nvidia_smi()
    if listed_by_smi is not None:
        return listed_by_smi
    return [str(i) for i in range(_count_from_torch())]


@dataclass
class Slot:
    """A held slot: `device` is the CUDA_VISIBLE_DEVICES entry, `index` the slot number on it."""

    device: str
    index: int
    path: Path
    _fd: int | None = field(default=None, repr=False)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def slot_path(lock_dir: Path, device: str, index: int) -> Path:
    return lock_dir / f"gpu-{SAFE.sub('_', device)}.slot-{index}.lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _candidates(devices: list[str], slots_per_gpu: int) -> Iterator[tuple[str, int]]:
    """Slot 0 of every device first, then slot 1 ...: jobs spread over the GPUs before they share one."""
    for index in range(slots_per_gpu):
        for device in devices:
            yield device, index


def try_acquire(devices: list[str], slots_per_gpu: int = 1, lock_dir: Path | None = None) -> Slot | None:
    """A free slot, or None if every one is held."""
    lock_dir = lock_dir or slot_dir()
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for device, index in _candidates(devices, slots_per_gpu):
        path = slot_path(lock_dir, device, index)
        fd = _try_lock(path)
        if fd is not None:
            holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
            return Slot(device, index, path, fd)
    return None


def acquire(devices: list[str], slots_per_gpu: int = 1, *, lock_dir: Path | None = None,
            timeout: float | None = None, poll: float = 0.5,
            on_wait: Callable[[], None] | None = None) -> Slot:
    """Wait until a slot is free and take it. timeout None: wait as long as it takes."""
    if not devices:
        raise ValueError("no devices to take a slot on")
    if slots_per_gpu < 1:
        raise ValueError(f"resources.slots_per_gpu: expected at least 1, got {slots_per_gpu}")
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while True:
        slot = try_acquire(devices, slots_per_gpu, lock_dir)
        if slot is not None:
            return slot
        if deadline is not None and time.monotonic() >= deadline:
            raise SlotTimeout(f"no free GPU slot among {len(devices)} device(s) x {slots_per_gpu} "
                              f"in {lock_dir or slot_dir()} after {timeout:g} s")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(poll * (0.5 + random.random()))


def wants_slot(device_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Only jobs that let us choose the device (`auto`, `cuda`) take a slot; never inside a SLURM job."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        return False
    return device_name in ("auto", "cuda")


def training_slot(params: dict, device_name: str, *, timeout: float | None = None,
                  log: Callable[[str], None] | None = None) -> Slot | None:
    """Take a slot for a train job and point CUDA_VISIBLE_DEVICES at its device; None (and nothing
    changed) when there is no GPU or the job does not choose its device. Call before torch uses CUDA."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    if not wants_slot(device_name):
        return None
    devices = visible_devices()
    if not devices:
        return None
    per_gpu = params.get("resources", {}).get("slots_per_gpu", 1)
    lock_dir = slot_dir()
    slot = acquire(devices, per_gpu, lock_dir=lock_dir, timeout=timeout,
                   on_wait=lambda: log(f"slots: all {len(devices) * per_gpu} GPU slots in {lock_dir} are taken; waiting"))
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        # indices from nvidia-smi (PCI bus order) mean the same GPUs to CUDA only in this order; entries the
        # user gave in CUDA_VISIBLE_DEVICES keep the order they were written for
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.device
    log(f"slots: GPU {slot.device} (slot {slot.index + 1} of {per_gpu}), lock {slot.path}")
    return slot


@contextlib.contextmanager
def slot_held(params: dict, device_name: str) -> Iterator[Slot | None]:
    """A train job's GPU slot (training_slot) for the length of the block, released however it ends."""
    slot = training_slot(params, device_name)
    try:
        yield slot
    finally:
        if slot is not None:
            slot.release()


def status(devices: list[str], slots_per_gpu: int, lock_dir: Path | None = None) -> list[dict[str, object]]:
    """Every slot with whether it is held and by whom (what the holder wrote into its lock file)."""
    lock_dir = lock_dir or slot_dir()
    rows = []
    for device, index in _candidates(devices, slots_per_gpu):
        path = slot_path(lock_dir, device, index)
        held, holder = False, ""
        if path.exists():
            fd = _try_lock(path)
            if fd is None:
                held = True
                try:
                    holder = path.read_text().strip()
                except OSError:
                    holder = "?"
            else:
                os.close(fd)
        rows.append({"device": device, "slot": index, "held": held, "holder": holder, "path": str(path)})
    return rows
