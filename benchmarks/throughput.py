"""Training images/s: trickbench's trainer against the usual PyTorch input pipeline (GitHub issue 7).

Same model (trickbench's `small_cnn` width 32 and `nin` width 192, ReLU, He init, SGD momentum 0.9 with
foreach), same decoded CIFAR-10 images (the shared JPEG ZIP, decoded once by trickbench's decoder), same
batch size (128), same augmentation (random crop with 4 px zero padding, horizontal flip) and
per-channel normalisation:

  usual       a torchvision-style Dataset over the uint8 images (PIL image per sample) and a DataLoader
              with 2 workers, transforms RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
              Normalize; model in the default memory format, fp32; default glibc malloc settings.
  trickbench  the real training loop, `trickbench.train.loop.train` (uint8 data resident on the device,
              flips and crops on whole batches there), with trickbench's defaults: channels_last,
              bf16 autocast on GPU, and the glibc malloc settings `trickbench train` applies.
  ablations   trickbench with one optimisation switched off (or torch.compile switched on), to show
              what each is worth.

Each arm runs in its own fresh process (the malloc settings are per process) with all cores' threads.
Warm-up is separate: the usual arm skips its first steps (worker start-up included), the trickbench arm
its first epoch; trickbench's measured epochs include their per-epoch validation on 128 images.

    python benchmarks/throughput.py                    # CPU (and GPU when there is one), both models
    python benchmarks/throughput.py --quick            # tiny sizes: a test of the script
    python benchmarks/throughput.py --models nin --ablations malloc,channels_last,compile
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import clean_env, decode_cifar10, header, ratio_line, run_child, table, train_config

MODELS = {"small_cnn": 32, "nin": 192}
# Steps per measurement: (usual warm-up steps, usual windows, trickbench measured epochs). A window is
# WINDOW_STEPS steps (more than the 4 batches the DataLoader's workers prefetch); an epoch of the
# trickbench arm is one window. Each arm reports its best window: on a shared machine that is the
# measurement least disturbed by other processes (the median is reported too).
STEPS = {
    ("cpu", "small_cnn"): (5, 4, 4),
    ("cpu", "nin"): (2, 3, 3),
    ("cuda", "small_cnn"): (10, 5, 5),
    ("cuda", "nin"): (10, 5, 5),
}
WINDOW_STEPS = {"cpu": 6, "cuda": 50}
QUICK_STEPS = (1, 1, 1)
QUICK_WINDOW = 2
QUICK_WIDTH = {"small_cnn": 8, "nin": 24}
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
}
EVAL_IMAGES = 2048


# ------------------------------------------------------------------------------------------ workers

def model_config(model: str, width: int, device: str, **overrides: Any) -> dict[str, Any]:
    return train_config(model=model, width=width, activation="relu", initializer="he_normal", regularizers=[],
                        augmentations=["flip", "crop"], preprocessing="normalize", optimizer="sgd", lr=0.01,
                        momentum=0.9, schedule="constant", batch_size=BATCH, eval_batch_size=1024,
                        snapshots=1, device=device, **overrides)


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
    model = build_network(config, reg, images.shape[1:], 10).to(device)
    optimizer = OPTIMIZERS.get("sgd")(parameter_groups(model, reg, config), config)
    model.train()
    warmup, windows = spec["usual_steps"]
    window = spec["window"]
    if len(loader) < warmup + windows * window:
        raise SystemExit(f"need {(warmup + windows * window) * BATCH} images, have {len(labels)}")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = iter(loader)  # one pass of the DataLoader is enough: no worker restart inside the measurement
    marks = []
    for step in range(warmup + windows * window):
        if step >= warmup and (step - warmup) % window == 0:
            sync()
            marks.append(time.perf_counter())
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    marks.append(time.perf_counter())
    rates = [window * BATCH / (b - a) for a, b in zip(marks, marks[1:])]
    return {"rates": rates, "images": windows * window * BATCH, "seconds": marks[-1] - marks[0],
            "final_loss": float(loss)}


def set_optimizer_implementation(spec: dict[str, Any]) -> None:
    """Ablations of optim.py's multi-tensor (foreach) SGD: the benchmark swaps its keyword function."""
    from trickbench.train import optim

    if spec.get("foreach") is False:
        optim._foreach = lambda config: {"foreach": False}
    elif spec.get("fused"):
        optim._foreach = lambda config: {"fused": True}


def worker_trickbench(spec: dict[str, Any]) -> dict[str, Any]:
    """The real loop: trickbench.train.loop.train on a Prepared built from the same images."""
    set_optimizer_implementation(spec)
    if spec.get("malloc", True):
        from trickbench.cli import tune_allocator

        allocator = tune_allocator()
    else:
        allocator = "default"
    import torch

    from trickbench.data.prepared import Prepared
    from trickbench.data.stats import runtime_stats
    from trickbench.train.loop import train

    images, labels = load_arrays(spec["data"])
    epochs, per_epoch = spec["tb_epochs"], spec["window"]
    n_train = per_epoch * BATCH
    if len(labels) < n_train + 2 * VAL_IMAGES:
        raise SystemExit(f"need {n_train + 2 * VAL_IMAGES} images, have {len(labels)}")
    val, test = slice(n_train, n_train + VAL_IMAGES), slice(n_train + VAL_IMAGES, n_train + 2 * VAL_IMAGES)
    prepared = Prepared(images={"train": images[:n_train], "val": images[val], "test": images[test]},
                        labels={"train": labels[:n_train], "val": labels[val], "test": labels[test]},
                        class_names=[str(i) for i in range(10)])
    device = torch.device(spec["device"])
    stats = runtime_stats(channel_stats(images), None, device)
    config = model_config(spec["model"], spec["width"], spec["device"], epochs=1 + epochs,
                          channels_last=spec.get("channels_last", True), amp=spec.get("amp", True),
                          compile=spec.get("compile", False))
    marks: list[float] = []
    started = time.perf_counter()
    result = train(config, prepared, stats, config_digest="benchmark",
                   on_epoch_end=lambda epoch: marks.append(time.perf_counter()))
    if result.status != "completed" or len(marks) != 1 + epochs:
        raise SystemExit(f"training did not complete: {result.status}, {len(marks)} epochs")
    rates = [n_train / (b - a) for a, b in zip(marks, marks[1:])]
    return {"rates": rates, "seconds": marks[-1] - marks[0], "images": epochs * n_train,
            "warmup_seconds": marks[0] - started, "final_loss": result.history[-1]["train_loss"],
            "allocator": allocator}


def worker_eval(spec: dict[str, Any]) -> dict[str, Any]:
    """Evaluation of EVAL_IMAGES images: trickbench's predict (no gradients, eval_batch_size 1024) against
    the same with batches of 128 and against a batch-128 loop that leaves autograd on."""
    from trickbench.cli import tune_allocator

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

    def timed_best(action: Any, repeats: int = 3) -> float:
        action()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            action()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        return n / best

    return {
        "predict, batch 1024, no grad": timed_best(lambda: predict(model, data, prepare, 1024, amp)),
        "predict, batch 128, no grad": timed_best(lambda: predict(model, data, prepare, 128, amp)),
        "batch 128, autograd on": timed_best(lambda: with_autograd(128)),
    }


def run_worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec["arm"] == "eval":
        result = worker_eval(spec)
        print(json.dumps(result))
        return
    result = worker_usual(spec) if spec["arm"] == "usual" else worker_trickbench(spec)
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------- driver

def arms(device: str, ablations: list[str]) -> list[tuple[str, dict[str, Any]]]:
    out = [("usual (DataLoader, 2 workers)", {"arm": "usual"}), ("trickbench", {"arm": "trickbench"})]
    for name in ablations:
        if name == "amp" and device != "cuda":
            continue
        if name in ("compile", "fused"):
            out.append((ABLATIONS[name], {"arm": "trickbench", name: True}))
        else:
            out.append((ABLATIONS[name], {"arm": "trickbench", name: False}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny widths and step counts: checks the script")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: small_cnn,nin")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cpu, plus cuda when available)")
    parser.add_argument("--ablations", default=None,
                        help=f"comma-separated arms with one optimisation toggled: {','.join(ABLATIONS)}, or none "
                        "(default: all but compile; none with --quick)")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation measurement")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every arm this many times, keep the best")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return

    import torch

    header("throughput")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("GPU: skipped (no CUDA device)")
        devices.remove("cuda")
    elif "cuda" not in devices and args.devices == "auto":
        print("GPU: skipped (no CUDA device); CPU figures only")
    if args.ablations is None:
        args.ablations = "none" if args.quick else "malloc,channels_last,amp,foreach,fused"
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
                results: dict[str, dict[str, Any]] = {}
                window = QUICK_WINDOW if args.quick else WINDOW_STEPS[device]
                for _ in range(args.rounds):  # every arm once per round, so load bursts hit all arms alike
                    for label, arm in arms(device, ablations):
                        spec = {**arm, "device": device, "model": model, "width": width, "data": data_path,
                                "usual_steps": steps[:2], "tb_epochs": steps[2], "window": window}
                        result = run_child([sys.executable, __file__, "--worker", json.dumps(spec)], clean_env())
                        entry = results.setdefault(label, {"rates": [], "images": 0, "seconds": 0.0})
                        entry["rates"] += result["rates"]
                        entry["images"] += result["images"]
                        entry["seconds"] += result["seconds"]
                for entry in results.values():
                    entry["images_per_s"] = max(entry["rates"])
                    entry["median"] = statistics.median(entry["rates"])
                base = results["usual (DataLoader, 2 workers)"]["images_per_s"]
                for label, result in results.items():
                    rows.append({"device": device, "model": f"{model} w{width}", "arm": label,
                                 "images/s (best)": result["images_per_s"], "vs usual": result["images_per_s"] / base,
                                 "median": result["median"], "windows": len(result["rates"]),
                                 "measured images": result["images"], "seconds": result["seconds"]})
                tb = results["trickbench"]["images_per_s"]
                print(f"{device} {model}: usual {base:.1f} images/s, trickbench {tb:.1f} images/s", flush=True)
                ratio_line(f"throughput_{device}_{model}", tb, base, what="trickbench", baseline_what="usual",
                           unit="images/s", target=f">= {TARGET:g}x" if device == "cpu" else None,
                           met=tb / base >= TARGET)
                for key, label in ABLATIONS.items():
                    if label in results:
                        ratio_line(f"ablation_{device}_{model}_{key}", tb, results[label]["images_per_s"],
                                   what="trickbench", baseline_what=label, unit="images/s")
        print()
        table(rows, ["device", "model", "arm", "images/s (best)", "vs usual", "median", "windows",
                     "measured images", "seconds"])
        if not args.no_eval:
            print()
            eval_rows = []
            for device in devices:
                for model in models:
                    width = QUICK_WIDTH[model] if args.quick else MODELS[model]
                    spec = {"arm": "eval", "device": device, "model": model, "width": width, "data": data_path,
                            "eval_images": 256 if args.quick else EVAL_IMAGES}
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
