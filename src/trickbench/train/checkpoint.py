"""The checkpoint format (one glance: `TrainState.save`), early stopping, and when checkpoints are written.

A checkpoint holds everything a resume needs to continue bit-identically: model, optimizer and schedule
state, every RNG state, early stopping, the history, every batch loss so far and the snapshot predictions.
Its cost does not grow with the epoch: the batch losses are one float32 tensor (format 3), not a Python
list per batch (format 2 re-pickled all of them each epoch: 25 ms at epoch 1, 0.5 s at epoch 240 for
CIFAR-10). Format 2 files still load, so a job killed before the upgrade resumes.
"""
from __future__ import annotations

import copy
import enum
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from trickbench.errors import DataError
from trickbench.io import atomic_path

CHECKPOINT_VERSION = 3  # 3: batch losses as one tensor; 2: RNG states of the device in use only
READABLE_VERSIONS = (2, 3)

# A checkpoint's `status` of a run that early stopping ended (its epochs are done; the best weights follow)
EARLY_STOPPED = "early_stopped"


class Status(enum.StrEnum):
    """How a run ended; the value is what metrics.json, the MLflow tag and the progress record say."""

    COMPLETED = "completed"
    DIVERGED = "diverged"


@dataclass
class EarlyStopping:
    """Stop once the validation loss has not improved for `patience` epochs, then go back to the best
    epoch's weights. `patience` None (regularizer early_stopping off): it never stops nor keeps weights."""

    patience: int | None
    best_val: float = math.inf
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stopped: bool = False

    def update(self, val_loss: float, model: nn.Module) -> bool:
        """Record one epoch's validation loss; True once training should stop."""
        if self.patience is None:
            return False
        if val_loss < self.best_val:
            self.best_val, self.bad_epochs = val_loss, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
            self.stopped = self.bad_epochs >= self.patience
        return self.stopped

    def restore_best(self, model: nn.Module) -> None:
        """A stopped run ends with its best epoch's weights (a finite loss set them on the first epoch)."""
        if self.stopped:
            model.load_state_dict(self.best_state)


@dataclass
class BatchLosses:
    """Every batch loss so far, one float32 CPU tensor per epoch (the list index is the epoch)."""

    per_epoch: list[torch.Tensor] = field(default_factory=list)

    def append(self, epoch_losses: torch.Tensor) -> None:
        self.per_epoch.append(epoch_losses.detach().float().cpu())

    def rows(self) -> list[tuple[int, int, float]]:
        """(epoch, batch, loss) rows, as batch_loss.csv lists them."""
        return [(epoch, step, value) for epoch, losses in enumerate(self.per_epoch)
                for step, value in enumerate(losses.tolist())]

    def to_file(self) -> dict[str, torch.Tensor]:
        losses = torch.cat(self.per_epoch) if self.per_epoch else torch.empty(0)
        return {"losses": losses, "steps": torch.tensor([len(t) for t in self.per_epoch], dtype=torch.int64)}

    @classmethod
    def from_file(cls, stored: Any) -> BatchLosses:
        """Format 3 (losses and steps per epoch), or format 2's [epoch, batch, loss] rows."""
        if isinstance(stored, dict):
            return cls(list(torch.split(stored["losses"], stored["steps"].tolist())))
        by_epoch: dict[int, list[float]] = {}
        for epoch, _, value in stored:
            by_epoch.setdefault(int(epoch), []).append(value)
        return cls([torch.tensor(by_epoch.get(e, []), dtype=torch.float32) for e in range(len(by_epoch))])


@dataclass(frozen=True)
class Cadence:
    """When the loop writes a checkpoint (params `resources.checkpoint_every_epochs` and
    `resources.checkpoint_every_seconds`): every `epochs` epochs, or once `seconds` have passed since the
    last one (0: off), and always after the last epoch. A job stopped by SIGTERM or Ctrl-C saves the last
    completed epoch whatever the cadence. The default, every epoch, is the behaviour before the setting."""

    epochs: int = 1
    seconds: float = 0.0

    def due(self, epoch: int, last_saved: float, final: bool) -> bool:
        return (final or epoch % self.epochs == 0
                or (self.seconds > 0 and time.monotonic() - last_saved >= self.seconds))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint file's dict if it is readable and of a format this code reads; None means start afresh."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or corrupt: retrain rather than load garbage
        return None
    if not isinstance(state, dict) or state.get("version") not in READABLE_VERSIONS:
        return None
    return state


@dataclass
class TrainState:
    """Everything a checkpoint holds after `epoch` epochs, for a resume that continues bit-identically."""

    config_digest: str
    device_type: str
    init_stats: list[dict[str, Any]]
    early_stopping: EarlyStopping
    epoch: int = 0
    model: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    batch_losses: BatchLosses = field(default_factory=BatchLosses)
    snapshots: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {"val": [], "test": []})
    status: Status = Status.COMPLETED
    mlflow_run_id: str | None = None

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.to_file())

    def to_file(self) -> dict[str, Any]:
        """What the checkpoint file holds (torch.load gives it back with weights_only=True)."""
        stopping = self.early_stopping
        return {
            "version": CHECKPOINT_VERSION, "config_digest": self.config_digest, "device_type": self.device_type,
            "epoch": self.epoch, "model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
            "rng": self.rng, "history": self.history, "batch_losses": self.batch_losses.to_file(),
            "snapshots": self.snapshots, "best_val": stopping.best_val, "bad_epochs": stopping.bad_epochs,
            "best_state": stopping.best_state, "init_stats": self.init_stats,
            "status": EARLY_STOPPED if stopping.stopped else self.status.value, "mlflow_run_id": self.mlflow_run_id,
        }

    def frozen_copy(self) -> TrainState:
        """A copy that later epochs do not change (they update the model and optimizer tensors in place),
        kept in memory for an epoch the cadence did not save, to be saved if the job is stopped."""
        return replace(self, model=copy.deepcopy(self.model), optimizer=copy.deepcopy(self.optimizer),
                       scheduler=copy.deepcopy(self.scheduler), history=list(self.history),
                       batch_losses=BatchLosses(list(self.batch_losses.per_epoch)),
                       snapshots={k: list(v) for k, v in self.snapshots.items()},
                       early_stopping=replace(self.early_stopping))

    @classmethod
    def load(cls, path: Path, digests: Mapping[str, str], device_type: str,
             patience: int | None) -> TrainState | None:
        """The checkpoint at `path` when it belongs to this run; None (start afresh) when there is none, it is
        unreadable, of another format or of another configuration. `digests`: this configuration's digest
        on each device type. A checkpoint of it written on another device type is refused (DataError): its
        RNG states exist only there, and training afresh would overwrite its epochs."""
        raw = read_checkpoint(path)
        if raw is None:
            return None
        written_for = [device for device, digest in digests.items() if digest == raw["config_digest"]]
        if not written_for:
            return None
        if raw["device_type"] == device_type and device_type in written_for:
            return cls.from_checkpoint(raw, patience)
        other = raw["device_type"] if raw["device_type"] != device_type else written_for[0]
        raise DataError(f"{path}: checkpoint written on {other}, this run is on {device_type}; resume it on {other} "
                        f"(train.device: {other}) or delete the file to retrain from scratch")

    @classmethod
    def from_checkpoint(cls, raw: dict[str, Any], patience: int | None) -> TrainState:
        stopped = raw["status"] == EARLY_STOPPED
        return cls(
            config_digest=raw["config_digest"], device_type=raw["device_type"], init_stats=raw["init_stats"],
            early_stopping=EarlyStopping(patience, raw["best_val"], raw["bad_epochs"], raw["best_state"], stopped),
            epoch=raw["epoch"], model=raw["model"], optimizer=raw["optimizer"], scheduler=raw["scheduler"],
            rng=raw["rng"], history=raw["history"], batch_losses=BatchLosses.from_file(raw["batch_losses"]),
            snapshots=raw["snapshots"], status=Status.COMPLETED if stopped else Status(raw["status"]),
            mlflow_run_id=raw.get("mlflow_run_id"),
        )


class Checkpointer:
    """Writes the loop's checkpoints at `path` (None: never) as `cadence` says; an epoch it skips is kept as
    a frozen copy in memory, which `save_unsaved` writes when the job is stopped (SIGTERM, Ctrl-C)."""

    def __init__(self, path: Path | None, cadence: Cadence):
        self.path, self.cadence = path, cadence
        self.last_saved, self.unsaved = time.monotonic(), None

    def after_epoch(self, state: TrainState, final: bool, flush: Callable[[], None]) -> None:
        if self.path is None:
            return
        if self.cadence.due(state.epoch, self.last_saved, final):
            flush()  # the tracking calls queued so far reach the store before a checkpoint says they were made
            state.save(self.path)
            self.last_saved, self.unsaved = time.monotonic(), None
        else:
            self.unsaved = state.frozen_copy()

    def save_unsaved(self) -> None:
        if self.unsaved is not None:
            self.unsaved.save(self.path)
            self.unsaved = None
