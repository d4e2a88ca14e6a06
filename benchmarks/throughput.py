"""Training images/s: trickbench's trainer against the usual PyTorch input pipeline (GitHub issue 7).

Same model (trickbench's `small_cnn` width 32, `nin` width 192, and the issue's 3-layer 32/64/128 CNN as
`reference_cnn`; ReLU, He init, SGD momentum 0.9 with foreach), same decoded CIFAR-10 images (the shared
JPEG ZIP, decoded once by trickbench's decoder), same batch size (128), same augmentation (random crop
with 4 px zero padding, horizontal flip) and per-channel normalisation:

  usual       a torchvision-style Dataset over the uint8 images (PIL image per sample) and a DataLoader
              with 2 workers, transforms RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
              Normalize; model in the default memory format, fp32; default glibc malloc settings.
  trickbench  the real training loop, `trickbench.train.loop.train` (uint8 data resident on the device,
              flips and crops on whole batches there), with trickbench's defaults: channels_last,
              bf16 autocast on GPU, and the glibc malloc settings `trickbench train` applies.
  bound       the model step alone: forward, backward and SGD step on one fixed, already augmented batch
              (trickbench's settings), the most any input pipeline could reach with this model step.
  ablations   trickbench with one optimisation switched off (or torch.compile switched on), to show
              what each is worth.
  side_by_side  N trickbench runs at once with one thread each (N = the CPU count, 2 on a GPU;
              --copies), their images/s summed: the grid's throughput under the pipeline's defaults.
  usual, like trickbench  (GPU only) the usual pipeline with trickbench's precision and layout (bf16
              autocast, channels_last, cudnn.benchmark): the ratio against it is the input pipeline's
              alone, where the plain usual arm's ratio also holds bf16 against fp32.

Every throughput RATIO line names each side's precision and memory layout (on the CPU trickbench is fp32
too: autocast is for CUDA).

Each arm runs in its own process (the malloc settings are per process) with all cores' threads; the
processes take turns, one measured window each, so load from other users of a shared machine hits every
arm alike (measure_arms). Warm-up is separate: the usual arm's first steps (worker start-up included),
the trickbench arm's first epoch; trickbench's measured epochs include their validation on 128 images.

    python benchmarks/throughput.py                    # the GPU where there is one, else the CPU; all three models
    python benchmarks/throughput.py --quick            # tiny sizes: a test of the script
    python benchmarks/throughput.py --models nin --ablations malloc,channels_last,compile --windows 10
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _common import (
    add_cifar10_argument, clean_env, decode_cifar10, header, ratio_line, run_child, table, train_config,
    use_cifar10_dir,
)

MODELS = {"small_cnn": 32, "nin": 192, "reference_cnn": 32}
DEFAULT_MODELS = "small_cnn,nin,reference_cnn"
# A window is WINDOW_STEPS training steps: one epoch of the trickbench arm, or (after PREFETCHED unmeasured
# steps that use up what the idle DataLoader workers prefetched) one stretch of the usual arm. All arms run
# as separate processes in lock-step (measure_arms): one window each, in turn. Each arm reports its best
# window, the measurement least disturbed by other processes on a shared machine, and its median.
STEPS = {  # (usual warm-up steps, measured windows per arm)
    ("cpu", "small_cnn"): (5, 8),
    ("cpu", "nin"): (2, 5),
    ("cuda", "small_cnn"): (20, 8),
    ("cuda", "nin"): (20, 8),
    ("cpu", "reference_cnn"): (5, 8),
    ("cuda", "reference_cnn"): (20, 8),
}
WINDOW_STEPS = {"cpu": 8, "cuda": 50}
QUICK_STEPS = (1, 2)
QUICK_WINDOW = 2
QUICK_WIDTH = {"small_cnn": 8, "nin": 24, "reference_cnn": 8}
BATCH = 128
VAL_IMAGES = 128
TARGET = 2.0
ABLATIONS = {
    "malloc": "trickbench, default glibc malloc",
    "channels_last": "trickbench, contiguous (NCHW) layout",
    "amp": "trickbench, fp32 (no bf16 autocast)",
    "foreach": "trickbench, for-loop SGD (foreach off)",
    "fused": "trickbench + fused SGD",
    "compile": "trickbench + torch.compile",
    "bound": "model step alone (no data path)",
    "side_by_side": "trickbench, {copies} runs side by side x 1 thread (sum)",
}
# The pipeline's default on a CPU workstation: params `resources.threads: 1`, so `snakemake --cores N` trains N
# grid points side by side. The side_by_side arm runs that many copies of the trickbench arm with one thread each
# and reports their combined images/s: the grid's throughput rather than one run's.
EVAL_IMAGES = 2048
USUAL = "usual (DataLoader, 2 workers)"
USUAL_MATCHED = "usual (DataLoader, 2 workers), like trickbench"


def precision_layout(device: str, amp: bool, channels_last: bool) -> str:
    """How an arm computes: bf16 autocast only on CUDA (the loop ignores amp on the CPU), and its layout."""
    precision = "bf16 autocast" if amp and device == "cuda" else "fp32"
    return f"{precision}, {'NHWC' if channels_last else 'NCHW'}"


# ------------------------------------------------------------------------------------------ workers

def register_reference_cnn() -> None:
    """The issue's reference network, registered in this process only: 3 x (conv3x3 -> ReLU -> max pool 2)
    with w, 2w, 4w channels (32/64/128 at w = 32), flatten, linear; the usual pipeline gets ~960 images/s
    with it (issue 7). Built from trickbench's own bricks, so both arms train it through the same code."""
    from torch import nn

    from trickbench.nn import models

    if "reference_cnn" in models.MODELS.names():
        return

    @models.MODELS.register("reference_cnn", "issue 7's 3-layer 32/64/128 CNN (benchmark only)", min_image_size=8)
    def reference_cnn(*, in_channels: int, num_classes: int, image_size: int, activation: Any, width: int,
                      batch_norm: bool, dropout: float) -> nn.Module:
        channels = [in_channels, width, 2 * width, 4 * width]
        blocks = [(f"stage{i}", models.sequential(
            models.conv_unit(1, channels[i - 1], channels[i], 3, activation, batch_norm)
            + [("pool", nn.MaxPool2d(2))])) for i in (1, 2, 3)]
        blocks.append(("flatten", nn.Flatten()))
        head = models.sequential([("fc", nn.Linear(4 * width * (image_size // 8) ** 2, num_classes))])
        return models.BlockNetwork(blocks, head)


def model_config(model: str, width: int, device: str, **overrides: Any) -> dict[str, Any]:
    registered = model in MODELS and model != "reference_cnn"  # the schema knows only the real registry
    config = train_config(model=model if registered else "small_cnn", width=width, activation="relu",
                          initializer="he_normal", regularizers=[], augmentations=["flip", "crop"],
                          preprocessing="normalize", optimizer="sgd", lr=0.01, momentum=0.9, schedule="constant",
                          batch_size=BATCH, eval_batch_size=1024, snapshots=1, device=device, **overrides)
    if not registered:
        register_reference_cnn()
        config["model"] = model
    return config


def load_arrays(path: str) -> tuple[Any, Any]:
    import numpy as np

    with np.load(path) as data:
        return data["images"], data["labels"]


def channel_stats(images: Any) -> dict[str, Any]:
    from trickbench.data.stats import compute_stats

    stats_json, _ = compute_stats(images, whiten=False)
    return stats_json


def worker_usual(spec: dict[str, Any]) -> dict[str, Any]:
    """torchvision Dataset + DataLoader(2 workers) + transforms: the pipeline of most CIFAR tutorials."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from trickbench.train.loop import build_network, parameter_groups
    from trickbench.train.optim import OPTIMIZERS
    from trickbench.train.regularizers import regularization

    images, labels = load_arrays(spec["data"])
    stats = channel_stats(images)
    device = torch.device(spec["device"])
    config = model_config(spec["model"], spec["width"], spec["device"], channels_last=False, amp=False)
    # the like-for-like arm: trickbench's precision, layout and cuDNN autotuning around the same DataLoader
    amp = spec.get("amp", False) and device.type == "cuda"
    fmt = torch.channels_last if spec.get("channels_last", False) else torch.contiguous_format
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(spec.get("matched"))

    class CifarImages(Dataset):
        """What torchvision.datasets.CIFAR10 does per sample: uint8 HWC array -> PIL image -> transform."""

        def __init__(self, images: Any, labels: Any, transform: Any):
            self.images, self.labels, self.transform = images, labels, transform

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, index: int) -> tuple[Any, int]:
            return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(stats["channel_mean"], stats["channel_std"]),
    ])
    loader = DataLoader(CifarImages(images, labels, transform), batch_size=BATCH, shuffle=True, num_workers=2,
                        drop_last=True, pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    reg = regularization(config)
    model = build_network(config, reg, images.shape[1:], 10).to(device=device, memory_format=fmt)
    optimizer = OPTIMIZERS.get("sgd")(parameter_groups(model, reg, config), config)
    model.train()
    window = spec["window"]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = iter(loader)

    def steps(n: int) -> None:
        nonlocal batches
        for _ in range(n):
            try:
                x, y = next(batches)
            except StopIteration:  # a new epoch: the workers restart, as in any DataLoader training
                batches = iter(loader)
                x, y = next(batches)
            x, y = x.to(device, non_blocking=True).contiguous(memory_format=fmt), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()

    started = time.perf_counter()
    steps(spec["warmup_steps"])
    say({"ready": True, "warmup_seconds": time.perf_counter() - started})
    while wait_for_go():
        steps(PREFETCHED)  # the batches the idle workers prefetched: not a steady-state measurement
        started = time.perf_counter()
        steps(window)
        say({"rate": window * BATCH / (time.perf_counter() - started)})


def set_optimizer_implementation(spec: dict[str, Any]) -> None:
    """Ablations of optim.py's multi-tensor (foreach) SGD: the benchmark swaps its keyword function."""
    from trickbench.train import optim

    if spec.get("foreach") is False:
        optim._foreach = lambda config: {"foreach": False}
    elif spec.get("fused"):
        optim._foreach = lambda config: {"fused": True}


def worker_trickbench(spec: dict[str, Any]) -> None:
    """The real loop: trickbench.train.loop.train on a Prepared built from the same images; one epoch
    (`window` steps) per "go", the loop waiting in its on_epoch hook in between."""
    set_optimizer_implementation(spec)
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    if spec.get("malloc", True):
        from trickbench.train.allocator import tune_allocator

        allocator = tune_allocator()
    else:
        allocator = "default"
    import torch

    from trickbench.data.prepared import Prepared
    from trickbench.data.stats import runtime_stats
    from trickbench.train.loop import train

    images, labels = load_arrays(spec["data"])
    n_train = spec["window"] * BATCH
    if len(labels) < n_train + 2 * VAL_IMAGES:
        raise SystemExit(f"need {n_train + 2 * VAL_IMAGES} images, have {len(labels)}")
    val, test = slice(n_train, n_train + VAL_IMAGES), slice(n_train + VAL_IMAGES, n_train + 2 * VAL_IMAGES)
    prepared = Prepared(images={"train": images[:n_train], "val": images[val], "test": images[test]},
                        labels={"train": labels[:n_train], "val": labels[val], "test": labels[test]},
                        class_names=[str(i) for i in range(10)])
    device = torch.device(spec["device"])
    stats = runtime_stats(channel_stats(images), None, device)
    config = model_config(spec["model"], spec["width"], spec["device"], epochs=1 + spec["max_windows"],
                          channels_last=spec.get("channels_last", True), amp=spec.get("amp", True),
                          compile=spec.get("compile", False))
    started = time.perf_counter()

    def on_epoch(row: dict[str, float]) -> None:
        nonlocal started
        if device.type == "cuda":
            torch.cuda.synchronize()
        if row["epoch"] == 1:  # the first epoch is warm-up (first-step costs, compilation)
            say({"ready": True, "warmup_seconds": time.perf_counter() - started, "allocator": allocator,
                 "threads": torch.get_num_threads()})
        else:
            say({"rate": n_train / (time.perf_counter() - started)})
        if not wait_for_go():
            raise SystemExit(0)
        started = time.perf_counter()

    result = train(config, prepared, stats, config_digest="benchmark", on_epoch=on_epoch)
    if result.status != "completed":
        raise SystemExit(f"training did not complete: {result.status}")


def bare_model_step(model: str, width: int, x: Any, y: Any) -> Callable[[], None]:
    """One training step as trickbench takes it (its network, channels_last, foreach SGD, bf16 autocast on
    CUDA) on the fixed batch x (NCHW, already normalised) and labels y, with nothing around it."""
    import torch
    import torch.nn.functional as F

    from trickbench.train.loop import build_network, parameter_groups
    from trickbench.train.optim import OPTIMIZERS
    from trickbench.train.regularizers import regularization

    device = x.device
    config = model_config(model, width, device.type)
    reg = regularization(config)
    fmt = torch.channels_last
    network = build_network(config, reg, (x.shape[2], x.shape[3], x.shape[1]), 10).to(device=device, memory_format=fmt)
    optimizer = OPTIMIZERS.get("sgd")(parameter_groups(network, reg, config), config)
    x = x.contiguous(memory_format=fmt)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(network(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def worker_model_step(spec: dict[str, Any]) -> None:
    """Upper bound of the trickbench arm: forward, backward and SGD step on one fixed, already augmented
    and normalised batch (channels_last, malloc settings), without slicing, augmenting or validating."""
    from trickbench.train.allocator import tune_allocator

    tune_allocator()
    import torch

    images, labels = load_arrays(spec["data"])
    device = torch.device(spec["device"])
    x = torch.from_numpy(images[:BATCH]).to(device).permute(0, 3, 1, 2).float().div(255)
    y = torch.from_numpy(labels[:BATCH]).to(device)
    step = bare_model_step(spec["model"], spec["width"], x, y)

    def steps(n: int) -> None:
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    steps(max(2, spec["warmup_steps"]))
    say({"ready": True, "warmup_seconds": time.perf_counter() - started})
    while wait_for_go():
        started = time.perf_counter()
        steps(spec["window"])
        say({"rate": spec["window"] * BATCH / (time.perf_counter() - started)})


def worker_eval(spec: dict[str, Any]) -> dict[str, Any]:
    """Evaluation of EVAL_IMAGES images: trickbench's predict (no gradients, eval_batch_size 1024) against
    the same with batches of 128 and against a batch-128 loop that leaves autograd on."""
    from trickbench.train.allocator import tune_allocator

    tune_allocator()
    import torch

    from trickbench.data.preprocess import PREPROCESSORS
    from trickbench.data.stats import runtime_stats
    from trickbench.train.loop import DeviceData, build_network, predict
    from trickbench.train.regularizers import regularization

    images, labels = load_arrays(spec["data"])
    device = torch.device(spec["device"])
    n = min(len(labels), spec["eval_images"])
    data = DeviceData(images[:n], labels[:n], device)
    config = model_config(spec["model"], spec["width"], spec["device"])
    fmt = torch.channels_last
    model = build_network(config, regularization(config), images.shape[1:], 10).to(device=device, memory_format=fmt)
    preprocess = PREPROCESSORS.get("normalize")(runtime_stats(channel_stats(images), None, device), device)
    prepare = lambda x: preprocess(x).contiguous(memory_format=fmt)  # noqa: E731
    amp = device.type == "cuda"

    def with_autograd(batch: int) -> None:
        model.eval()
        for start in range(0, n, batch):
            x, _ = data.batch(torch.arange(start, min(start + batch, n), device=device))
            model(prepare(x)).softmax(dim=1)

    variants = {
        "predict, batch 1024, no grad": lambda: predict(model, data, prepare, 1024, amp),
        "predict, batch 128, no grad": lambda: predict(model, data, prepare, 128, amp),
        "batch 128, autograd on": lambda: with_autograd(128),
    }
    best = {name: float("inf") for name in variants}
    for action in variants.values():
        action()  # warm-up
    for _ in range(spec.get("rounds", 5)):  # interleaved, so load from other processes hits all alike
        for name, action in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            action()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: n / seconds for name, seconds in best.items()}


# ------------------------------------------------------------------ lock-step protocol between the processes

PROTOCOL = "@@ "  # worker -> driver lines start with this; anything else a library prints is ignored
PREFETCHED = 4  # DataLoader(num_workers=2) holds 2 x prefetch_factor 2 batches ready after an idle pause


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
    sys.stdout.flush()


def wait_for_go() -> bool:
    return sys.stdin.readline().strip() == "go"


def run_worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    if spec["arm"] == "eval":
        print(json.dumps(worker_eval(spec)))
    elif spec["arm"] == "usual":
        worker_usual(spec)
    elif spec["arm"] == "bound":
        worker_model_step(spec)
    else:
        worker_trickbench(spec)


class Arm:
    """One worker process, idle between the windows the driver asks for."""

    def __init__(self, label: str, spec: dict[str, Any]):
        import subprocess

        self.label, self.rates = label, []
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=clean_env(),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, bufsize=1)
        self.ready = self.receive()

    def receive(self) -> dict[str, Any]:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])
        raise RuntimeError(f"{self.label}: worker ended ({self.process.wait()}):\n{self.process.stderr.read()[-3000:]}")

    def go(self) -> None:
        """Start one window; receive() then returns its rate."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def window(self) -> float:
        self.go()
        rate = self.receive()["rate"]
        self.rates.append(rate)
        return rate

    def close(self) -> None:
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=120)
        except Exception:
            self.process.kill()


class SideBySide:
    """`copies` trickbench processes with one thread each, released together: one window is over when the
    last of them has finished its epoch, and the rate is all their images over that wall time."""

    def __init__(self, label: str, spec: dict[str, Any], copies: int):
        self.label, self.rates, self.arms = label, [], []
        try:
            for copy in range(copies):
                self.arms.append(Arm(f"{label} #{copy}", {**spec, "threads": 1}))
                if self.arms[-1].ready.get("threads") != 1:
                    raise RuntimeError(f"{label} #{copy}: runs {self.arms[-1].ready.get('threads')} threads, not 1")
        except Exception:
            self.close()
            raise
        self.images = spec["window"] * BATCH * copies

    def window(self) -> float:
        started = time.perf_counter()
        for arm in self.arms:
            arm.go()
        for arm in self.arms:
            arm.receive()
        rate = self.images / (time.perf_counter() - started)
        self.rates.append(rate)
        return rate

    def close(self) -> None:
        for arm in self.arms:
            arm.close()


def measure_arms(specs: list[tuple[str, dict[str, Any]]], windows: int) -> dict[str, Arm | SideBySide]:
    """Start every arm (warm-up done one after another), then ask each for one window in turn, `windows`
    times, rotating the order: every arm is measured at nearly the same moments, so a burst of load from
    other processes hits all of them alike."""
    arms: dict[str, Arm | SideBySide] = {}
    try:
        for label, spec in specs:
            spec = {**spec, "max_windows": windows}
            arms[label] = SideBySide(label, spec, spec["copies"]) if spec.get("copies") else Arm(label, spec)
        order = list(arms)
        for index in range(windows):
            rotated = order[index % len(order):] + order[:index % len(order)]
            for label in rotated:
                arms[label].window()
    finally:
        for arm in arms.values():
            arm.close()
    return arms


# ------------------------------------------------------------------------------------------- driver

def side_by_side_label(copies: int) -> str:
    return ABLATIONS["side_by_side"].format(copies=copies)


def arms(device: str, ablations: list[str], copies: int | None) -> list[tuple[str, dict[str, Any]]]:
    out = [(USUAL, {"arm": "usual"}), ("trickbench", {"arm": "trickbench"})]
    if device == "cuda":
        out.append((USUAL_MATCHED, {"arm": "usual", "amp": True, "channels_last": True, "matched": True}))
    for name in ablations:
        if name == "amp" and device != "cuda":
            continue
        if name == "side_by_side":
            # on a GPU: that many grid points sharing it (params resources.slots_per_gpu)
            copies = copies or (os.cpu_count() or 2 if device == "cpu" else 2)
            out.append((side_by_side_label(copies), {"arm": "trickbench", "copies": copies}))
        elif name == "bound":
            out.append((ABLATIONS[name], {"arm": "bound"}))
        elif name in ("compile", "fused"):
            out.append((ABLATIONS[name], {"arm": "trickbench", name: True}))
        else:
            out.append((ABLATIONS[name], {"arm": "trickbench", name: False}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny widths and step counts: checks the script")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated: {DEFAULT_MODELS}")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cuda when available, else cpu)")
    parser.add_argument("--ablations", default=None,
                        help=f"comma-separated arms with one optimisation toggled: {','.join(ABLATIONS)}, or none "
                        "(default: all but compile; none with --quick)")
    parser.add_argument("--copies", type=int, default=None,
                        help="runs of the side_by_side arm (default: the number of CPU cores; 2 on a GPU)")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation measurement")
    parser.add_argument("--windows", type=int, default=None,
                        help="measured windows per arm (default: STEPS; the best and the median are reported)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_cifar10_argument(parser)
    args = parser.parse_args()
    use_cifar10_dir(args)
    if args.worker:
        run_worker(args.worker)
        return

    import torch

    header("throughput")
    # auto: the GPU alone where there is one (the CPU arms of NiN take many minutes and say nothing there)
    devices = (["cuda"] if torch.cuda.is_available() else ["cpu"]) if args.devices == "auto" \
        else args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("GPU: skipped (no CUDA device)")
        devices.remove("cuda")
    elif "cuda" not in devices and args.devices == "auto":
        print("GPU: skipped (no CUDA device); CPU figures only")
    if args.ablations is None:
        args.ablations = "none" if args.quick else "bound,side_by_side,malloc,channels_last,amp,foreach,fused"
    ablations = [a for a in args.ablations.split(",") if a and a != "none"]
    models = args.models.split(",")

    started = time.perf_counter()
    if args.quick:
        images, labels = decode_cifar10(1024)
    elif "cuda" in devices:  # 260 usual batches on the GPU: the whole training set
        images, labels = decode_cifar10(None, archive="cifar10_train.zip")
    else:
        images, labels = decode_cifar10(10000)
    print(f"data: {len(labels)} CIFAR-10 training images decoded in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="trickbench-throughput-") as tmp:
        import numpy as np

        data_path = str(Path(tmp) / "cifar10.npz")
        np.savez(data_path, images=images, labels=labels)
        rows = []
        for device in devices:
            for model in models:
                steps = QUICK_STEPS if args.quick else STEPS[(device, model)]
                width = QUICK_WIDTH[model] if args.quick else MODELS[model]
                window = QUICK_WINDOW if args.quick else WINDOW_STEPS[device]
                specs = [(label, {**arm, "device": device, "model": model, "width": width, "data": data_path,
                                  "warmup_steps": steps[0], "window": window})
                         for label, arm in arms(device, ablations, args.copies)]
                measured = measure_arms(specs, args.windows or steps[1])
                results = {label: {"images_per_s": max(arm.rates), "median": statistics.median(arm.rates),
                                   "rates": arm.rates} for label, arm in measured.items()}
                base = results[USUAL]["images_per_s"]
                base_median = results[USUAL]["median"]
                for label, result in results.items():
                    rows.append({"device": device, "model": f"{model} w{width}", "arm": label,
                                 "images/s (best)": result["images_per_s"], "vs usual": result["images_per_s"] / base,
                                 "median": result["median"], "vs usual (median)": result["median"] / base_median,
                                 "windows": len(result["rates"])})
                tb = results["trickbench"]["images_per_s"]
                print(f"{device} {model}: usual {base:.1f} images/s, trickbench {tb:.1f} images/s", flush=True)
                ours, theirs = precision_layout(device, True, True), precision_layout(device, False, False)
                ratio_line(f"throughput_{device}_{model}", tb, base, what=f"trickbench ({ours})",
                           baseline_what=f"usual ({theirs})", unit="images/s",
                           target=f">= {TARGET:g}x" if device == "cpu" else None, met=tb / base >= TARGET)
                if USUAL_MATCHED in results:
                    ratio_line(f"throughput_like_for_like_{device}_{model}", tb, results[USUAL_MATCHED]["images_per_s"],
                               what=f"trickbench ({ours})", baseline_what=f"usual ({ours}, cudnn.benchmark)",
                               unit="images/s")
                side_by_side = next((label for label in results if label.startswith("trickbench, ") and
                                     "side by side" in label), None)
                if side_by_side:
                    grid = results[side_by_side]["images_per_s"]
                    ratio_line(f"side_by_side_{device}_{model}", grid, base, what=side_by_side,
                               baseline_what="usual", unit="images/s")
                    ratio_line(f"side_by_side_vs_one_run_{device}_{model}", grid, tb, what=side_by_side,
                               baseline_what="trickbench, one run", unit="images/s")
                for key, label in ABLATIONS.items():
                    if key == "bound" and label in results:
                        ratio_line(f"bound_{device}_{model}", tb, results[label]["images_per_s"], what="trickbench",
                                   baseline_what=label, unit="images/s")
                    elif label in results:
                        ratio_line(f"ablation_{device}_{model}_{key}", tb, results[label]["images_per_s"],
                                   what="trickbench", baseline_what=label, unit="images/s")
        print()
        table(rows, ["device", "model", "arm", "images/s (best)", "vs usual", "median", "vs usual (median)",
                     "windows"])
        if not args.no_eval:
            print()
            eval_rows = []
            for device in devices:
                for model in models:
                    width = QUICK_WIDTH[model] if args.quick else MODELS[model]
                    spec = {"arm": "eval", "device": device, "model": model, "width": width, "data": data_path,
                            "eval_images": 256 if args.quick else EVAL_IMAGES, "rounds": 2 if args.quick else 5}
                    result = run_child([sys.executable, __file__, "--worker", json.dumps(spec)], clean_env())
                    base = result["predict, batch 1024, no grad"]
                    for label, value in result.items():
                        eval_rows.append({"device": device, "model": f"{model} w{width}", "evaluation": label,
                                          "images/s": value})
                        if label != "predict, batch 1024, no grad":
                            key = label.replace(", ", "_").replace(" ", "_")
                            ratio_line(f"eval_{device}_{model}_vs_{key}", base, value,
                                       what="predict (batch 1024, no grad)", baseline_what=label, unit="images/s")
            table(eval_rows, ["device", "model", "evaluation", "images/s"])


if __name__ == "__main__":
    main()
