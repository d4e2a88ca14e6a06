"""Where a CPU training step's time goes: each convolution's forward, backward-data and backward-weights
pass, timed by oneDNN itself, against the device's dense FLOP rate measured in the same run (GitHub issue 7).

throughput.py shows that trickbench runs at 90-95 % of its bare model step, so the step itself bounds what
any input pipeline can reach. This script opens that step up. A child process trains the model as
`trickbench train` does (channels_last, glibc malloc settings, SGD with foreach, ReLU, batch 128) and
switches oneDNN's verbose mode on for the measured steps; oneDNN then prints one line per primitive it
executes, with the kernel it chose (e.g. `brg_conv_fwd:avx2`, `jit:avx2`), the propagation kind and its
own wall time in ms. The parent parses those lines, counts each pass's FLOPs from its problem descriptor
(2 x mb x oc x oh x ow x ic/g x kh x kw) and reports, for the fastest of the measured steps (the one least
disturbed by other tenants of a shared machine; all its parts come from that one step), per convolution and
pass, the time and the GFLOP/s as a fraction of the device's best dense rate measured in the same run
(mfu.dense_rates: the faster of a 2048 x 2048 fp32 matmul and a dense 3x3 convolution):

    RATIO conv_<pass>_vs_dense_cpu_<model>: x    (the pass's GFLOP/s, all layers together / best dense GFLOP/s)
    RATIO conv_share_cpu_<model>: x              (convolution time / whole step time)

Each step is timed as a whole too (perf_counter), so the time outside the convolutions (activations,
pooling, loss, optimizer, the autograd engine) is the difference. CPU only: on CUDA convolutions run in
cuDNN, which has no such log; torch.profiler is the tool there.

    python benchmarks/conv_breakdown.py                          # small_cnn w32, nin w192, the issue's CNN
    python benchmarks/conv_breakdown.py --models nin --steps 5
    python benchmarks/conv_breakdown.py --quick                  # tiny widths: a test of the script
"""
from __future__ import annotations

import argparse
import ctypes
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

from _common import clean_env, header, ratio_line, table

MODELS = {"small_cnn": 32, "nin": 192, "reference_cnn": 32}
QUICK_WIDTH = {"small_cnn": 8, "nin": 24, "reference_cnn": 8}
BATCH = 128
PASSES = {"forward_training": "forward", "backward_data": "backward data", "backward_weights": "backward weights"}
STEP_MARK = "@@ step "
PROBLEM = re.compile(r"^(?:g(?P<g>\d+))?mb(?P<mb>\d+)_ic(?P<ic>\d+)oc(?P<oc>\d+)_ih(?P<ih>\d+)oh(?P<oh>\d+)"
                     r"kh(?P<kh>\d+)\S*?_iw(?P<iw>\d+)ow(?P<ow>\d+)kw(?P<kw>\d+)")


def worker(spec: dict[str, Any]) -> None:
    """Train `steps` measured steps after `warmup` ones, oneDNN verbose on for the measured ones only; print
    each measured step's wall time between the verbose lines it caused."""
    from trickbench.train.allocator import tune_allocator

    tune_allocator()
    import torch

    from throughput import bare_model_step

    torch.manual_seed(0)
    x = torch.rand(spec["batch"], 3, 32, 32)
    y = torch.randint(0, 10, (spec["batch"],))
    step = bare_model_step(spec["model"], spec["width"], x, y)

    for _ in range(spec["warmup"]):
        step()
    flush_c_stdio = ctypes.CDLL(None).fflush  # oneDNN prints through C's stdout, Python through its own buffer
    for _ in range(spec["steps"]):
        sys.stdout.flush()
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            started = time.perf_counter()
            step()
            seconds = time.perf_counter() - started
        flush_c_stdio(None)  # the step's verbose lines reach the pipe before its mark
        sys.stdout.write(f"{STEP_MARK}{seconds}\n")
        sys.stdout.flush()


def problem_flops(descriptor: str) -> float:
    found = PROBLEM.match(descriptor)
    if not found:
        raise ValueError(f"unparsed oneDNN convolution descriptor: {descriptor}")
    v = {k: int(val) if val else 1 for k, val in found.groupdict().items()}
    return 2.0 * v["mb"] * v["oc"] * v["oh"] * v["ow"] * (v["ic"] // v["g"]) * v["kh"] * v["kw"]


def parse(output: str) -> tuple[list[float], list[dict[str, Any]]]:
    """(step seconds, convolution executions: step, pass, layer descriptor, kernel, ms) from the child's stdout."""
    steps: list[float] = []
    executions = []
    for line in output.splitlines():
        if line.startswith(STEP_MARK):
            steps.append(float(line[len(STEP_MARK):]))
            continue
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields or "convolution" not in fields:
            continue
        at = fields.index("convolution")
        kind = fields[at + 2]
        descriptor = next((f for f in fields if PROBLEM.match(f)), None)
        if kind not in PASSES or descriptor is None:
            continue
        executions.append({"step": len(steps), "pass": PASSES[kind], "layer": descriptor, "kernel": fields[at + 1],
                           "ms": float(fields[-1])})
    return steps, executions


def breakdown(model: str, width: int, steps: int, warmup: int, batch: int) -> tuple[list[float], list[dict[str, Any]]]:
    spec = {"model": model, "width": width, "steps": steps, "warmup": warmup, "batch": batch}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=clean_env(),
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{model}: worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    step_seconds, executions = parse(done.stdout)
    if len(step_seconds) != steps or not executions:
        raise RuntimeError(f"{model}: expected {steps} steps with oneDNN convolution lines; got {len(step_seconds)} "
                           f"steps and {len(executions)} lines (is this torch built with oneDNN?)")
    return step_seconds, executions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny widths, 2 steps: checks the script")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {','.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per model (default 10; the fastest is broken down)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    from mfu import dense_rates, matmul_size

    header("conv_breakdown")
    import torch

    if not torch.backends.mkldnn.is_available():
        print("SKIPPED conv_breakdown: this torch has no oneDNN (mkldnn) CPU backend")
        return
    dense = dense_rates("cpu", torch.float32, args.quick)
    peak = dense["best"]
    print(f"dense rates: {matmul_size('cpu', args.quick)}^2 fp32 matmul {dense['matmul'] / 1e9:.1f} GFLOP/s, "
          f"3x3 convolution {dense['conv'] / 1e9:.1f} GFLOP/s; 'vs dense' below is against {peak / 1e9:.1f}")
    steps = args.steps or (2 if args.quick else 10)
    layer_rows, pass_rows = [], []
    for model in args.models.split(","):
        width = QUICK_WIDTH[model] if args.quick else MODELS[model]
        batch = 16 if args.quick else BATCH
        step_seconds, executions = breakdown(model, width, steps, 1 if args.quick else 3, batch)
        fastest = min(range(steps), key=step_seconds.__getitem__)
        step_ms = step_seconds[fastest] * 1e3
        # layers with the same shapes (NiN's two 16x16 1x1 convolutions) share a descriptor: one row, their sum
        per_step: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0] * steps)
        calls: dict[tuple[str, str, str], int] = defaultdict(int)
        for e in executions:
            key = (e["layer"], e["pass"], e["kernel"])
            per_step[key][e["step"]] += e["ms"]
            calls[key] += 1
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # pass -> [ms, FLOP]
        depth = {}  # the network's order: the order of the forward passes
        for e in executions:
            depth.setdefault(e["layer"], len(depth))
        order = list(PASSES.values())
        for (layer, kind, kernel), ms_by_step in sorted(per_step.items(),
                                                        key=lambda item: (depth[item[0][0]], order.index(item[0][1]))):
            ms = ms_by_step[fastest]
            layers = calls[(layer, kind, kernel)] / steps
            flops = problem_flops(layer) * layers
            totals[kind][0] += ms
            totals[kind][1] += flops
            layer_rows.append({"model": f"{model} w{width}", "convolution": layer.split("_iw")[0],
                               "layers": f"{layers:g}", "pass": kind,
                               "kernel": kernel, "ms/step": ms, "GFLOP/s": flops / ms / 1e6,
                               "vs dense": flops / ms / 1e-3 / peak})
        conv_ms = sum(ms for ms, _ in totals.values())
        for kind in PASSES.values():
            if kind not in totals:
                continue
            ms, flops = totals[kind]
            rate = flops / ms / 1e-3
            pass_rows.append({"model": f"{model} w{width}", "part": kind, "ms/step": ms, "share of step": ms / step_ms,
                              "GFLOP/s": rate / 1e9, "vs dense": rate / peak})
            ratio_line(f"conv_{kind.replace(' ', '_')}_vs_dense_cpu_{model}", rate / 1e9, peak / 1e9,
                       what=f"{model} convolutions, {kind}", baseline_what="best dense", unit="GFLOP/s")
        pass_rows.append({"model": f"{model} w{width}", "part": "outside the convolutions", "ms/step": step_ms - conv_ms,
                          "share of step": (step_ms - conv_ms) / step_ms})
        pass_rows.append({"model": f"{model} w{width}", "part": "whole step (fastest)", "ms/step": step_ms,
                          "share of step": 1.0})
        ratio_line(f"conv_share_cpu_{model}", conv_ms, step_ms, what=f"{model} convolutions", baseline_what="whole step",
                   unit="ms")
        if "forward" in totals and "backward weights" in totals:
            fwd, bww = totals["forward"], totals["backward weights"]
            ratio_line(f"conv_backward_weights_vs_forward_cpu_{model}", bww[0] / bww[1] * 1e9, fwd[0] / fwd[1] * 1e9,
                       what="backward weights", baseline_what="forward", unit="ms per GFLOP")
    print()
    table(pass_rows, ["model", "part", "ms/step", "share of step", "GFLOP/s", "vs dense"])
    print()
    table(layer_rows, ["model", "convolution", "layers", "pass", "kernel", "ms/step", "GFLOP/s", "vs dense"])


if __name__ == "__main__":
    main()
