"""Train one grid point: the whole loop, top to bottom.

Data stay on the training device as uint8; every batch is sliced, converted, augmented and
pre-processed there. Each epoch ends with an atomic checkpoint holding everything needed to continue
bit-identically (model, optimizer, scheduler, every RNG state, early-stopping state, history), so a
job killed at any point resumes where the last complete epoch left off.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trickbench.data.archives import DataError
from trickbench.data.augment import apply_augmentations, center_crop, crop_to
from trickbench.data.prepared import Prepared
from trickbench.data.preprocess import PREPROCESSORS
from trickbench.io import atomic_path
from trickbench.metrics import error_rate, log_loss
from trickbench.nn.activations import (
    activation_layers, make_activation, negative_slope, no_decay_parameter_names, prelu_parameters,
)
from trickbench.nn.initializers import initialize
from trickbench.nn.models import apply_finetune, build_model, load_backbone
from trickbench.train import backends
from trickbench.train.backends import restore_rng, rng_state
from trickbench.train.optim import OPTIMIZERS, SCHEDULES, step_schedule
from trickbench.train.regularizers import (
    Regularization, apply_max_norm, l1_penalty, penalized_weights, regularization,
)

CHECKPOINT_VERSION = 2  # 2: RNG states of the device in use only, with its device type

# Start-up instrumentation (benchmarks/pipeline_overhead.py): with TRICKBENCH_EXIT_AFTER_FIRST_STEP=1 a
# process prints the wall-clock time at which its first optimizer step completed and exits at once.
EXIT_AFTER_FIRST_STEP = os.environ.get("TRICKBENCH_EXIT_AFTER_FIRST_STEP") == "1"


def _exit_after_first_step(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    print(f"trickbench: first training step done at {time.time():.6f}", file=sys.stderr, flush=True)
    os._exit(0)


class Tracker:
    """What the loop reports to; the stage passes an MLflow-backed one, tests may pass this no-op."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


@dataclass
class TrainResult:
    status: str  # completed | diverged
    metrics: dict[str, float]
    history: list[dict[str, float]]
    batch_losses: list[tuple[int, int, float]]
    predictions: dict[str, np.ndarray]
    diagnostics: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    resumed_from_epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when present; an explicit `cpu` or `cuda:N` never asks torch.cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def input_pipeline(augmentations: list[str], input_size: int | None, preprocess: Callable,
                   memory_format: torch.memory_format, generator: torch.Generator,
                   stats: dict[str, Any]) -> tuple[Callable, Callable]:
    """(train_batch, eval_batch): augmentation, cropping and pre-processing of a [0, 1] float batch.

    They run in float32 with autocast switched off, whatever context calls them: under bf16 autocast the
    whitening addmm, the fancy-PCA matmul and affine_grid would drop to bfloat16 (ZCA 0.8 % off on the
    digits, a 0.15 px sampling error at 80 px). Only the model's forward and the loss belong in autocast.
    """
    def train_batch(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = apply_augmentations(x, augmentations, generator, stats)
            if input_size:
                x = crop_to(x, input_size, generator)
            return preprocess(x).contiguous(memory_format=memory_format)

    def eval_batch(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            if input_size:
                x = center_crop(x, input_size)
            return preprocess(x).contiguous(memory_format=memory_format)

    return train_batch, eval_batch


def training_steps(order_length: int, batch_size: int, compiled: bool) -> int:
    """Steps of one epoch. Eager: ceil (the last batch may be partial). Compiled: floor, dropping the
    partial last batch (a different shape would make torch.compile recompile with dynamic shapes); the
    order is a fresh permutation every epoch, so every image keeps the same chance to be seen. An order
    shorter than one batch keeps its single partial batch (one shape all the same)."""
    if compiled and order_length >= batch_size:
        return order_length // batch_size
    return math.ceil(order_length / batch_size)


# ----------------------------------------------------------------------------------------------- data

class DeviceData:
    """One split resident on the device as uint8 NHWC; batches come out as float NCHW in [0, 1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device):
        self.images = torch.from_numpy(images).to(device)
        self.labels = torch.from_numpy(labels).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index].permute(0, 3, 1, 2).float().div_(255.0)
        return x, self.labels[index]


def epoch_order(labels: torch.Tensor, num_classes: int, balance: str, generator: torch.Generator) -> torch.Tensor:
    """The sample indices of one epoch: a permutation, or a class-balanced resample (seed: class imbalance)."""
    device = labels.device
    if balance in ("none", "class_weighted_loss"):
        return torch.randperm(len(labels), generator=generator, device=device)
    counts = torch.bincount(labels, minlength=num_classes)
    present = counts[counts > 0]
    per_class = int(present.max() if balance == "oversample" else present.min())
    chosen = []
    for cls in torch.nonzero(counts > 0).flatten().tolist():
        members = torch.nonzero(labels == cls).flatten()
        if balance == "oversample":  # every member at least once, the rest drawn with replacement
            extra = members[torch.randint(len(members), (per_class - len(members),), generator=generator, device=device)]
            chosen.append(torch.cat([members, extra]))
        else:
            chosen.append(members[torch.randperm(len(members), generator=generator, device=device)[:per_class]])
    order = torch.cat(chosen)
    return order[torch.randperm(len(order), generator=generator, device=device)]


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).float().clamp_min(1)
    return len(labels) / (num_classes * counts)


# ---------------------------------------------------------------------------------------------- model

def build_network(config: dict[str, Any], reg: Regularization, image_shape: tuple[int, int, int],
                  num_classes: int) -> nn.Module:
    height, _, channels = image_shape
    model = build_model(
        config["model"], in_channels=channels, num_classes=num_classes,
        image_size=config["input_size"] or height, activation=make_activation(config["activation"]),
        width=config["width"], batch_norm=reg.batch_norm, dropout=reg.dropout,
    )
    initialize(model, config["initializer"], negative_slope(config["activation"]))
    return model


def parameter_groups(model: nn.Module, reg: Regularization, config: dict[str, Any]) -> list[dict[str, Any]]:
    """L2 acts on weights only: biases, norm parameters and (He et al.) PReLU slopes get no decay.

    `weight_decay_on_prelu: true` puts the learned activation slopes back under decay. Parameters
    frozen by fine-tuning are not handed to the optimizer at all.
    """
    names = set(no_decay_parameter_names(model))
    exempt = {id(p) for name, p in model.named_parameters() if name in names}
    if config["weight_decay_on_prelu"]:
        exempt -= {id(p) for p in prelu_parameters(model)}
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if id(parameter) in exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": reg.l2}, {"params": no_decay, "weight_decay": 0.0}]


def finetune_source(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict that `train.finetune_from` names (the model.pt of an earlier run).

    A missing or unusable file is bad input: DataError, one line naming the key and the path.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"train.finetune_from: {path}: no such file; expected the model.pt of an earlier run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, or not a plain state dict
        raise DataError(f"train.finetune_from: {path}: not a readable model.pt ({type(error).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"train.finetune_from: {path}: expected a state dict of tensors (a run's model.pt)")
    return state


def frozen_blocks(model: nn.Module) -> list[nn.Module]:
    """Feature blocks whose parameters fine-tuning froze entirely (finetune_mode linear or top).

    They stay in evaluation mode while the rest trains: their batch-norm statistics stay the
    checkpoint's and their dropout is off, so the trained part sees fixed features (the seed's linear
    classifier on the features of a pre-trained model).
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return []
    return [block for block in blocks.children()
            if any(True for _ in block.parameters()) and not any(p.requires_grad for p in block.parameters())]


def train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    model.train()
    for block in frozen:
        block.eval()


# ----------------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, prepare_batch: Callable, batch_size: int,
            amp: bool) -> torch.Tensor:
    """Softmax probabilities of a whole split, in large batches, without gradients."""
    model.eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        x, _ = data.batch(index)
        x = prepare_batch(x)  # float32, outside autocast (input_pipeline)
        with torch.autocast(data.labels.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        outputs.append(logits.float().softmax(dim=1))
    return torch.cat(outputs) if outputs else torch.empty(0)


def loss_and_error(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    probs_np, labels_np = probs.float().cpu().numpy(), labels.cpu().numpy()
    return log_loss(probs_np, labels_np), error_rate(probs_np, labels_np)


@torch.no_grad()
def activation_statistics(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    """Mean and std of every activation layer's output on one batch (seed §3: at initialization)."""
    records: list[dict[str, Any]] = []
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: records.append(
                {"layer": name, "mean": out.float().mean().item(), "std": out.float().std().item()}))
        for name, module in activation_layers(model)
    ]
    try:
        model.eval()
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return records


@torch.no_grad()
def dead_unit_fractions(model: nn.Module, data: DeviceData, prepare_batch: Callable, batch_size: int,
                        amp: bool) -> list[dict[str, Any]]:
    """Per activation layer, the fraction of units (channels) never positive over a whole split."""
    layers = activation_layers(model)
    ever_positive: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            positive = output > 0
            if positive.dim() > 2:  # a unit of a convolution is a channel, at any position
                positive = positive.flatten(2).any(dim=2)
            positive = positive.any(dim=0)
            ever_positive[name] = ever_positive.get(name, torch.zeros_like(positive)) | positive
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in layers]
    try:
        predict(model, data, prepare_batch, batch_size, amp)
    finally:
        for hook in hooks:
            hook.remove()
    return [{"layer": name, "dead_fraction": 1.0 - ever_positive[name].float().mean().item(),
             "units": int(ever_positive[name].numel())} for name, _ in layers if name in ever_positive]


# ------------------------------------------------------------------------------------------ checkpoints

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, config_digest: str) -> dict[str, Any] | None:
    """The checkpoint if it is readable and belongs to this configuration; None means start afresh."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or corrupt: retrain rather than load garbage
        return None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION \
            or state.get("config_digest") != config_digest:
        return None
    return state


def checkpoint_device_type(state: dict[str, Any]) -> str:
    return state.get("device_type") or state.get("rng", {}).get("device_type", "cpu")


# ------------------------------------------------------------------------------------------------ train

def train(config: dict[str, Any], prepared: Prepared, stats: dict[str, Any], *, config_digest: str,
          checkpoint_path: Path | None = None, tracker: Tracker | None = None,
          on_epoch_end: Callable[[int], None] | None = None,
          on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    tracker = tracker or Tracker()
    device = resolve_device(config["device"])
    amp = config["amp"] and device.type == "cuda"
    memory_format = torch.channels_last if config["channels_last"] else torch.contiguous_format
    deterministic = config.get("deterministic", False)
    backends.configure(device, deterministic=deterministic, amp=amp)
    backends.seed(config["seed"], device)
    generator = torch.Generator(device=device).manual_seed(config["seed"])

    # data, resident on the device
    splits = {split: DeviceData(prepared.images[split], prepared.labels[split], device)
              for split in ("train", "val", "test")}
    train_data = splits["train"]
    reg = regularization(config)
    augmentations = list(config["augmentations"]) + [a for a in reg.augmentations if a not in config["augmentations"]]
    preprocess = PREPROCESSORS.get(config["preprocessing"])(stats, device)
    input_size = config["input_size"]

    train_batch, eval_batch = input_pipeline(augmentations, input_size, preprocess, memory_format, generator, stats)

    # model, optimizer, schedule
    model = build_network(config, reg, prepared.image_shape, prepared.num_classes)
    frozen: list[nn.Module] = []
    if config["finetune_from"]:
        # tensors whose name and shape match are loaded; a head of another class count keeps its fresh init
        source = finetune_source(config["finetune_from"])
        try:
            load_backbone(model, source)
        except ValueError as error:  # nothing matches: another architecture or width
            raise DataError(f"train.finetune_from: {config['finetune_from']}: {error}") from None
        apply_finetune(model, config["finetune_mode"])
        frozen = frozen_blocks(model)
    if deterministic:
        backends.use_deterministic_pools(model)
    model = model.to(device=device, memory_format=memory_format)
    # train.compile: the training forward goes through torch.compile (evaluation, checkpoints and
    # state dicts keep using the plain module, whose parameters the compiled one shares)
    forward = torch.compile(model, dynamic=False) if config.get("compile") else model
    optimizer = OPTIMIZERS.get(config["optimizer"])(parameter_groups(model, reg, config), config)
    scheduler = SCHEDULES.get(config["schedule"])(optimizer, config)
    weights = penalized_weights(model)
    loss_weight = class_weights(train_data.labels, prepared.num_classes) \
        if config["class_balance"] == "class_weighted_loss" else None

    # state that a checkpoint carries
    history: list[dict[str, float]] = []
    batch_losses: list[tuple[int, int, float]] = []
    snapshots: dict[str, list[torch.Tensor]] = {"val": [], "test": []}
    best_val, bad_epochs, best_state = math.inf, 0, None
    status, start_epoch = "completed", 0
    init_stats = activation_statistics(model, eval_batch(train_data.batch(
        torch.arange(min(len(train_data), config["batch_size"]), device=device))[0]))

    resumed = load_checkpoint(checkpoint_path, config_digest) if checkpoint_path else None
    if resumed is not None:
        # its RNG states exist only on the device type that wrote it (the stage refuses such a checkpoint
        # first, by digest; this guards callers that pass a device-free digest)
        if checkpoint_device_type(resumed) != device.type:
            raise DataError(f"{checkpoint_path}: checkpoint written on {checkpoint_device_type(resumed)}, this run is on "
                            f"{device.type}; resume it on {checkpoint_device_type(resumed)} or delete it to retrain")
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        restore_rng(resumed["rng"], generator, device)
        history, batch_losses = resumed["history"], [tuple(b) for b in resumed["batch_losses"]]
        snapshots = resumed["snapshots"]
        best_val, bad_epochs, best_state = resumed["best_val"], resumed["bad_epochs"], resumed["best_state"]
        init_stats, start_epoch = resumed["init_stats"], resumed["epoch"]
        status = resumed["status"]

    for epoch in range(start_epoch, config["epochs"]):
        if status != "completed":
            break
        started = time.perf_counter()
        train_mode(model, frozen)
        order = epoch_order(train_data.labels, prepared.num_classes, config["class_balance"], generator)
        # the whole order is one epoch: oversampling makes it longer than the training set, undersampling shorter
        steps_per_epoch = training_steps(len(order), config["batch_size"], bool(config.get("compile")))
        loss_sum = torch.zeros((), device=device)
        wrong_sum = torch.zeros((), device=device)
        epoch_losses = []
        for step in range(steps_per_epoch):
            index = order[step * config["batch_size"]:(step + 1) * config["batch_size"]]
            if len(index) == 0:
                break
            x, y = train_data.batch(index)
            x = train_batch(x)  # float32, outside autocast (input_pipeline)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = forward(x)
                loss = F.cross_entropy(logits.float(), y, weight=loss_weight)
            objective = loss + l1_penalty(weights, reg.l1) if reg.l1 else loss
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            if reg.max_norm is not None:
                apply_max_norm(weights, reg.max_norm)
            if EXIT_AFTER_FIRST_STEP:
                _exit_after_first_step(device)
            detached = loss.detach()
            epoch_losses.append(detached)
            loss_sum += detached * len(index)
            wrong_sum += (logits.detach().argmax(dim=1) != y).sum()
        # one device-to-host transfer per epoch, not per step
        losses = torch.stack(epoch_losses).float().cpu().tolist()
        batch_losses.extend((epoch, step, value) for step, value in enumerate(losses))
        seen = min(len(order), steps_per_epoch * config["batch_size"])
        train_loss, train_error = loss_sum.item() / seen, wrong_sum.item() / seen
        if not all(math.isfinite(v) for v in losses):
            status = "diverged"

        val_probs = predict(model, splits["val"], eval_batch, config["eval_batch_size"], amp)
        val_loss, val_error = loss_and_error(val_probs, splits["val"].labels)
        if not math.isfinite(val_loss):
            status = "diverged"
        lr = optimizer.param_groups[0]["lr"]
        if status == "completed":
            step_schedule(scheduler, val_loss)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_error": train_error,
               "val_loss": val_loss, "val_error": val_error, "lr": lr,
               "seconds": time.perf_counter() - started}
        history.append(row)

        if config["epochs"] - epoch <= config["snapshots"] and status == "completed":
            snapshots["val"].append(val_probs.cpu())
            snapshots["test"].append(predict(model, splits["test"], eval_batch, config["eval_batch_size"], amp).cpu())
        if reg.early_stopping_patience is not None and status == "completed":
            if val_loss < best_val:
                best_val, bad_epochs = val_loss, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if bad_epochs >= reg.early_stopping_patience:
                    status = "early_stopped"

        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, {
                "version": CHECKPOINT_VERSION, "config_digest": config_digest, "device_type": device.type,
                "epoch": epoch + 1,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(generator, device), "history": history,
                "batch_losses": [list(b) for b in batch_losses], "snapshots": snapshots,
                "best_val": best_val, "bad_epochs": bad_epochs, "best_state": best_state,
                "init_stats": init_stats, "status": status, "mlflow_run_id": tracker.run_id,
            })
        # logged after the checkpoint: a job killed in between resumes after this epoch, and the stage
        # logs the epochs the tracker lacks (log_missing_epochs), so every epoch is in MLflow exactly once
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
        if on_epoch is not None:  # the stage's progress line and record (trickbench.progress)
            on_epoch({**row, "images": seen})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)

    if status == "early_stopped":
        status = "completed"
        if best_state is not None:
            model.load_state_dict(best_state)
    return finish(model, splits, eval_batch, config, amp, status, history, batch_losses, snapshots,
                  init_stats, start_epoch)


def finish(model: nn.Module, splits: dict[str, DeviceData], eval_batch: Callable, config: dict[str, Any],
           amp: bool, status: str, history: list[dict[str, float]], batch_losses: list[tuple[int, int, float]],
           snapshots: dict[str, list[torch.Tensor]], init_stats: list[dict[str, Any]],
           resumed_from_epoch: int) -> TrainResult:
    """Final metrics of every split in evaluation mode, predictions for ensembles, diagnostics."""
    metrics: dict[str, float] = {"epochs_run": float(len(history))}
    predictions: dict[str, np.ndarray] = {}
    dead: list[dict[str, Any]] = []
    if status == "diverged":
        for split in splits:
            metrics[f"{split}_loss"] = metrics[f"{split}_error"] = math.nan
    else:
        for split, data in splits.items():
            probs = predict(model, data, eval_batch, config["eval_batch_size"], amp)
            metrics[f"{split}_loss"], metrics[f"{split}_error"] = loss_and_error(probs, data.labels)
            if split != "train":
                predictions[f"{split}_probs"] = probs.cpu().numpy()
                predictions[f"{split}_labels"] = data.labels.cpu().numpy()
        for split in ("val", "test"):
            if snapshots[split]:
                predictions[f"snapshot_{split}_probs"] = torch.stack(snapshots[split]).numpy()
        dead = dead_unit_fractions(model, splits["val"], eval_batch, config["eval_batch_size"], amp)
    model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    diagnostics = {"init_activation_stats": init_stats, "dead_units": dead}
    return TrainResult(status, metrics, history, batch_losses, predictions, diagnostics, model_state,
                       resumed_from_epoch)
