"""Regularizers by name. Each entry switches on its part of a `Regularization` from the run's config.

Regularizers combine: `regularizers: [l2, max_norm, dropout]` applies all three. Strengths come from the
train config (`l2`, `l1`, `max_norm`, `dropout`, `patience`), so an axis can vary the name and the
strength separately.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from trickbench.registry import Registry

REGULARIZERS = Registry("regularizer")


@dataclass
class Regularization:
    l2: float = 0.0  # λ of ½λ‖w‖², applied as weight decay on weights only (same gradient λw)
    l1: float = 0.0  # λ of λ‖w‖₁, an explicit loss term
    max_norm: float | None = None  # c: every output unit's incoming weight vector is rescaled to ‖w‖₂ ≤ c
    dropout: float = 0.0
    batch_norm: bool = False
    early_stopping_patience: int | None = None
    augmentations: list[str] = field(default_factory=list)


@REGULARIZERS.register("none", "no regularization (the baseline row)")
def _none(reg: Regularization, config: dict[str, Any]) -> None:
    pass


@REGULARIZERS.register("l2", "½·λ·‖w‖² on conv/linear weights (biases, norm and PReLU slopes excluded), λ = train.l2")
def _l2(reg: Regularization, config: dict[str, Any]) -> None:
    reg.l2 = config["l2"]


@REGULARIZERS.register("l1", "λ·‖w‖₁ on conv/linear weights, λ = train.l1")
def _l1(reg: Regularization, config: dict[str, Any]) -> None:
    reg.l1 = config["l1"]


@REGULARIZERS.register("elastic_net", "λ₁‖w‖₁ + ½λ₂‖w‖² on conv/linear weights (train.l1, train.l2)")
def _elastic_net(reg: Regularization, config: dict[str, Any]) -> None:
    reg.l1, reg.l2 = config["l1"], config["l2"]


@REGULARIZERS.register("max_norm", "after every step rescale each unit's/filter's weight vector to ‖w‖₂ ≤ c, c = train.max_norm")
def _max_norm(reg: Regularization, config: dict[str, Any]) -> None:
    reg.max_norm = config["max_norm"]


@REGULARIZERS.register("dropout", "dropout with probability p = train.dropout before the classifier (NiN: after the pools)")
def _dropout(reg: Regularization, config: dict[str, Any]) -> None:
    reg.dropout = config["dropout"]


@REGULARIZERS.register("batch_norm", "batch normalisation after every convolution, before the activation")
def _batch_norm(reg: Regularization, config: dict[str, Any]) -> None:
    reg.batch_norm = True


@REGULARIZERS.register("early_stopping", "stop when validation loss has not improved for train.patience epochs; keep the best weights")
def _early_stopping(reg: Regularization, config: dict[str, Any]) -> None:
    reg.early_stopping_patience = config["patience"]


@REGULARIZERS.register("augmentation", "data augmentation as a regularizer: train.regularizer_augmentations (default flip, crop)")
def _augmentation(reg: Regularization, config: dict[str, Any]) -> None:
    reg.augmentations = list(config["regularizer_augmentations"])


def regularization(config: dict[str, Any]) -> Regularization:
    reg = Regularization()
    for name in config["regularizers"]:
        REGULARIZERS.get(name)(reg, config)
    return reg


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights that L1 and max-norm act on: those of convolutions and linear layers that train.

    Biases, norm-layer parameters and activation slopes are never penalised. Weights frozen by
    fine-tuning are left out too: max-norm must not rescale a backbone that is meant to stay fixed.
    (L2 reaches the same weights through the optimizer's parameter groups, see loop.parameter_groups.)
    """
    return [m.weight for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]


def l1_penalty(weights: Sequence[torch.Tensor], strength: float) -> torch.Tensor:
    """λ·Σ|w|, added to the loss; its gradient is λ·sign(w) (0 at w = 0).

    The per-layer sums come from one torch._foreach_norm(·, 1) (one multi-tensor kernel on CUDA instead of
    an abs and a sum per layer)."""
    weights = list(weights)
    return strength * torch.stack(torch._foreach_norm(weights, 1)).sum()


@torch.no_grad()
def apply_max_norm(weights: Sequence[torch.Tensor], c: float) -> torch.Tensor | int:
    """Project every output unit onto the ball ‖w‖₂ ≤ c (a projection: smaller units are untouched).

    A unit is one row of a Linear weight (out, in) or one filter of a convolution (out, in, kh, kw).
    Scale = c / max(‖w‖, c): 1 inside the ball (and for a zero unit), c / ‖w‖ outside. One norm kernel per
    layer, then the scales of all layers in three multi-tensor (foreach) kernels, then one multiply per
    layer: about 2L + 3 kernels instead of 7L. Not torch._foreach_norm: it gives one norm per tensor, and
    per-unit norms would take one view per unit (about 1,400 for NiN-192), whose Python-side handling
    costs ~3 ms a step, more than a whole NiN step on a fast GPU.

    Returns the number of units it rescaled (a device tensor, not synchronised): whether the constraint
    binds is the premise of the max-norm claim (three more kernels a step, whatever the layer count).
    """
    weights = list(weights)
    if not weights:
        return 0
    scales = [torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1) for w in weights]
    torch._foreach_maximum_(scales, c)
    torch._foreach_reciprocal_(scales)
    torch._foreach_mul_(scales, c)
    torch._foreach_mul_(weights, [scale.view(-1, *([1] * (w.dim() - 1))) for scale, w in zip(scales, weights)])
    return torch.cat(scales).lt(1).sum()
