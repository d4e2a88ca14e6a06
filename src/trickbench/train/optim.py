"""Optimizers and learning-rate schedules by name (torch.optim underneath)."""
from __future__ import annotations

from typing import Any

import torch

from trickbench.registry import Registry

OPTIMIZERS = Registry("optimizer")
# restarts: the schedule anneals in cycles of train.step_size epochs and begins anew after each; the snapshot
# ensemble then keeps the end of each cycle instead of the last epochs (snapshot_epochs)
SCHEDULES = Registry("schedule", extras=("restarts",))

ParamGroups = list[dict[str, Any]]


def _foreach(config: dict[str, Any]) -> dict[str, Any]:
    # the multi-tensor implementation is the fast path on both CPU and CUDA
    return {"foreach": True}


@OPTIMIZERS.register("sgd", "SGD with momentum train.momentum (Nesterov if train.nesterov), lr train.lr")
def sgd(groups: ParamGroups, config: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=config["lr"], momentum=config["momentum"],
                           nesterov=config["nesterov"] and config["momentum"] > 0, **_foreach(config))


@OPTIMIZERS.register("adam", "Adam (β = 0.9, 0.999), lr train.lr; L2 is added to the gradient, as ½λ‖w‖² does")
def adam(groups: ParamGroups, config: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=config["lr"], **_foreach(config))


@OPTIMIZERS.register("rmsprop", "RMSProp (α = 0.99) with momentum train.momentum, lr train.lr")
def rmsprop(groups: ParamGroups, config: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(groups, lr=config["lr"], momentum=config["momentum"], **_foreach(config))


@OPTIMIZERS.register("adagrad", "AdaGrad, lr train.lr")
def adagrad(groups: ParamGroups, config: dict[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(groups, lr=config["lr"], **_foreach(config))


@SCHEDULES.register("constant", "the learning rate stays train.lr", restarts=False)
def constant(optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@SCHEDULES.register("step", "multiply by train.gamma every train.step_size epochs", restarts=False)
def step(optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> Any:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config["step_size"], gamma=config["gamma"])


@SCHEDULES.register("cosine", "cosine annealing from train.lr to 0 over train.epochs", restarts=False)
def cosine(optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> Any:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])


@SCHEDULES.register("cosine_restarts", "SGDR (Loshchilov & Hutter 2017): cosine annealing from train.lr to 0 over "
                    "each cycle of train.step_size epochs, then back to train.lr; snapshots at the cycles' ends",
                    restarts=True)
def cosine_restarts(optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> Any:
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=config["step_size"])


class DivideOnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """The seed's rule: when the validation loss stops improving, divide the learning rate by 2 (or 5).

    Exactly: after each epoch, the loss improves if it is strictly below the best so far (no
    threshold, the test early stopping uses). When ``patience`` consecutive epochs have not
    improved, every group's lr is multiplied by ``factor`` (0.5: divide by 2, 0.2: by 5) from the next
    epoch on, and the count restarts. ``patience`` thus means what train.patience means for early
    stopping; torch's ReduceLROnPlateau tolerates ``patience`` bad epochs and divides at the next one,
    hence the ``patience - 1`` it is given. ``state_dict`` / ``load_state_dict`` are torch's (resume).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"train.plateau_factor must be in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"train.plateau_patience must be >= 1, got {patience}")
        super().__init__(optimizer, mode="min", factor=factor, patience=patience - 1,
                         threshold=0.0, threshold_mode="abs", cooldown=0, min_lr=0.0, eps=0.0)


@SCHEDULES.register("plateau", "the seed's rule (start at train.lr, the seed says 0.1): multiply by train.plateau_factor "
                    "(1/2 or 1/5) once validation loss has not improved for train.plateau_patience epochs in a row",
                    restarts=False)
def plateau(optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> Any:
    return DivideOnPlateau(optimizer, factor=config["plateau_factor"], patience=config["plateau_patience"])


def snapshot_epochs(config: dict[str, Any]) -> frozenset[int]:
    """The epochs (1-based) whose predictions join the run's snapshot ensemble: the last train.snapshots
    epochs, or with a restarting schedule the last epoch of each of the last train.snapshots cycles, where
    the rate is near 0 and the models differ (Huang et al. 2017, "Snapshot ensembles")."""
    epochs, count = config["epochs"], config["snapshots"]
    spacing = config["step_size"] if SCHEDULES.entry(config["schedule"]).extra["restarts"] else 1
    return frozenset(epochs - spacing * i for i in range(count) if epochs - spacing * i >= 1)


def step_schedule(scheduler: Any, val_loss: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()
