"""Initializers against their formulas (reproduction.md section 3)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trickbench.nn.initializers import INITIALIZERS, initialize
from trickbench.nn.models import build_model
from trickbench.registry import UnknownComponentError

# An asymmetric layer so that fan_in (128*9) and fan_out (384*9) cannot be confused.
C_OUT, C_IN, K = 384, 128, 3
FAN_IN, FAN_OUT = C_IN * K * K, C_OUT * K * K


def large_weight() -> torch.Tensor:
    return torch.empty(C_OUT, C_IN, K, K)


def he_std(a: float) -> float:
    return math.sqrt(2.0 / ((1.0 + a * a) * FAN_IN))


XAVIER_STD = math.sqrt(2.0 / (FAN_IN + FAN_OUT))

STD_CASES = [  # name, negative slope, expected std, distribution
    ("small_random", 0.0, 0.001, "normal"),
    ("lecun_normal", 0.0, 1.0 / math.sqrt(FAN_IN), "normal"),
    ("xavier_uniform", 0.0, XAVIER_STD, "uniform"),
    ("xavier_normal", 0.0, XAVIER_STD, "normal"),
    ("he_normal", 0.0, he_std(0.0), "normal"),
    ("he_normal", 0.25, he_std(0.25), "normal"),
    ("he_uniform", 0.0, he_std(0.0), "uniform"),
    ("he_uniform", 0.25, he_std(0.25), "uniform"),
    # Orthonormal rows scaled by the gain have squared norm gain^2 spread over fan_in entries.
    ("orthogonal", 0.0, he_std(0.0), "orthogonal"),
    ("orthogonal", 0.25, he_std(0.25), "orthogonal"),
]


@pytest.mark.parametrize("name, slope, expected_std, distribution", STD_CASES)
def test_empirical_std_matches_formula(name: str, slope: float, expected_std: float, distribution: str) -> None:
    torch.manual_seed(0)
    weight = large_weight()
    INITIALIZERS.get(name)(weight, slope)
    assert weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert abs(weight.mean().item()) < 0.01 * expected_std
    largest = weight.abs().max().item()
    if distribution == "uniform":  # U(-b, b) with b = sqrt(3) * std: bounded, and the bound is reached
        assert math.sqrt(3.0) * expected_std * 0.99 < largest <= math.sqrt(3.0) * expected_std * (1 + 1e-6)
    if distribution == "normal":  # a normal sample of this size has tails far beyond sqrt(3) std
        assert largest > 3.0 * expected_std


def test_zeros_initializer_gives_all_zeros() -> None:
    weight = torch.randn(C_OUT, C_IN, K, K)
    INITIALIZERS.get("zeros")(weight, 0.0)
    assert not weight.any()


@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_orthogonal_rows_are_orthonormal_times_gain(slope: float) -> None:
    layer = nn.Linear(256, 64)
    INITIALIZERS.get("orthogonal")(layer.weight, slope)
    gram = layer.weight.detach() @ layer.weight.detach().T
    gain_squared = 2.0 / (1.0 + slope**2)
    torch.testing.assert_close(gram, gain_squared * torch.eye(64), atol=1e-5, rtol=0)


def test_pytorch_default_is_uniform_one_over_sqrt_fan_in() -> None:
    # The 'default' initializer leaves this in place: U(+-1/sqrt(fan_in)), a third of LeCun's variance.
    torch.manual_seed(0)
    weight = nn.Conv2d(C_IN, C_OUT, K).weight.detach()
    assert weight.abs().max().item() <= 1.0 / math.sqrt(FAN_IN)
    assert weight.std().item() == pytest.approx(1.0 / math.sqrt(3.0 * FAN_IN), rel=0.03)


def small_cnn(activation: str = "relu", batch_norm: bool = False) -> nn.Module:
    return build_model("small_cnn", in_channels=1, num_classes=10, image_size=8, activation=activation,
                       width=8, batch_norm=batch_norm, dropout=0.0)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_initialize_sets_weights_and_zeroes_biases() -> None:
    torch.manual_seed(0)
    model = small_cnn()
    before = [layer.weight.detach().clone() for layer in weight_layers(model)]
    assert all(layer.bias.abs().sum() > 0 for layer in weight_layers(model))
    initialize(model, "he_normal", 0.0)
    for layer, old_weight in zip(weight_layers(model), before):
        assert not torch.equal(layer.weight, old_weight)
        assert not layer.bias.any()


def test_initialize_leaves_batch_norm_and_prelu_alone() -> None:
    model = small_cnn(activation="prelu", batch_norm=True)
    initialize(model, "xavier_normal", 0.25)
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batch_norms) == 4
    for norm in batch_norms:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert not norm.bias.any()
    prelu_slopes = [p for n, p in model.named_parameters() if ".inner." in n]
    assert prelu_slopes and all(torch.equal(p, torch.full_like(p, 0.25)) for p in prelu_slopes)


def test_default_initializer_leaves_the_model_untouched() -> None:
    model = small_cnn()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    initialize(model, "default", 0.0)
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_unknown_initializer_is_rejected() -> None:
    with pytest.raises(UnknownComponentError, match="he_normal"):
        initialize(small_cnn(), "kaiming", 0.0)


def sgd_steps(model: nn.Module, steps: int) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def hidden_units_identical(model: nn.Module) -> bool:
    """True when, in every hidden conv layer, all output units carry the same weights and bias."""
    for layer in weight_layers(model.blocks):
        weight, bias = layer.weight.detach(), layer.bias.detach()
        scale = weight.abs().max().item() + 1e-12
        if not torch.allclose(weight, weight[:1].expand_as(weight), rtol=0, atol=1e-6 * scale):
            return False
        if not torch.allclose(bias, bias[:1].expand_as(bias), rtol=0, atol=1e-6 * scale):
            return False
    return True


def test_zero_init_does_not_break_symmetry_after_an_sgd_step() -> None:
    model = small_cnn()
    initialize(model, "zeros", 0.0)
    sgd_steps(model, steps=1)
    assert hidden_units_identical(model)


def test_zero_init_units_stay_identical_even_while_learning() -> None:
    # With sigmoid, zero weights still pass a signal (sigmoid(0) = 1/2), so the hidden weights do
    # change from the second step on; they change identically for every unit.
    model = small_cnn(activation="sigmoid")
    initialize(model, "zeros", 0.0)
    sgd_steps(model, steps=3)
    assert weight_layers(model.blocks)[-1].weight.abs().max() > 0
    assert hidden_units_identical(model)


def test_random_init_breaks_symmetry() -> None:
    # The control for the two tests above: the same check fails for a random initialization.
    torch.manual_seed(0)
    model = small_cnn()
    initialize(model, "he_normal", 0.0)
    sgd_steps(model, steps=1)
    assert not hidden_units_identical(model)


def test_registry_descriptions_and_names() -> None:
    expected = {"zeros", "small_random", "lecun_normal", "xavier_uniform", "xavier_normal", "he_normal",
                "he_uniform", "orthogonal", "default"}
    assert expected <= set(INITIALIZERS.names())
    assert all(entry.description.strip() for entry in INITIALIZERS)
    assert "LeCun / calibrated" in INITIALIZERS.entry("lecun_normal").description
