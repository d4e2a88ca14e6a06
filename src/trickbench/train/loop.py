"""Train one grid point: `build` (everything the point trains with, which also checks its configuration),
`Trainer.resume` (from the checkpoint's TrainState, or afresh), `Trainer.fit` (the epoch loop, one screen;
`run_epoch` is one pass over the training images), then `finish` (final metrics and predictions).

Data stay on the training device as uint8; every batch is sliced, converted, augmented and
pre-processed there. Epochs end with an atomic checkpoint (train/checkpoint.py: its format, early stopping,
the cadence) holding everything needed to continue bit-identically, so a killed job resumes where its last
checkpoint left off. What the caller wants to see of the run comes through hooks (`on_epoch`,
`on_first_step`) and a Tracker; activation diagnostics are train/diagnostics.py, fine-tuning train/finetune.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trickbench.data.augment import apply_augmentations, center_crop, crop_to
from trickbench.data.prepared import Prepared
from trickbench.data.preprocess import PREPROCESSORS
from trickbench.metrics import error_rate, log_loss
from trickbench.nn.activations import make_activation, negative_slope, no_decay_parameter_names, prelu_parameters
from trickbench.nn.initializers import initialize
from trickbench.nn.models import build_model
from trickbench.run_files import HISTORY_COLUMNS  # one definition for the writer (here) and its reader
from trickbench.train import backends
from trickbench.train.backends import restore_rng, rng_state
from trickbench.train.balance import CLASS_BALANCES, ClassBalance
from trickbench.train.finetune import finetune_source, load_finetune, train_mode
from trickbench.train.checkpoint import Cadence, Checkpointer, EarlyStopping, Status, TrainState
from trickbench.train.diagnostics import activation_statistics, dead_unit_fractions
from trickbench.train.optim import OPTIMIZERS, SCHEDULES, snapshot_epochs, step_schedule
from trickbench.train.regularizers import (
    Regularization, apply_max_norm, l1_penalty, penalized_weights, regularization,
)

MAX_NORM_RESCALED = "max_norm_rescaled"  # units the constraint rescaled in the epoch (max-norm runs only)


class Tracker:
    """What the loop reports to; the stage passes an MLflow-backed one, tests may pass this no-op."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def flush(self) -> None:
        """Return once everything reported so far is stored (a queueing tracker raises its first error)."""


@dataclass
class TrainResult:
    status: Status
    metrics: dict[str, float]
    history: list[dict[str, float]]
    batch_losses: list[tuple[int, int, float]]
    predictions: dict[str, np.ndarray]
    diagnostics: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    resumed_from_epoch: int = 0


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


# ----------------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, prepare_batch: Callable, batch_size: int,
            amp: bool, pad: bool = False) -> torch.Tensor:
    """Softmax probabilities of a whole split, in large batches, without gradients. `pad`: every batch has
    `batch_size` rows, a short last one filled up with copies of the split's first image whose outputs are
    dropped (in evaluation mode a row's output does not depend on the others), so the model sees one shape."""
    model.eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        rows = len(index)
        if pad and rows < batch_size:
            index = torch.cat([index, index.new_zeros(batch_size - rows)])
        x, _ = data.batch(index)
        x = prepare_batch(x)  # float32, outside autocast (input_pipeline)
        with torch.autocast(data.labels.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        outputs.append(logits[:rows].float().softmax(dim=1))
    return torch.cat(outputs) if outputs else torch.empty(0)


def loss_and_error(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    probs_np, labels_np = probs.float().cpu().numpy(), labels.cpu().numpy()
    return log_loss(probs_np, labels_np), error_rate(probs_np, labels_np)


# ------------------------------------------------------------------------------------------------ build

@dataclass
class Trainer:
    """One grid point ready to train on its device: what `build` made of its configuration."""

    config: dict[str, Any]
    device: torch.device
    amp: bool
    reg: Regularization
    splits: dict[str, DeviceData]
    train_batch: Callable[[torch.Tensor], torch.Tensor]
    eval_batch: Callable[[torch.Tensor], torch.Tensor]
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    frozen: list[nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    weights: list[torch.Tensor]
    balance: ClassBalance
    init_stats: list[dict[str, Any]]
    on_first_step: Callable[[float], None] | None = None  # called once, then cleared (fit sets it)

    def predict(self, split: str) -> torch.Tensor:
        """On CUDA every evaluation batch of the job has one shape (`eval_rows`): cuDNN autotunes each new
        shape (up to four more per job: the short last batch of each split). On the CPU, batches as they
        come: oneDNN may pick another kernel for another batch size, and the CPU results stay as they were."""
        cuda = self.device.type == "cuda"
        return predict(self.model, self.splits[split], self.eval_batch, self.eval_rows if cuda else
                       self.config["eval_batch_size"], self.amp, pad=cuda)

    @property
    def eval_rows(self) -> int:
        """The one evaluation batch size: eval_batch_size, or the largest split when every split is smaller."""
        return min(self.config["eval_batch_size"], max(len(data) for data in self.splits.values()))

    def resume(self, checkpoint_path: Path | None, digests: Mapping[str, str]) -> TrainState:
        """The checkpoint's state, loaded into model, optimizer, schedule and generators, when `checkpoint_path`
        holds one of this run (TrainState.load; `digests`: the run's digest per device type); else a fresh one."""
        patience = self.reg.early_stopping_patience
        state = TrainState.load(checkpoint_path, digests, self.device.type, patience) if checkpoint_path else None
        if state is None:
            return TrainState(digests[self.device.type], self.device.type, self.init_stats, EarlyStopping(patience))
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        restore_rng(state.rng, self.generator, self.device)
        return state

    def capture(self, state: TrainState, mlflow_run_id: str | None) -> TrainState:
        """`state` with the live model, optimizer, schedule and RNG states, ready to save."""
        state.model, state.optimizer = self.model.state_dict(), self.optimizer.state_dict()
        state.scheduler, state.rng = self.scheduler.state_dict(), rng_state(self.generator, self.device)
        state.mlflow_run_id = mlflow_run_id
        return state

    def fit(self, state: TrainState, checkpoint_path: Path | None = None, tracker: Tracker | None = None, *,
            on_epoch: Callable[[dict[str, float]], None] | None = None,
            on_first_step: Callable[[float], None] | None = None, cadence: Cadence = Cadence()) -> TrainResult:
        """Train from `state` on until the last epoch, a divergence or early stopping. After each epoch: a
        checkpoint when `cadence` says so (a stopped job saves its last epoch), the epoch's metrics queued for
        `tracker`, then `on_epoch` with the history row and the images seen (the stage's progress record).
        `on_first_step` gets the loss of this process's first step, once the device has finished it."""
        tracker, start_epoch = tracker or Tracker(), state.epoch
        self.on_first_step = on_first_step
        checkpoints = Checkpointer(checkpoint_path, cadence)
        try:
            for epoch in range(start_epoch, self.config["epochs"]):
                if state.status is Status.DIVERGED or state.early_stopping.stopped:
                    break
                row, seen = self.train_epoch(state, epoch)
                final = (state.epoch == self.config["epochs"] or state.status is Status.DIVERGED
                         or state.early_stopping.stopped)
                checkpoints.after_epoch(self.capture(state, tracker.run_id), final, tracker.flush)
                # logged after the checkpoint: a job killed in between resumes after this epoch, and the stage
                # logs the epochs the tracker lacks (log_missing_epochs), so every epoch is in MLflow exactly once
                tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
                if on_epoch is not None:
                    on_epoch({**row, "images": seen})
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM (cli): keep the last completed epoch
            checkpoints.save_unsaved()
            raise
        state.early_stopping.restore_best(self.model)
        result = finish(self, state, start_epoch)
        tracker.flush()
        return result

    def train_epoch(self, state: TrainState, epoch: int) -> tuple[dict[str, float], int]:
        """One epoch: train, evaluate, step the schedule, keep snapshots, ask early stopping. Returns the
        history row it appended and the number of training images seen."""
        started = time.perf_counter()
        train_loss, train_error, seen, finite, rescaled = run_epoch(self, state, epoch)
        val_probs = self.predict("val")
        val_loss, val_error = loss_and_error(val_probs, self.splits["val"].labels)
        if not (finite and math.isfinite(val_loss)):
            state.status = Status.DIVERGED
        training = state.status is Status.COMPLETED
        lr = self.optimizer.param_groups[0]["lr"]
        if training:
            step_schedule(self.scheduler, val_loss)
        row = dict(zip(HISTORY_COLUMNS, (epoch + 1, train_loss, train_error, val_loss, val_error, lr,
                                         time.perf_counter() - started)))
        if self.reg.max_norm is not None:  # checkpointed with the history; not a history.csv column
            row[MAX_NORM_RESCALED] = rescaled
        state.history.append(row)
        if training and epoch + 1 in snapshot_epochs(self.config):
            state.snapshots["val"].append(val_probs.cpu())
            state.snapshots["test"].append(self.predict("test").cpu())
        if training:
            state.early_stopping.update(val_loss, self.model)
        state.epoch = epoch + 1
        return row, seen


def build(config: dict[str, Any], prepared: Prepared, stats: dict[str, Any]) -> Trainer:
    """Everything the point trains with, on its device, seeded. It is also the configuration's check: a
    model, optimizer, schedule, pre-processing or fine-tuning that cannot work on this data raises
    ParamsError (a bad `finetune_from` DataError) here, before a single step."""
    source = finetune_source(config["finetune_from"]) if config["finetune_from"] else None  # a bad path: first
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
    stats = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in stats.items()}
    reg = regularization(config)
    augmentations = list(config["augmentations"]) + [a for a in reg.augmentations if a not in config["augmentations"]]
    preprocess = PREPROCESSORS.get(config["preprocessing"])(stats, device)
    train_batch, eval_batch = input_pipeline(augmentations, config["input_size"], preprocess, memory_format,
                                             generator, stats)

    # model, optimizer, schedule
    model = build_network(config, reg, prepared.image_shape, prepared.num_classes)
    frozen = load_finetune(model, config, source)
    if deterministic:
        backends.use_deterministic_pools(model)
    model = model.to(device=device, memory_format=memory_format)
    # train.compile: the training forward goes through torch.compile (evaluation, checkpoints and
    # state dicts keep using the plain module, whose parameters the compiled one shares)
    forward = torch.compile(model, dynamic=False) if config.get("compile") else model
    optimizer = OPTIMIZERS.get(config["optimizer"])(parameter_groups(model, reg, config), config)
    scheduler = SCHEDULES.get(config["schedule"])(optimizer, config)
    balance = CLASS_BALANCES.get(config["class_balance"])(splits["train"].labels, prepared.num_classes)
    first_batch = torch.arange(min(len(splits["train"]), config["batch_size"]), device=device)
    init_stats = activation_statistics(model, eval_batch(splits["train"].batch(first_batch)[0]))
    return Trainer(config, device, amp, reg, splits, train_batch, eval_batch, model, forward, frozen, optimizer,
                   scheduler, generator, penalized_weights(model), balance, init_stats)


# ------------------------------------------------------------------------------------------------ train

def run_epoch(trainer: Trainer, state: TrainState, epoch: int) -> tuple[float, float, int, bool, int]:
    """One pass over the epoch's order in training mode: (train loss, train error, images seen, whether
    every batch loss was finite, units the max-norm constraint rescaled). The batch losses join
    `state.batch_losses`."""
    config, data, device, reg = trainer.config, trainer.splits["train"], trainer.device, trainer.reg
    batch_size = config["batch_size"]
    train_mode(trainer.model, trainer.frozen)
    order = trainer.balance.epoch_order(trainer.generator)
    # the whole order is one epoch: oversampling makes it longer than the training set, undersampling shorter
    steps = training_steps(len(order), batch_size, bool(config.get("compile")))
    loss_sum, wrong_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    rescaled = torch.zeros((), device=device, dtype=torch.long)
    epoch_losses = []
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        x, y = data.batch(index)
        x = trainer.train_batch(x)  # float32, outside autocast (input_pipeline)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=trainer.amp):
            logits = trainer.forward(x)
            loss = F.cross_entropy(logits.float(), y, weight=trainer.balance.loss_weight)
        objective = loss + l1_penalty(trainer.weights, reg.l1) if reg.l1 else loss
        trainer.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        trainer.optimizer.step()
        if reg.max_norm is not None:
            rescaled += apply_max_norm(trainer.weights, reg.max_norm)
        if trainer.on_first_step is not None:  # the job's fixed cost ends here (the value waits for the device)
            trainer.on_first_step(loss.item())
            trainer.on_first_step = None
        detached = loss.detach()
        epoch_losses.append(detached)
        loss_sum += detached * len(index)
        wrong_sum += (logits.detach().argmax(dim=1) != y).sum()
    state.batch_losses.append(torch.stack(epoch_losses))  # one device-to-host transfer per epoch, not per step
    seen = min(len(order), steps * batch_size)
    finite = bool(torch.isfinite(state.batch_losses.per_epoch[-1]).all())
    # the count is read only where it is kept: no extra device-to-host transfer for other runs
    count = int(rescaled.item()) if reg.max_norm is not None else 0
    return loss_sum.item() / seen, wrong_sum.item() / seen, seen, finite, count


def train(config: dict[str, Any], prepared: Prepared, stats: dict[str, Any], *, config_digest: str,
          checkpoint_path: Path | None = None, tracker: Tracker | None = None,
          on_epoch: Callable[[dict[str, float]], None] | None = None,
          on_first_step: Callable[[float], None] | None = None, cadence: Cadence = Cadence()) -> TrainResult:
    """Build, resume, fit: one grid point for a caller without a stage (tests, benchmarks); `config_digest`
    is what a checkpoint at `checkpoint_path` must carry to be resumed."""
    trainer = build(config, prepared, stats)
    state = trainer.resume(checkpoint_path, {trainer.device.type: config_digest})
    return trainer.fit(state, checkpoint_path, tracker, on_epoch=on_epoch, on_first_step=on_first_step, cadence=cadence)


def finish(trainer: Trainer, state: TrainState, resumed_from_epoch: int) -> TrainResult:
    """Final metrics of every split in evaluation mode, predictions for ensembles, diagnostics."""
    metrics: dict[str, float] = {"epochs_run": float(len(state.history))}
    if trainer.reg.max_norm is not None:
        metrics["max_norm_rescalings"] = float(sum(row.get(MAX_NORM_RESCALED, 0) for row in state.history))
    predictions: dict[str, np.ndarray] = {}
    dead: list[dict[str, Any]] = []
    if state.status is Status.DIVERGED:
        for split in trainer.splits:
            metrics[f"{split}_loss"] = metrics[f"{split}_error"] = math.nan
    else:
        for split, data in trainer.splits.items():
            probs = trainer.predict(split)
            metrics[f"{split}_loss"], metrics[f"{split}_error"] = loss_and_error(probs, data.labels)
            if split != "train":
                predictions[f"{split}_probs"] = probs.cpu().numpy()
                predictions[f"{split}_labels"] = data.labels.cpu().numpy()
        for split in ("val", "test"):
            if state.snapshots[split]:
                predictions[f"snapshot_{split}_probs"] = torch.stack(state.snapshots[split]).numpy()
        dead = dead_unit_fractions(trainer.model, lambda: trainer.predict("val"))
    model_state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    diagnostics = {"init_activation_stats": state.init_stats, "dead_units": dead}
    return TrainResult(state.status, metrics, state.history, state.batch_losses.rows(), predictions, diagnostics,
                       model_state, resumed_from_epoch)
