"""The benchmark scripts run (in --quick mode: tiny sizes) and print their ratio lines.

These tests check that the scripts work, never how fast anything is: the figures of a quick run on a
busy machine mean nothing (benchmarks/README.md holds the real ones).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, REPO

BENCHMARKS = REPO / "benchmarks"
CIFAR10 = Path(os.environ.get("TRICKBENCH_CIFAR10_DIR", REPO.parent / "shared" / "datasets" / "cifar10"))
needs_cifar = pytest.mark.skipif(not (CIFAR10 / "cifar10_train_subset.zip").is_file(),
                                 reason=f"the CIFAR-10 ZIPs are not in {CIFAR10}")
RATIO = re.compile(r"^RATIO (\S+): ([0-9.]+|nan)x \(", flags=re.M)


def run_benchmark(script: str, *args: str, timeout: int = 900) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return done.stdout


def ratios(output: str) -> dict[str, float]:
    found = {name: float(value) for name, value in RATIO.findall(output)}
    assert found, f"no RATIO line in:\n{output[-3000:]}"
    return found


@needs_cifar
def test_prepare_quick():
    found = ratios(run_benchmark("prepare.py", "--quick"))
    assert "prepare_decode" in found and found["prepare_decode"] > 0


@needs_cifar
def test_mfu_quick():
    output = run_benchmark("mfu.py", "--quick")
    found = ratios(output)
    assert "mfu_cpu_nin" in found and 0 < found["mfu_cpu_nin"] < 10
    assert "MFU" in output


def test_gpu_benchmark_skips_cleanly_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the real GPU benchmark")
    output = run_benchmark("gpu_time_to_accuracy.py")
    assert output.startswith("SKIPPED gpu_time_to_accuracy: no CUDA device")


@pytest.mark.slow
@needs_cifar
def test_throughput_quick():
    found = ratios(run_benchmark("throughput.py", "--quick", "--devices", "cpu"))
    assert {"throughput_cpu_small_cnn", "throughput_cpu_nin"} <= set(found)
    assert all(value > 0 for value in found.values())


@pytest.mark.slow
def test_pipeline_overhead_quick():
    found = ratios(run_benchmark("pipeline_overhead.py", "--quick"))
    assert {"noop_snakemake_4", "noop_dvc_4", "dag_20", "startup_first_step", "cli_grid"} <= set(found)


@pytest.mark.slow
@needs_cifar
def test_gpu_benchmark_quick_on_cpu():
    found = ratios(run_benchmark("gpu_time_to_accuracy.py", "--quick", "--force-cpu"))
    assert {"time_to_20pct_cpu", "preset_cpu"} <= set(found)
