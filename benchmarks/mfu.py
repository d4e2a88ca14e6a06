"""Model FLOPs utilisation of a NiN training step (GitHub issue 7).

FLOPs of one training step (forward, loss, backward; the optimizer's elementwise update is not counted)
come from torch.utils.flop_counter.FlopCounterMode on the real model and are cross-checked against
reproduction.md §4 (0.445 GFLOP forward, ≈ 1.34 GFLOP per image for a training step). The achieved rate
is that count times the images/s of trickbench's real training loop (train.loop.train: device-resident
uint8 data, batched flip + crop, channels_last, glibc malloc settings; its first epoch is warm-up). The
baseline is the device's dense matmul rate measured in the same run (fp32 on CPU, bf16 on GPU):

    MFU = achieved FLOP/s / measured matmul FLOP/s

and, on a GPU, against the device's specified bf16 dense peak (_common.SPECIFIED_BF16_PEAK, by device name:
H100 SXM and H200 989 TFLOP/s), the figure MFU usually means. The loop runs as a job does: a checkpoint
every epoch, the MLflow run behind its queue (where mlflow is installed), compiled on CUDA.

The matmul rate is a lower bound of the device's peak, not the peak: on this workplace's AMD CPUs, MKL's
sgemm (torch.mm) reaches ~188 GFLOP/s while oneDNN's 3x3 convolutions reach ~220. So the script also
times a dense 3x3 convolution (NiN's third-block shape) and prints the MFU against the faster of the two.

    python benchmarks/mfu.py              # the GPU (bf16) where there is one, else the CPU (fp32)
    python benchmarks/mfu.py --quick      # narrow NiN, few steps: a test of the script

The loop's training split is as many images as its window needs (steps x batch, decoded from the full
50k ZIP when the 10k subset is too small), plus 128 validation and 128 test images; if fewer images are
there, the window shrinks to what the split really holds, and images/s are counted on the split's real
length (`--sizes cuda` forces the GPU's window on the CPU: a test of that sizing).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

REFERENCE_FORWARD = 0.445e9  # reproduction.md §4: 222.5 M multiply-adds per 32x32 image
REFERENCE_STEP = 1.34e9  # ≈ 3 x forward


def step_flops(model_width: int, batch: int, device: str, channels_last: bool) -> tuple[float, float]:
    """(forward FLOPs, training-step FLOPs) per image, counted by FlopCounterMode."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from trickbench.nn.models import build_model

    model = build_model("nin", activation="relu", in_channels=3, num_classes=10, image_size=32, width=model_width,
                        batch_norm=False, dropout=0.5).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    with FlopCounterMode(display=False) as forward_counter:
        with torch.no_grad():
            model(x)
    with FlopCounterMode(display=False) as step_counter:
        F.cross_entropy(model(x), y).backward()
    return forward_counter.get_total_flops() / batch, step_counter.get_total_flops() / batch


def best_rate(device: str, flops: float, action: Any, seconds: float) -> float:
    """FLOP/s of `action` (`flops` per call): the best of repeated timed bursts over `seconds`."""
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        action()
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps = 10 if device == "cuda" else 1
        started = time.perf_counter()
        for _ in range(reps):
            action()
        sync()
        best = max(best, reps * flops / (time.perf_counter() - started))
    return best


def matmul_rate(device: str, dtype: Any, size: int, seconds: float) -> float:
    """Dense n x n matmul FLOP/s (2 n^3 per product): the issue's baseline (MKL on x86 CPUs, cuBLAS on GPUs)."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    return best_rate(device, 2.0 * size ** 3, lambda: torch.mm(a, b, out=out), seconds)


# A second dense kernel: a 3x3 convolution, channels_last, forward only (oneDNN on CPUs, cuDNN on GPUs), in the
# shape of NiN's third block. On this workplace's AMD CPUs oneDNN's convolutions run faster than MKL's sgemm
# (conv_breakdown.py found NiN's own layers above the matmul rate), so the matmul rate is not the cores' peak;
# the faster of the two is the better lower bound of it.
DENSE_CONV = {"batch": 128, "channels": 192, "size": 8, "kernel": 3}
QUICK_DENSE_CONV = {"batch": 16, "channels": 64, "size": 8, "kernel": 3}


def conv_rate(device: str, dtype: Any, shape: dict[str, int], seconds: float) -> float:
    import torch
    import torch.nn.functional as F

    n, c, size, k = shape["batch"], shape["channels"], shape["size"], shape["kernel"]
    x = torch.randn(n, c, size, size, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, k, k, device=device).to(dtype).contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.no_grad():
            F.conv2d(x, w, padding=k // 2)

    return best_rate(device, 2.0 * n * c * c * size * size * k * k, forward, seconds)


def matmul_size(device: str, quick: bool) -> int:
    return 512 if quick else (8192 if device == "cuda" else 2048)


def dense_rates(device: str, dtype: Any, quick: bool) -> dict[str, float]:
    """The device's dense FLOP/s, measured now: {"matmul": the matmul_size matmul, "conv": DENSE_CONV, "best": the
    faster}."""
    seconds = 1.0 if quick else 5.0
    rates = {"matmul": matmul_rate(device, dtype, matmul_size(device, quick), seconds),
             "conv": conv_rate(device, dtype, QUICK_DENSE_CONV if quick else DENSE_CONV, seconds)}
    rates["best"] = max(rates["matmul"], rates["conv"])
    return rates


HOLDOUT = 128  # validation and test images each: the loop evaluates both


def window_split(available: int, steps_per_epoch: int, batch: int) -> dict[str, slice]:
    """Train / val / test slices of `available` decoded images for a window of `steps_per_epoch` full
    batches: the window shrinks to the images there are after the two hold-outs, never the hold-outs."""
    steps = min(steps_per_epoch, (available - 2 * HOLDOUT) // batch)
    if steps < 1:
        raise SystemExit(f"mfu: {available} images cannot hold one batch of {batch} besides {2 * HOLDOUT} "
                         "validation and test images")
    n = steps * batch
    return {"train": slice(0, n), "val": slice(n, n + HOLDOUT), "test": slice(n + HOLDOUT, n + 2 * HOLDOUT)}


def images_needed(steps_per_epoch: int, batch: int) -> int:
    return steps_per_epoch * batch + 2 * HOLDOUT


def loop_images_per_s(width: int, device: str, steps_per_epoch: int, epochs: int, images: Any, labels: Any,
                      batch: int) -> float:
    """Images/s of trickbench.train.loop.train as a job runs it (a checkpoint every epoch, the MLflow run
    behind its queue, compiled on CUDA as the paper presets are): its best epoch after the first (the least
    disturbed by other processes on a shared machine), counted on the training split it really had."""
    import tempfile

    import torch

    from _common import real_job_io, train_config
    from trickbench.data.prepared import Prepared
    from trickbench.data.stats import compute_stats, runtime_stats
    from trickbench.train.loop import train

    split = window_split(len(labels), steps_per_epoch, batch)
    n = split["train"].stop
    print(f"window: {n // batch} steps of {batch} ({len(labels)} images decoded: train {n}, val {HOLDOUT}, "
          f"test {HOLDOUT})", flush=True)
    prepared = Prepared({k: images[s] for k, s in split.items()}, {k: labels[s] for k, s in split.items()},
                        [str(i) for i in range(10)])
    stats = runtime_stats(compute_stats(images[:n], whiten=False)[0], None, torch.device(device))
    config = train_config(model="nin", width=width, activation="relu", initializer="he_normal", regularizers=[],
                          augmentations=["flip", "crop"], preprocessing="normalize", optimizer="sgd", lr=0.01,
                          momentum=0.9, schedule="constant", batch_size=batch, eval_batch_size=1024, snapshots=1,
                          epochs=1 + epochs, device=device, amp=True, channels_last=True, compile=device == "cuda")
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        result = train(config, prepared, stats, config_digest="mfu", **real_job_io(Path(folder)),
                       on_epoch=lambda row: marks.append(time.perf_counter()))
    if result.status != "completed" or not all(math.isfinite(row["val_loss"]) for row in result.history):
        raise SystemExit(f"NiN training {result.status} (val_loss {[row['val_loss'] for row in result.history]})")
    if len(prepared.labels["train"]) != n or not len(prepared.labels["val"]) or not len(prepared.labels["test"]):
        raise SystemExit(f"mfu: the split is not what the window needs: {prepared.labels['train'].shape}")
    return max(n / (b - a) for a, b in zip(marks, marks[1:]))


def window_sizes(device: str, quick: bool) -> tuple[int, int]:
    """(steps per epoch, measured epochs) of the loop's window on `device`."""
    if device == "cuda":
        return (4, 1) if quick else (200, 3)
    return (2, 1) if quick else (6, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="NiN width 24, 2 steps: checks the script")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cuda where there is one, else cpu)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sizes", choices=["device", "cuda"], default="device",
                        help="the loop window's sizes: the device's own, or the GPU's (a test of the sizing on the CPU)")
    from _common import add_cifar10_argument, use_cifar10_dir

    add_cifar10_argument(parser)
    args = parser.parse_args()
    use_cifar10_dir(args)

    # the process settings of `trickbench train`: glibc malloc first, before torch allocates anything
    from trickbench.train.allocator import tune_allocator

    allocator = tune_allocator()
    import torch

    from _common import decode_cifar10, header, ratio_line, specified_peak, table

    header("mfu")
    # auto: the GPU alone where there is one (the CPU arm of a 192-wide NiN takes minutes and says nothing there)
    devices = (["cuda"] if torch.cuda.is_available() else ["cpu"]) if args.devices == "auto" \
        else args.devices.split(",")
    if "cuda" not in devices:
        print("GPU: skipped (no CUDA device); CPU figures only (fp32)")
    print(f"allocator: {allocator}")
    width = 24 if args.quick else 192
    batch = 8 if args.quick else args.batch
    # --sizes cuda: the GPU's full window (200 steps) even with --quick, on the 1,024 images --quick decodes
    sizes = {device: window_sizes("cuda", False) if args.sizes == "cuda" else window_sizes(device, args.quick)
             for device in devices}
    needed = max(images_needed(steps, batch) for steps, _ in sizes.values())
    if args.quick:
        images, labels = decode_cifar10(1024)  # a test of the script: the window shrinks to fit
    elif needed > 10000:  # the subset ZIP holds 10,000
        images, labels = decode_cifar10(needed, archive="cifar10_train.zip")
    else:
        images, labels = decode_cifar10(needed)
    rows = []
    for device in devices:
        forward, step = step_flops(width, 8 if args.quick else args.batch, device, channels_last=True)
        if not args.quick:
            print(f"FlopCounterMode, NiN width {width}: forward {forward / 1e9:.3f} GFLOP/image "
                  f"(reproduction.md: {REFERENCE_FORWARD / 1e9:.3f}), training step {step / 1e9:.3f} GFLOP/image "
                  f"(reproduction.md: ≈ {REFERENCE_STEP / 1e9:.2f}; the first convolution needs no input "
                  "gradient, so slightly less than 3 x forward)")
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        dense = dense_rates(device, dtype, args.quick)
        size = matmul_size(device, args.quick)
        steps, epochs = sizes[device]
        ips = loop_images_per_s(width, device, steps, epochs, images, labels, batch)
        achieved = ips * step
        dtype_name = str(dtype).replace("torch.", "")
        rows.append({"device": device, "dtype": dtype_name, "images/s": ips, "GFLOP/image": step / 1e9,
                     "achieved GFLOP/s": achieved / 1e9, "matmul n": size, "matmul GFLOP/s": dense["matmul"] / 1e9,
                     "MFU vs matmul": f"{100 * achieved / dense['matmul']:.1f} %",
                     "3x3 conv GFLOP/s": dense["conv"] / 1e9,
                     "MFU vs best dense": f"{100 * achieved / dense['best']:.1f} %"})
        ratio_line(f"mfu_{device}_nin", achieved / 1e9, dense["matmul"] / 1e9, what="NiN training step",
                   unit="GFLOP/s", baseline_what=f"dense {size}x{size} {dtype_name} matmul")
        ratio_line(f"mfu_vs_best_dense_{device}_nin", achieved / 1e9, dense["best"] / 1e9, what="NiN training step",
                   unit="GFLOP/s", baseline_what="the faster of that matmul and a dense 3x3 convolution "
                   f"({dense['conv'] / 1e9:,.0f} GFLOP/s)")
        peak = specified_peak(torch.cuda.get_device_name()) if device == "cuda" else None
        if peak is not None:
            rows[-1]["MFU vs specified peak"] = f"{100 * achieved / peak:.1f} %"
            ratio_line(f"mfu_vs_specified_peak_{device}_nin", achieved / 1e9, peak / 1e9, what="NiN training step",
                       unit="GFLOP/s", baseline_what=f"{torch.cuda.get_device_name()} specified bf16 dense peak")
        elif device == "cuda":
            print(f"no specified peak for {torch.cuda.get_device_name()} (add it to _common.SPECIFIED_BF16_PEAK)")
    print()
    table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
