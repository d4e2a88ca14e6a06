"""On which hardware and software a number was made: recorded with every run, printed under every table.

Results of the same params differ in the last digits between CPUs (oneDNN picks other kernels on AVX2 and
AVX-512), so a number without its machine cannot be compared. Nothing here initialises CUDA unless the run
itself uses a CUDA device.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

# the keys of a run's provenance, in the order the tables and runs.csv show them
KEYS = ("cpu", "gpu", "torch", "cuda", "cudnn", "threads", "python", "git_commit")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def package_version(package: str) -> str | None:
    """The installed version of a distribution (trickbench: its `__version__` when not installed), else None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        if package == "trickbench":
            import trickbench
            return getattr(trickbench, "__version__", None)
        return None


@lru_cache(maxsize=1)
def git_commit(cwd: str | None = None) -> str:
    """HEAD of the checkout the code runs from, with `-dirty` when tracked code differs from it."""
    where = cwd or str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=where)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "workflow",
                                "Snakefile", "dvc.yaml"], capture_output=True, text=True, timeout=5,
                               cwd=head_root(where))
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def head_root(where: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5, cwd=where)
    return out.stdout.strip() or where


def machine(device: Any = None) -> dict[str, Any]:
    """The provenance of a run on `device` (a torch.device or its name; None: no torch work)."""
    import torch

    kind = getattr(device, "type", str(device or "cpu")).split(":")[0]
    record: dict[str, Any] = {
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical CPUs)",
        "gpu": "none",
        "torch": torch.__version__,
        "cuda": "none",
        "cudnn": "none",
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }
    if kind == "cuda":
        index = torch.device(device).index or 0
        record["gpu"] = torch.cuda.get_device_name(index)
        record["cuda"] = str(torch.version.cuda)
        record["cudnn"] = str(torch.backends.cudnn.version())
    return record


def tags(record: dict[str, Any]) -> dict[str, str]:
    """MLflow tags: ours under trickbench.*, and the commit where MLflow's UI shows it."""
    found = {f"trickbench.{key}": str(record[key]) for key in KEYS if key in record}
    if "git_commit" in record:
        found["mlflow.source.git.commit"] = str(record["git_commit"]).removesuffix("-dirty")
    return found


def short_commit(record: dict[str, Any]) -> str:
    commit = str(record.get("git_commit", "unknown"))
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def describe(record: dict[str, Any], commit: bool = True) -> str:
    """One line: 'made on <cpu>, <threads> threads, <gpu> with torch <v> (CUDA, cuDNN), Python <v>, git <c>'
    (without the git part if not `commit`)."""
    gpu = "no GPU" if record.get("gpu", "none") == "none" else f"GPU {record['gpu']}"
    gpu_stack = "" if record.get("cuda", "none") == "none" else f" (CUDA {record['cuda']}, cuDNN {record['cudnn']})"
    text = (f"made on {record.get('cpu', 'unknown CPU')}, {record.get('threads', '?')} thread(s), {gpu} "
            f"with torch {record.get('torch', '?')}{gpu_stack}, Python {record.get('python', '?')}")
    return f"{text}, git {short_commit(record)}" if commit else text


def footer(records: list[dict[str, Any]]) -> str:
    """The line under a table of these runs: each distinct machine once, with how many runs it made."""
    lines: dict[str, int] = {}
    for record in records:
        text = describe(record.get("provenance") or {})
        lines[text] = lines.get(text, 0) + 1
    if not lines:
        return ""
    if len(lines) == 1:
        return f"_Runs {next(iter(lines))}._"
    return "_Runs " + "; ".join(f"{count} {text}" for text, count in lines.items()) + "._"
