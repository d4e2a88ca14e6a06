"""The benchmark scripts run (in --quick mode: tiny sizes) and print their ratio lines.

These tests check that the scripts work, never how fast anything is: the figures of a quick run on a
busy machine mean nothing (benchmarks/README.md holds the real ones).
"""
from __future__ import annotations

import os
import re
import subprocess
import time
import sys
from pathlib import Path

import pytest

from conftest import BIN, REPO, mlflow_runs

BENCHMARKS = REPO / "benchmarks"
CIFAR10 = Path(os.environ.get("TRICKBENCH_CIFAR10_DIR", REPO.parent / "shared" / "datasets" / "cifar10"))
needs_cifar = pytest.mark.skipif(not (CIFAR10 / "cifar10_train_subset.zip").is_file(),
                                 reason=f"the CIFAR-10 ZIPs are not in {CIFAR10}")
RATIO = re.compile(r"^RATIO (\S+): ([0-9.]+|nan)x \(", flags=re.M)


def run_benchmark(script: str, *args: str, timeout: int = 900) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["TRICKBENCH_CIFAR10_DIR"] = str(CIFAR10)  # the scripts' default is the checkout's benchmarks/data/cifar10
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
    assert "mfu_cpu_nin" in found and 0 < found["mfu_cpu_nin"] < 10  # a fraction of the matmul rate
    assert "MFU" in output


def test_checkpoint_cost_quick():
    found = ratios(run_benchmark("checkpoint_cost.py", "--quick"))
    assert {"checkpoint_epoch40_over_epoch1", "checkpoint_format2_epoch40_over_epoch1"} <= set(found)
    assert found["checkpoint_epoch40_format2_over_format3"] > 0


def test_tracking_overhead_quick():
    """The queued run also ends up holding every epoch (the script checks it and exits non-zero if not)."""
    found = ratios(run_benchmark("tracking_overhead.py", "--quick"))
    assert found["tracking_wait_queued_over_blocking"] > 0


def test_conv_breakdown_quick():
    """Every convolution pass is found in oneDNN's log and priced; the parts add up to the whole step."""
    output = run_benchmark("conv_breakdown.py", "--quick", "--models", "small_cnn,nin")
    found = ratios(output)
    for model in ("small_cnn", "nin"):
        for kind in ("forward", "backward_data", "backward_weights"):
            assert found[f"conv_{kind}_vs_dense_cpu_{model}"] > 0
        assert 0 < found[f"conv_share_cpu_{model}"] <= 1.0  # the convolutions are part of the step
    rows = [line.split() for line in output.splitlines() if line.strip().startswith("nin w24") and "mb16_" in line]
    # NiN has 9 convolutions, 8 distinct shapes (the 16x16 1x1 pair shares a descriptor: one row, "2" layers); the
    # first needs no input gradient: 8 x 3 passes - 1
    assert len(rows) == 23, rows
    assert sum(1 for row in rows if row[3] == "2") == 3


def test_convolution_descriptor_flops():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from conv_breakdown import parse, problem_flops
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert problem_flops("mb128_ic3oc32_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1") == 2 * 128 * 32 * 32 * 32 * 3 * 9
    assert problem_flops("g2mb4_ic8oc6_ih5oh3kh3sh1dh0ph0_iw5ow3kw3sw1dw0pw0") == 2 * 4 * 6 * 3 * 3 * 4 * 9
    with pytest.raises(ValueError, match="unparsed"):
        problem_flops("nonsense")
    log = "\n".join([
        "onednn_verbose,v1,info,oneDNN v3",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,backward_weights,src:f32,attr-scratchpad:user,"
        "alg:convolution_direct,mb2_ic3oc4_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1,0.5",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32,,,4x3x3x3,0.01",
        "@@ step 0.002",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32,"
        "attr-scratchpad:user,alg:convolution_direct,mb2_ic3oc4_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1,0.25",
        "@@ step 0.003",
    ])
    steps, executions = parse(log)
    assert steps == [0.002, 0.003]
    assert [(e["step"], e["pass"], e["kernel"], e["ms"]) for e in executions] == [
        (0, "backward weights", "jit:avx2", 0.5), (1, "forward", "brg_conv_fwd:avx2", 0.25)]


def test_activation_cost_quick():
    found = ratios(run_benchmark("activation_cost.py", "--quick", "--devices", "cpu", "--no-compile"))
    assert {"rrelu_where_free_cpu", "rrelu_vs_relu_cpu", "nin_step_rrelu_where_free_cpu",
            "nin_step_rrelu_vs_relu_cpu"} <= set(found)
    assert "rrelu_compile_cpu" not in found  # --no-compile drops that arm
    assert all(value > 0 for value in found.values())


def test_gpu_benchmark_skips_cleanly_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the real GPU benchmark")
    output = run_benchmark("gpu_time_to_accuracy.py")
    assert output.startswith("SKIPPED gpu_time_to_accuracy: no CUDA device")


@pytest.mark.slow
@needs_cifar
def test_throughput_quick():
    output = run_benchmark("throughput.py", "--quick", "--devices", "cpu", "--ablations", "side_by_side", "--copies", "2")
    found = ratios(output)
    assert {"throughput_cpu_small_cnn", "throughput_cpu_nin", "throughput_cpu_reference_cnn"} <= set(found)
    assert {"side_by_side_cpu_nin", "side_by_side_vs_one_run_cpu_nin"} <= set(found)
    assert "trickbench, 2 runs side by side x 1 thread (sum)" in output
    assert all(value > 0 for value in found.values())


@pytest.mark.slow
def test_pipeline_overhead_quick():
    found = ratios(run_benchmark("pipeline_overhead.py", "--quick"))
    assert {"noop_snakemake_4", "noop_dvc_4", "dag_20", "startup_first_step", "cli_grid"} <= set(found)


@pytest.mark.slow
@needs_cifar
def test_gpu_benchmark_quick_on_cpu():
    """--preset estimate: the preset through Snakemake (the default, --preset loop, runs in
    tests/test_device_image.py without Snakemake)."""
    found = ratios(run_benchmark("gpu_time_to_accuracy.py", "--quick", "--force-cpu", "--preset", "estimate"))
    assert {"time_to_20pct_cpu", "preset_cpu"} <= set(found)


def mfu_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import mfu
    finally:
        sys.path.remove(str(BENCHMARKS))
    return mfu


def test_mfu_window_fits_the_split_at_the_gpu_sizes():
    """The GPU's window (200 steps of 128) on the 5,000 images the script used to decode: the hold-outs keep
    their images, the window shrinks to what is left, and the script decodes enough images in the first place."""
    mfu = mfu_module()
    steps, _ = mfu.window_sizes("cuda", quick=False)
    assert mfu.images_needed(steps, 128) == 200 * 128 + 256
    split = mfu.window_split(5000, steps, 128)
    assert split["train"] == slice(0, 37 * 128)
    assert split["val"].stop - split["val"].start == split["test"].stop - split["test"].start == 128
    assert split["test"].stop <= 5000
    assert mfu.window_split(mfu.images_needed(steps, 128), steps, 128)["train"] == slice(0, steps * 128)
    with pytest.raises(SystemExit, match="cannot hold one batch"):
        mfu.window_split(300, steps, 128)


@needs_cifar
def test_mfu_loop_at_the_gpu_sizes_on_the_cpu(capsys, monkeypatch, one_thread):
    """The loop run at the GPU's step count on too few images: images/s are counted on the real split and
    validation and test are not empty (they were, and val_loss NaN made the run `diverged`)."""
    mfu = mfu_module()
    monkeypatch.setenv("TRICKBENCH_CIFAR10_DIR", str(CIFAR10))
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _common import decode_cifar10

        images, labels = decode_cifar10(640, workers=1)
        steps, _ = mfu.window_sizes("cuda", quick=False)
        rate = mfu.loop_images_per_s(8, "cpu", steps, 1, images, labels, 16)
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert rate > 0
    assert "window: 24 steps of 16 (640 images decoded: train 384, val 128, test 128)" in capsys.readouterr().out


# ------------------------------------------------------------------ the start-up measures the figures rely on

@pytest.fixture(scope="module")
def prepared_project(tmp_path_factory):
    """A tiny digits project (one grid point, 3 epochs) with data, stats and the MLflow store ready."""
    from conftest import tiny_params, write_params

    workdir = tmp_path_factory.mktemp("startup")
    params = tiny_params()
    params["train"]["epochs"] = 3
    params["studies"] = {"s": {"axes": {"seed": [0]}}}
    write_params(workdir / "params.yaml", params)
    env = project_env(workdir)
    for stage in ("tracking", "download", "prepare", "stats"):
        done = subprocess.run([str(BIN / "trickbench"), stage], cwd=workdir, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def project_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env.update(extra)
    return env


def train_point(workdir: Path, **extra: str) -> subprocess.CompletedProcess:
    import shutil

    shutil.rmtree(workdir / "artifacts" / "runs", ignore_errors=True)
    return subprocess.run([str(BIN / "trickbench"), "train", "--study", "s", "--point", "seed-0"], cwd=workdir,
                          env=project_env(workdir, **extra), capture_output=True, text=True, timeout=600)


def test_background_mlflow_run_gets_every_epoch(prepared_project):
    """The run is created on a worker thread (start-up), yet every epoch's metrics reach MLflow."""
    import json

    from trickbench import tracking

    done = train_point(prepared_project, TRICKBENCH_TRACKING_BACKGROUND="1")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((prepared_project / "artifacts/runs/s/seed-0/metrics.json").read_text())
    uri = f"sqlite:///{prepared_project / 'mlflow.db'}"
    run = next(r for r in mlflow_runs(uri, "trickbench-s") if r.info.run_id == metrics["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in tracking.metric_history(uri, run.info.run_id, "val_loss")] == [1, 2, 3]
    assert run.data.tags["trickbench.status"] == "completed"
    assert len(run.inputs.dataset_inputs) == 1


def test_the_progress_record_times_the_job_s_fixed_costs(prepared_project):
    """What pipeline_overhead.py reads: when reading the data, building and the first step ended, in order."""
    import json

    started = time.time()
    done = train_point(prepared_project)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((prepared_project / "artifacts/runs/s/seed-0/progress.json").read_text())
    moments = record["timeline"]
    assert started < moments["data_loaded"] <= moments["built"] <= moments["first_step"] < record["updated"]


@pytest.mark.parametrize("preset, expected", [({}, "mallopt"), ({"MALLOC_TRIM_THRESHOLD_": "4294967296"}, "env")])
def test_train_processes_tune_glibc_malloc(preset, expected):
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(preset)
    done = subprocess.run([sys.executable, "-c", "from trickbench.train.allocator import tune_allocator; print(tune_allocator())"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in (expected, "unavailable")  # "unavailable": not glibc (musl)
