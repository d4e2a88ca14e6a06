"""Activation functions by name, in the convention of Xu et al. (2015): a leaky *divisor* a means y = x / a.

Every registry entry is a factory ``fn(num_channels) -> nn.Module`` (the channel count matters only for
PReLU, which learns one slope per channel); ``extra["negative_slope"]`` is the negative slope that He
initialization should assume for it. Adding an activation is one function plus its registry line.

Models build activations only through :func:`make_activation`, which wraps each layer in
:class:`Activation`. The wrapper is the marker that :func:`activation_layers` finds and that
:func:`no_decay_parameter_names` uses to keep learned slopes out of weight decay (He et al. 2015).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from trickbench.registry import Registry

ActivationFactory = Callable[[int], nn.Module]

ACTIVATIONS = Registry("activation", extras=("negative_slope",))

# Norm layers whose affine parameters are conventionally exempt from weight decay.
NORM_LAYERS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
)


class Activation(nn.Module):
    """Marks a layer built by :func:`make_activation`; forwards to the registry's module unchanged."""

    def __init__(self, name: str, inner: nn.Module):
        super().__init__()
        self.name = name
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class LeakyReLUDivisor(nn.Module):
    """y = x for x >= 0 and y = x / a for x < 0: the paper's divisor a, i.e. slope 1/a."""

    def __init__(self, divisor: float):
        super().__init__()
        if divisor <= 0:
            raise ValueError(f"leaky ReLU divisor must be positive, got {divisor}")
        self.divisor = float(divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The fused kernel is faster than torch.where and the slope 1/a is the same function.
        return F.leaky_relu(x, negative_slope=1.0 / self.divisor)

    def extra_repr(self) -> str:
        return f"divisor={self.divisor:g}"


def at_least_float32(x: torch.Tensor) -> torch.dtype:
    """bf16 and fp16 (autocast's outputs) become float32; float32 and float64 stay as they are."""
    return torch.promote_types(x.dtype, torch.float32)


def rrelu_divisors(x: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """a ~ U(lower, upper) where x < 0 (or NaN), exactly 1 elsewhere, so that x / a is the paper's RReLU.
    At least float32: drawn in bf16 (x's dtype under autocast) U(3, 8) has 32 values per unit, and 7.97
    rounds to 8.0 exactly, outside the paper's open interval.

    x / rrelu_divisors(x) equals torch.where(x >= 0, x, x / a) bit for bit, values and gradients, and
    draws the same random numbers; torch.where's CPU kernel is not vectorised, which made the where-form
    2.1x slower per activation, forward and backward (benchmarks/activation_cost.py).
    """
    divisor = torch.empty_like(x, dtype=at_least_float32(x)).uniform_(lower, upper)
    nonnegative = x >= 0  # not `x < 0`: a NaN gets a divisor, as in the where-form
    return divisor.mul_(~nonnegative).add_(nonnegative)  # a * 1 + 0 or a * 0 + 1: exact


class PaperRReLU(nn.Module):
    """Randomized leaky ReLU of Xu et al. (2015), NOT torch.nn.RReLU.

    Training: for every element and every forward pass a divisor a ~ U(lower, upper) is drawn and
    y = x / a for x < 0, so the slope follows 1/U(lower, upper). Evaluation: the fixed slope
    2 / (lower + upper), i.e. x divided by the mean divisor. torch.nn.RReLU instead draws the slope
    itself from U(lower, upper), a different distribution with a different test-time slope.
    """

    def __init__(self, lower: float = 3.0, upper: float = 8.0):
        super().__init__()
        if not 0 < lower <= upper:
            raise ValueError(f"need 0 < lower <= upper, got lower={lower}, upper={upper}")
        self.lower, self.upper = float(lower), float(upper)

    @property
    def eval_slope(self) -> float:
        return 2.0 / (self.lower + self.upper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # at least float32 (x itself outside autocast), back to x's dtype
            return (x.to(at_least_float32(x)) / rrelu_divisors(x, self.lower, self.upper)).to(x.dtype)
        return F.leaky_relu(x, self.eval_slope)  # x * slope for x < 0: the same numbers as the where-form

    def extra_repr(self) -> str:
        return f"lower={self.lower:g}, upper={self.upper:g}"


class Float32PReLU(nn.PReLU):
    """nn.PReLU computed in float32 under autocast too (CUDA and CPU autocast run prelu in bf16, rounding the
    learned slopes to 8 bits); the output keeps the input's dtype. The same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        precise = at_least_float32(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.prelu(x.to(precise), self.weight.to(precise)).to(x.dtype)


@ACTIVATIONS.register("relu", "y = max(x, 0)", negative_slope=0.0)
def relu_layer(num_channels: int) -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu_a100", "leaky ReLU, y = x / 100 for x < 0 (Xu et al. a = 100)",
                      negative_slope=1.0 / 100.0)
def leaky_relu_a100_layer(num_channels: int) -> nn.Module:
    return LeakyReLUDivisor(100.0)


@ACTIVATIONS.register("leaky_relu_a5.5", "leaky ReLU, y = x / 5.5 for x < 0 (Xu et al. a = 5.5, slope 2/11)",
                      negative_slope=1.0 / 5.5)
def leaky_relu_a5_5_layer(num_channels: int) -> nn.Module:
    return LeakyReLUDivisor(5.5)


@ACTIVATIONS.register("prelu", "PReLU, one learned slope per channel, initialised to 0.25 (He et al.)",
                      negative_slope=0.25)
def prelu_layer(num_channels: int) -> nn.Module:
    return Float32PReLU(num_parameters=num_channels, init=0.25)


@ACTIVATIONS.register("rrelu", "paper RReLU: train y = x / a, a ~ U(3, 8) per element and pass; test y = x * 2/11",
                      negative_slope=2.0 / 11.0)
def rrelu_paper_layer(num_channels: int) -> nn.Module:
    return PaperRReLU(lower=3.0, upper=8.0)


@ACTIVATIONS.register("torch_rrelu", "torch.nn.RReLU(1/8, 1/3): slope ~ U(1/8, 1/3) in training, 11/48 at test "
                      "(comparison only; not the paper's RReLU)", negative_slope=(1.0 / 8.0 + 1.0 / 3.0) / 2.0)
def torch_rrelu_layer(num_channels: int) -> nn.Module:
    return nn.RReLU(lower=1.0 / 8.0, upper=1.0 / 3.0)


@ACTIVATIONS.register("sigmoid", "y = 1 / (1 + exp(-x))", negative_slope=0.0)
def sigmoid_layer(num_channels: int) -> nn.Module:
    return nn.Sigmoid()


@ACTIVATIONS.register("tanh", "y = tanh(x)", negative_slope=0.0)
def tanh_layer(num_channels: int) -> nn.Module:
    return nn.Tanh()


@ACTIVATIONS.register("elu", "y = x for x > 0, exp(x) - 1 otherwise", negative_slope=0.0)
def elu_layer(num_channels: int) -> nn.Module:
    return nn.ELU()


@ACTIVATIONS.register("gelu", "y = x * Phi(x), Phi the standard normal CDF", negative_slope=0.0)
def gelu_layer(num_channels: int) -> nn.Module:
    return nn.GELU()


@ACTIVATIONS.register("silu", "y = x * sigmoid(x) (swish)", negative_slope=0.0)
def silu_layer(num_channels: int) -> nn.Module:
    return nn.SiLU()


def _build_marked(name: str, num_channels: int) -> Activation:
    return Activation(name, ACTIVATIONS.get(name)(num_channels))


def make_activation(name: str) -> ActivationFactory:
    """The factory models call once per activation layer; raises UnknownComponentError for a bad name."""
    ACTIVATIONS.entry(name)  # fail here, at configuration time, not inside a model builder
    # functools.partial rather than a closure so that the factory pickles (worker processes).
    return functools.partial(_build_marked, name)


def negative_slope(name: str) -> float:
    """The negative slope He initialization assumes for this activation (0 for non-leaky ones)."""
    return float(ACTIVATIONS.entry(name).extra["negative_slope"])


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every marked activation in the model, in registration order (our models register in forward order)."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, Activation)]


def prelu_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned parameters of activation layers (PReLU slopes)."""
    return [p for _, layer in activation_layers(model) for p in layer.parameters()]


def no_decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of parameters exempt from weight decay: biases, norm-layer affine terms, activation slopes."""
    exempt = {id(p) for p in prelu_parameters(model)}
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            exempt.update(id(p) for p in module.parameters(recurse=False))
    return [name for name, p in model.named_parameters()
            if id(p) in exempt or name.rsplit(".", 1)[-1] == "bias"]
