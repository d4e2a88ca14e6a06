"""GPU only: time to 87.5 % CIFAR-10 test accuracy with the ReLU NiN, and the paper-cifar10 preset's wall time
(GitHub issue 7). On a machine without CUDA it prints why it skips and exits 0.

Time to accuracy: trickbench's real loop (train.loop.train) with the training configuration of
configs/paper-cifar10.yaml (NiN width 192, ReLU, He init, SGD 0.9, lr 0.1, L2 1e-4, dropout, bf16,
channels_last), plus flips and crops (--no-augment: the preset's none), on the workplace's full CIFAR-10
ZIPs: 45,000 training images (the preset's 10 % hold-out) and the 10,000 test images as the split the
loop evaluates after every epoch. The loop runs as a job runs it: compiled (the preset's train.compile),
a checkpoint every epoch, the MLflow run behind its queue (an SQLite store; left out where mlflow is not
installed, which the run says). The clock runs from the call of train() (model build, first-step
compilation, every per-epoch evaluation and checkpoint included) to the end of the first epoch whose test accuracy
reaches the target. Baseline, same run and device: the usual DataLoader pipeline's images/s
(benchmarks/throughput.py's `usual` arm), turned into the time it would need for the same epochs.

Preset wall time, three ways. --preset loop (the default; needs neither Snakemake nor MLflow, which the GPU
machine's image lacks): trickbench's loop runs the preset's own training configuration on its 45k/5k split
for --preset-epochs epochs, and the preset's grid points x epochs are extrapolated from the epochs after the
first (the first, with its cuDNN autotuning, is charged once per point). --preset estimate runs
`snakemake --cores all --configfile configs/paper-cifar10.yaml` (data.options pointed at the CIFAR-10 folder)
with one grid point and extrapolates from its per-epoch and per-job times; --preset full runs it all.

    python benchmarks/gpu_time_to_accuracy.py
    python benchmarks/gpu_time_to_accuracy.py --quick --force-cpu   # tiny CPU run: a test of the script
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from _common import (
    REPO, add_cifar10_argument, cifar10_archive, cifar10_dir, clean_env, decode_cifar10, header, ratio_line, real_job_io,
    snakemake_bin, timed, use_cifar10_dir,
)

PRESET = REPO / "configs" / "paper-cifar10.yaml"


class TargetReached(Exception):
    pass


class TargetWatch:
    """The loop's per-epoch hook: watches each epoch's evaluation (here: the test set) for the target."""

    def __init__(self, target: float, started: float):
        self.target, self.started = target, started
        self.epochs: list[dict[str, float]] = []

    def __call__(self, row: dict[str, float]) -> None:
        accuracy = 1.0 - row["val_error"]
        self.epochs.append({"epoch": row["epoch"], "accuracy": accuracy, "wall": time.perf_counter() - self.started,
                            "seconds": row["seconds"]})
        print(f"  epoch {row['epoch']:3d}  test accuracy {accuracy:.4f}  epoch {row['seconds']:.2f} s  "
              f"wall {self.epochs[-1]['wall']:.1f} s", flush=True)
        if accuracy >= self.target:
            raise TargetReached()


def preset_train(quick: bool, augment: bool | None, device: str, max_epochs: int | None) -> dict[str, Any]:
    """The preset's train section with ReLU, seed 0; augment None keeps the preset's own augmentations."""
    from _common import train_config

    train = dict(yaml.safe_load(PRESET.read_text())["train"])
    train.update(activation="relu", seed=0, device=device)
    if augment:
        train["augmentations"] = ["flip", "crop"]
    elif augment is False:
        train["augmentations"] = []
    if max_epochs:
        train["epochs"] = max_epochs
    if quick:
        # compile off: a test of the script on the CPU, where Inductor would take minutes
        train.update(model="small_cnn", width=8, lr=0.05, regularizers=[], epochs=max_epochs or 3, compile=False)
    return train_config(**train)


def time_to_accuracy(args: argparse.Namespace, device: str) -> dict[str, float]:
    import numpy as np
    import torch

    from trickbench.data.prepared import Prepared, stratified_split
    from trickbench.data.stats import compute_stats, runtime_stats
    from trickbench.train.loop import train

    if args.quick:
        images, labels = decode_cifar10(3000)
        test_images, test_labels = images[2000:], labels[2000:]
        images, labels = images[:2000], labels[:2000]
    else:
        images, labels = decode_cifar10(None, archive="cifar10_train.zip")
        test_images, test_labels = decode_cifar10(None, archive="cifar10_test.zip")
    kept, _ = stratified_split(labels, 0.1, 1)  # the preset's 10 % hold-out (data.split_seed 0, +1 for val)
    prepared = Prepared({"train": images[kept], "val": test_images, "test": test_images},
                        {"train": labels[kept], "val": test_labels, "test": test_labels},
                        [str(i) for i in range(10)])
    config = preset_train(args.quick, not args.no_augment, device, args.max_epochs)
    stats = runtime_stats(compute_stats(prepared.images["train"], whiten=False)[0], None, torch.device(device))
    print(f"time to {100 * args.target:.1f} %: {config['model']} width {config['width']}, {len(kept):,} training "
          f"images, augmentations {config['augmentations']}, at most {config['epochs']} epochs", flush=True)
    started = time.perf_counter()
    tracker = TargetWatch(args.target, started)
    reached = False
    with tempfile.TemporaryDirectory() as folder:  # as a job: a checkpoint every epoch, MLflow behind its queue
        try:
            train(config, prepared, stats, config_digest="time-to-accuracy", on_epoch=tracker,
                  **real_job_io(Path(folder)))
        except TargetReached:
            reached = True
    wall = time.perf_counter() - started
    epochs = tracker.epochs[-1]["epoch"] if tracker.epochs else 0

    # baseline: the usual pipeline's images/s on the same device, same model, in its own process
    from throughput import measure_arms

    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data.npz")
        np.savez(data, images=prepared.images["train"], labels=prepared.labels["train"])
        spec = {"arm": "usual", "device": device, "model": config["model"], "width": config["width"],
                "data": data, "warmup_steps": 1 if args.quick else 20, "window": 2 if args.quick else 50}
        arm = measure_arms([("usual", spec)], 2 if args.quick else 4)["usual"]
    usual = {"images_per_s": max(arm.rates)}  # its best window: generous to the baseline
    usual_seconds = epochs * len(kept) / usual["images_per_s"]
    return {"reached": reached, "epochs": epochs, "wall": wall, "usual_estimate": usual_seconds,
            "usual_images_per_s": usual["images_per_s"],
            "best_accuracy": max((e["accuracy"] for e in tracker.epochs), default=0.0)}


def preset_size() -> tuple[int, int]:
    """(grid points, epochs) of the preset's first study."""
    full = yaml.safe_load(PRESET.read_text())
    n_points = 1
    for values in full["studies"][next(iter(full["studies"]))]["axes"].values():
        n_points *= len(values)
    return n_points, full["train"]["epochs"]


def preset_loop_estimate(args: argparse.Namespace, device: str) -> dict[str, float]:
    """The preset's wall time from trickbench's loop alone: its training configuration on its 45k/5k split
    (the 10 % hold-out as validation, the test ZIP as test), a few epochs, extrapolated."""
    import torch

    from trickbench.data.prepared import Prepared, stratified_split
    from trickbench.data.stats import compute_stats, runtime_stats
    from trickbench.train.loop import train

    if args.quick:
        images, labels = decode_cifar10(1200)
        test_images, test_labels = images[1000:], labels[1000:]
        images, labels = images[:1000], labels[:1000]
    else:
        images, labels = decode_cifar10(None, archive="cifar10_train.zip")
        # the test split is only evaluated after the last epoch: its 2k subset will do where the full ZIP
        # was left behind (the GPU machine's 64 MiB carry holds the 52 MB training ZIP and little else)
        test_zip = "cifar10_test.zip" if (cifar10_dir() / "cifar10_test.zip").is_file() else "cifar10_test_subset.zip"
        test_images, test_labels = decode_cifar10(None, archive=test_zip)
    kept, held = stratified_split(labels, 0.1, 1)
    prepared = Prepared({"train": images[kept], "val": images[held], "test": test_images},
                        {"train": labels[kept], "val": labels[held], "test": test_labels},
                        [str(i) for i in range(10)])
    epochs = max(2, args.preset_epochs)
    config = preset_train(args.quick, None, device, epochs)
    stats = runtime_stats(compute_stats(prepared.images["train"], whiten=False)[0], None, torch.device(device))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:  # as a job: a checkpoint every epoch, MLflow behind its queue
        result = train(config, prepared, stats, config_digest="preset-loop", **real_job_io(Path(folder)))
    wall = time.perf_counter() - started
    seconds = [row["seconds"] for row in result.history]
    per_epoch = sum(seconds[1:]) / (len(seconds) - 1)
    per_point_extra = wall - sum(seconds[1:]) - per_epoch  # build, first-epoch costs, final evaluation
    n_points, n_epochs = preset_size()
    return {"per_epoch": per_epoch, "first_epoch": seconds[0], "per_point_extra": per_point_extra,
            "estimate": n_points * (n_epochs * per_epoch + per_point_extra), "points": n_points,
            "epochs": n_epochs, "train_images": len(kept), "status": result.status}


def preset_project(root: Path, args: argparse.Namespace, device: str, points: int | None, epochs: int | None) -> Path:
    params = yaml.safe_load(PRESET.read_text())
    suffix = "_subset" if args.quick else ""
    params["data"]["options"] = {"train_archive": str(cifar10_archive(f"cifar10_train{suffix}.zip")),
                                 "test_archive": str(cifar10_archive(f"cifar10_test{suffix}.zip"))}
    params["paths"] = {"artifacts": "artifacts", "results": "results"}
    params["train"]["device"] = device
    if epochs:
        params["train"]["epochs"] = epochs
        params["train"]["snapshots"] = min(params["train"].get("snapshots", 3), epochs)
    if args.quick:
        params["train"].update(model="small_cnn", width=8, regularizers=[])
    study = next(iter(params["studies"]))
    if points == 1:
        params["studies"] = {study: {**params["studies"][study], "axes": {"activation": ["relu"], "seed": [0]}}}
        params["ensemble"]["top_k"] = 1
    root.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", root)
    shutil.copytree(REPO / "workflow", root / "workflow")
    (root / "preset.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def preset_wall_time(args: argparse.Namespace, device: str) -> dict[str, float]:
    """Wall time of the preset through Snakemake: measured in full, or estimated from a 1-point run."""
    if not Path(snakemake_bin()).is_file() and shutil.which("snakemake") is None:
        raise SystemExit(f"--preset {args.preset} runs Snakemake, which is not installed here; --preset loop "
                         "estimates the preset from trickbench's loop alone")
    n_points, n_epochs = preset_size()
    with tempfile.TemporaryDirectory(prefix="trickbench-preset-") as tmp:
        if args.preset == "full":
            project = preset_project(Path(tmp) / "p", args, device, None, None)
            env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
            wall, _ = timed([snakemake_bin(), "--cores", "all", "--configfile", "preset.yaml"], env, project)
            return {"measured": wall, "points": n_points, "epochs": n_epochs}
        small_epochs = args.preset_epochs
        project = preset_project(Path(tmp) / "p", args, device, 1, small_epochs)
        env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
        small_wall, _ = timed([snakemake_bin(), "--cores", "all", "--configfile", "preset.yaml"], env, project)
        history = next((project / "artifacts" / "runs").glob("*/*/history.csv"))
        seconds = [float(row["seconds"]) for row in csv.DictReader(history.open())]
        per_epoch = sum(seconds[1:]) / max(1, len(seconds) - 1) if len(seconds) > 1 else seconds[0]
        # one train job again, alone: its wall time minus its epochs is the per-job overhead
        run_dir = history.parent
        study, point = run_dir.parent.name, run_dir.name
        shutil.rmtree(run_dir)
        job_wall, _ = timed([str(Path(sys.executable).parent / "trickbench"), "--params", "preset.yaml", "train",
                             "--study", study, "--point", point], env, project)
        job_overhead = max(0.0, job_wall - sum(seconds))
        estimate = small_wall + (n_points * n_epochs - small_epochs) * per_epoch + (n_points - 1) * job_overhead
        return {"estimate": estimate, "small_wall": small_wall, "per_epoch": per_epoch, "job_overhead": job_overhead,
                "points": n_points, "epochs": n_epochs, "small_epochs": small_epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small_cnn on 2,000 images, 3 epochs (with --force-cpu: a test)")
    parser.add_argument("--force-cpu", action="store_true", help="run on the CPU anyway (only sensible with --quick)")
    parser.add_argument("--target", type=float, default=None, help="test accuracy to reach (0.875)")
    parser.add_argument("--max-epochs", type=int, default=None, help="give up after this many epochs (the preset's)")
    parser.add_argument("--no-augment", action="store_true", help="the preset's training without flips and crops")
    parser.add_argument("--preset", choices=["loop", "estimate", "full", "skip"], default="loop",
                        help="loop: from trickbench's loop alone (no Snakemake); estimate/full: through Snakemake")
    parser.add_argument("--preset-epochs", type=int, default=None, help="epochs of the estimating run (3)")
    parser.add_argument("--skip-time-to-accuracy", action="store_true", help="only the preset's wall time")
    add_cifar10_argument(parser)
    args = parser.parse_args()
    use_cifar10_dir(args)
    import torch

    if not torch.cuda.is_available() and not args.force_cpu:
        print("SKIPPED gpu_time_to_accuracy: no CUDA device (time to 87.5 % and the paper-cifar10 preset are "
              "GPU benchmarks; --quick --force-cpu runs a tiny CPU version of the script)")
        return
    device = "cuda" if torch.cuda.is_available() and not args.force_cpu else "cpu"
    args.target = args.target or (0.2 if args.quick else 0.875)
    args.preset_epochs = args.preset_epochs or (1 if args.quick else 3)
    if args.quick:
        args.max_epochs = args.max_epochs or 3
    header("gpu_time_to_accuracy")
    if not PRESET.is_file():
        print(f"{PRESET}: not found; the preset part is skipped")
        args.preset = "skip"

    if not args.skip_time_to_accuracy:
        result = time_to_accuracy(args, device)
        status = f"reached at epoch {result['epochs']}" if result["reached"] else \
            f"NOT reached in {result['epochs']} epochs (best {100 * result['best_accuracy']:.2f} %)"
        print(f"time to {100 * args.target:.1f} % test accuracy: {result['wall']:.1f} s, {status}; usual pipeline "
              f"{result['usual_images_per_s']:.0f} images/s -> {result['usual_estimate']:.1f} s for the same epochs")
        ratio_line(f"time_to_{100 * args.target:g}pct_{device}", result["usual_estimate"], result["wall"],
                   what="usual pipeline (estimated, same epochs)", baseline_what="trickbench (measured)", unit="s")

    if args.preset == "loop":
        preset = preset_loop_estimate(args, device)
        print(f"paper-cifar10 preset (loop): {preset['train_images']:,} training images, {preset['per_epoch']:.2f} s "
              f"per epoch after the first ({preset['first_epoch']:.2f} s), {preset['per_point_extra']:.1f} s per run "
              f"besides its epochs -> estimated {preset['estimate'] / 60:.1f} min for {preset['points']} runs x "
              f"{preset['epochs']} epochs, one at a time (status {preset['status']})")
        print(f"PRESET paper_cifar10_epoch_s={preset['per_epoch']:.4f} "
              f"paper_cifar10_preset_minutes={preset['estimate'] / 60:.3f}", flush=True)
        ratio_line(f"preset_loop_{device}", preset["estimate"], preset["points"] * preset["epochs"] * preset["per_epoch"],
                   what="preset wall (estimated from the loop)", baseline_what="its epochs alone", unit="s")
    elif args.preset != "skip":
        preset = preset_wall_time(args, device)
        if "measured" in preset:
            print(f"paper-cifar10 preset: {preset['measured']:.0f} s wall ({preset['points']} grid points x "
                  f"{preset['epochs']} epochs)")
        else:
            print(f"paper-cifar10 preset: 1 point x {preset['small_epochs']} epochs took {preset['small_wall']:.0f} s "
                  f"wall; {preset['per_epoch']:.2f} s per epoch, {preset['job_overhead']:.1f} s per job besides "
                  f"its epochs -> estimated {preset['estimate'] / 3600:.2f} h for {preset['points']} points x "
                  f"{preset['epochs']} epochs")
            ratio_line(f"preset_{device}", preset["estimate"], preset["points"] * preset["epochs"] * preset["per_epoch"],
                       what="preset wall (estimated)", baseline_what="its epochs alone", unit="s")


if __name__ == "__main__":
    main()
