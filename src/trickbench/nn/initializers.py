"""Weight initializers by name (reproduction.md section 3).

Every registry entry is ``fn(weight, negative_slope) -> None`` and fills ``weight`` in place.
Fans follow the usual convention: for a weight of shape (C_out, C_in, k_h, k_w),
fan_in = C_in * k_h * k_w and fan_out = C_out * k_h * k_w (a Linear weight is (out, in)).
``negative_slope`` is the activation's slope a (see ``activations.negative_slope``); only the He
and orthogonal rules use it. :func:`initialize` applies one rule to a whole model.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from trickbench.registry import Registry

WeightInitializer = Callable[[torch.Tensor, float], None]

INITIALIZERS = Registry("initializer")

# The layers whose weights an initializer sets; norm layers keep weight 1, bias 0 as PyTorch makes them.
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear or convolution weight."""
    if weight.dim() < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
    receptive_field = weight[0][0].numel()
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def leaky_relu_gain(negative_slope: float) -> float:
    """sqrt(2 / (1 + a^2)): keeps activation variance constant through a leaky ReLU (He et al. 2015)."""
    return math.sqrt(2.0 / (1.0 + negative_slope**2))


def he_std(weight: torch.Tensor, negative_slope: float) -> float:
    return leaky_relu_gain(negative_slope) / math.sqrt(fans(weight)[0])


def lecun_std(weight: torch.Tensor) -> float:
    return 1.0 / math.sqrt(fans(weight)[0])


def xavier_std(weight: torch.Tensor) -> float:
    fan_in, fan_out = fans(weight)
    return math.sqrt(2.0 / (fan_in + fan_out))


def _uniform_with_std(weight: torch.Tensor, std: float) -> None:
    # U(-b, b) has standard deviation b / sqrt(3).
    bound = math.sqrt(3.0) * std
    weight.uniform_(-bound, bound)


@INITIALIZERS.register("zeros", "all weights 0 (no symmetry breaking: the seed's failure case)")
@torch.no_grad()
def zeros(weight: torch.Tensor, negative_slope: float) -> None:
    weight.zero_()


@INITIALIZERS.register("small_random", "N(0, 1) * 0.001 (the seed's small random numbers)")
@torch.no_grad()
def small_random(weight: torch.Tensor, negative_slope: float) -> None:
    weight.normal_(0.0, 0.001)


@INITIALIZERS.register("lecun_normal", "LeCun / calibrated: N(0, 1/fan_in)")
@torch.no_grad()
def lecun_normal(weight: torch.Tensor, negative_slope: float) -> None:
    weight.normal_(0.0, lecun_std(weight))


@INITIALIZERS.register("xavier_uniform", "Xavier/Glorot: U(+-sqrt(6 / (fan_in + fan_out)))")
@torch.no_grad()
def xavier_uniform(weight: torch.Tensor, negative_slope: float) -> None:
    _uniform_with_std(weight, xavier_std(weight))


@INITIALIZERS.register("xavier_normal", "Xavier/Glorot: N(0, 2 / (fan_in + fan_out))")
@torch.no_grad()
def xavier_normal(weight: torch.Tensor, negative_slope: float) -> None:
    weight.normal_(0.0, xavier_std(weight))


@INITIALIZERS.register("he_normal", "He/Kaiming: N(0, 2 / ((1 + a^2) fan_in)), a the activation's negative slope")
@torch.no_grad()
def he_normal(weight: torch.Tensor, negative_slope: float) -> None:
    weight.normal_(0.0, he_std(weight, negative_slope))


@INITIALIZERS.register("he_uniform", "He/Kaiming: uniform with variance 2 / ((1 + a^2) fan_in)")
@torch.no_grad()
def he_uniform(weight: torch.Tensor, negative_slope: float) -> None:
    _uniform_with_std(weight, he_std(weight, negative_slope))


@INITIALIZERS.register("orthogonal", "orthogonal rows (or columns) of the flattened weight, gain sqrt(2 / (1 + a^2))")
@torch.no_grad()
def orthogonal(weight: torch.Tensor, negative_slope: float) -> None:
    nn.init.orthogonal_(weight, gain=leaky_relu_gain(negative_slope))


@INITIALIZERS.register("default", "PyTorch's own initialization, left untouched: U(+-1/sqrt(fan_in)) for weights "
                       "and biases of conv/linear", touches_model=False)
def framework_default(weight: torch.Tensor, negative_slope: float) -> None:
    """Nothing to do: the layer already holds PyTorch's initialization."""


def initialize(model: nn.Module, name: str, negative_slope: float) -> None:
    """Apply initializer ``name`` to every conv/linear weight and zero their biases.

    ``default`` leaves the whole model as PyTorch built it (weights and biases). Norm layers and
    activation slopes are never touched. Raises UnknownComponentError for an unknown name.
    """
    entry = INITIALIZERS.entry(name)
    if not entry.extra.get("touches_model", True):
        return
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, WEIGHT_LAYERS):
                entry.fn(module.weight, negative_slope)
                if module.bias is not None:
                    module.bias.zero_()
