"""One prepared device run (GitHub issue 15): the CUDA tests and the GPU figures, written to
benchmarks/gpu/<date>.json.

Without CUDA it prints "no CUDA" and exits 0, writing nothing. With CUDA, in one call, each part a child
process with its own time limit (a part that fails or runs out of time is recorded, the rest still runs):

  1. the device, its driver and the software versions;
  2. the `gpu`-marked tests (tests/test_gpu_smoke.py: training, resume, determinism, bf16 numerics;
     tests/test_slots.py: each job sees only its slot's GPU) -> gpu_tests_passed;
  3. benchmarks/throughput.py on small_cnn and NiN against the usual pipeline -> throughput_ratio (and the
     like-for-like ratio at the same precision and layout);
  4. benchmarks/mfu.py: NiN's step FLOP rate (the loop as a job runs it: compiled, a checkpoint every epoch,
     MLflow queued where installed) against the measured bf16 matmul rate -> nin_mfu, and against the
     device's specified bf16 dense peak (H100 SXM / H200: 989 TFLOP/s) -> nin_mfu_vs_specified_peak;
  5. benchmarks/gpu_time_to_accuracy.py --preset loop: one paper-cifar10 training configuration on its 45k/5k
     split for a few epochs, extrapolated to the preset's runs x epochs -> paper_cifar10_epoch_s,
     paper_cifar10_preset_minutes;
  6. with --time-to-accuracy and time left: the time to 87.5 % test accuracy for ReLU NiN.

Runs on the GPU machine's image (Python 3.12, torch 2.11, no jsonschema, snakemake or mlflow) from the
checkout with PYTHONPATH=src; the CIFAR-10 ZIPs must be in --cifar10-dir (default benchmarks/data/cifar10,
git-ignored: copy them there and carry that folder).

    PYTHONPATH=src python benchmarks/gpu_check.py --budget 420
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, add_cifar10_argument, use_cifar10_dir

RATIO = re.compile(r"^RATIO (\S+): ([0-9.]+|nan)x", flags=re.M)
PRESET = re.compile(r"^PRESET paper_cifar10_epoch_s=([0-9.]+) paper_cifar10_preset_minutes=([0-9.]+)", flags=re.M)
PYTEST_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|error|errors)")
GPU_TEST_FILES = ("tests/test_gpu_smoke.py", "tests/test_slots.py")


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "device_count": torch.cuda.device_count(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        info["driver"], info["memory"] = [part.strip() for part in query.stdout.splitlines()[0].split(",")][:2]
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        info["driver"] = info["memory"] = None
    return info


def run_part(name: str, command: list[str], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one part, echoing its output; its return code, seconds and output are kept."""
    print(f"\n=== {name}: {' '.join(command)} (limit {timeout:.0f} s)", flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(1.0, timeout))
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        code = "timeout"
    seconds = time.perf_counter() - started
    print(output[-6000:], flush=True)
    print(f"=== {name}: {code} after {seconds:.0f} s", flush=True)
    return {"returncode": code, "seconds": round(seconds, 1), "output": output}


def ratios(output: str) -> dict[str, float]:
    return {name: float(value) for name, value in RATIO.findall(output)}


def result_path(out_dir: Path) -> Path:
    return out_dir / f"{time.strftime('%Y-%m-%d')}.json"


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Atomically: a killed run leaves the previous file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all parts together (420)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "gpu"), help="folder of <date>.json")
    parser.add_argument("--time-to-accuracy", action="store_true", help="also the time to 87.5 %% (if time is left)")
    add_cifar10_argument(parser)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing measured, nothing written")
        return 0
    use_cifar10_dir(args)
    deadline = time.monotonic() + args.budget
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))}
    python = sys.executable
    result: dict[str, Any] = {**device_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "parts": {}}
    print(json.dumps({k: v for k, v in result.items() if k != "parts"}), flush=True)

    def left(share: float) -> float:
        return share * (deadline - time.monotonic())

    parts = [
        ("gpu_tests", [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *GPU_TEST_FILES], 0.2),
        ("throughput", [python, "benchmarks/throughput.py", "--models", "small_cnn,nin", "--ablations", "none",
                        "--no-eval", "--windows", "4"], 0.35),
        ("mfu", [python, "benchmarks/mfu.py"], 0.4),
        ("preset", [python, "benchmarks/gpu_time_to_accuracy.py", "--skip-time-to-accuracy", "--preset", "loop",
                    "--preset-epochs", "3"], 0.9),
    ]
    if args.time_to_accuracy:
        parts.append(("time_to_accuracy", [python, "benchmarks/gpu_time_to_accuracy.py", "--preset", "skip"], 1.0))
    for name, command, share in parts:
        if deadline - time.monotonic() < 20:
            result["parts"][name] = {"returncode": "no time left"}
            continue
        result["parts"][name] = run_part(name, command, left(share), env)

    tests = result["parts"]["gpu_tests"]
    counts = {kind: int(n) for n, kind in PYTEST_SUMMARY.findall(tests.get("output", "")[-500:])}
    result["gpu_tests"] = counts
    result["gpu_tests_passed"] = tests.get("returncode") == 0 and counts.get("passed", 0) > 0
    found: dict[str, float] = {}
    for part in result["parts"].values():
        found.update(ratios(part.get("output", "")))
    result["ratios"] = found
    result["throughput_ratio"] = {m: found.get(f"throughput_cuda_{m}") for m in ("small_cnn", "nin")}
    result["throughput_ratio_like_for_like"] = {m: found.get(f"throughput_like_for_like_cuda_{m}")
                                                for m in ("small_cnn", "nin")}
    result["nin_mfu"] = found.get("mfu_cuda_nin")
    result["nin_mfu_vs_specified_peak"] = found.get("mfu_vs_specified_peak_cuda_nin")
    preset = PRESET.search(result["parts"].get("preset", {}).get("output", ""))
    result["paper_cifar10_epoch_s"] = float(preset.group(1)) if preset else None
    result["paper_cifar10_preset_minutes"] = float(preset.group(2)) if preset else None
    for part in result["parts"].values():
        part["output_tail"] = part.pop("output", "")[-3000:]
    path = result_path(Path(args.out))
    write_result(path, result)
    print(f"\ngpu_check: wrote {path}")
    print(json.dumps({k: result[k] for k in ("device", "gpu_tests_passed", "throughput_ratio", "nin_mfu",
                                             "nin_mfu_vs_specified_peak", "paper_cifar10_epoch_s", "paper_cifar10_preset_minutes")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
