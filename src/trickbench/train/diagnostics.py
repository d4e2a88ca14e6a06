"""Activation diagnostics of a network (seed §3): statistics of every activation layer's output at
initialization, and the fraction of units that never fire over a whole split once trained."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from trickbench.nn.activations import activation_layers


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
def dead_unit_fractions(model: nn.Module, forward_split: Callable[[], Any]) -> list[dict[str, Any]]:
    """Per activation layer, the fraction of units (channels) never positive while `forward_split` runs
    the model over a whole split."""
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
        forward_split()
    finally:
        for hook in hooks:
            hook.remove()
    return [{"layer": name, "dead_fraction": 1.0 - ever_positive[name].float().mean().item(),
             "units": int(ever_positive[name].numel())} for name, _ in layers if name in ever_positive]
