"""Activations against their definitions (reproduction.md section 2)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from trickbench.nn.activations import (
    ACTIVATIONS,
    Activation,
    PaperRReLU,
    activation_layers,
    make_activation,
    negative_slope,
    no_decay_parameter_names,
    prelu_parameters,
)
from trickbench.nn.models import build_model
from trickbench.registry import UnknownComponentError

PAPER_NAMES = ["relu", "leaky_relu_a100", "leaky_relu_a5.5", "prelu", "rrelu", "sigmoid", "tanh"]
RRELU_LOWER, RRELU_UPPER = 3.0, 8.0
KS_SAMPLES = 20_000


def training_slopes(layer: nn.Module, seed: int = 0, n: int = KS_SAMPLES) -> np.ndarray:
    """y / x on fresh negative inputs in training mode: the slope the layer applied to each element."""
    torch.manual_seed(seed)
    layer.train()
    x = -(torch.rand(n, dtype=torch.float64) + 0.1)
    return (layer(x) / x).numpy()


def reciprocal_uniform_cdf(slope: np.ndarray) -> np.ndarray:
    """CDF of 1/a with a ~ U(3, 8): P(1/a <= s) = P(a >= 1/s) = (8 - 1/s) / (8 - 3), clipped to [0, 1]."""
    return np.clip((RRELU_UPPER - 1.0 / slope) / (RRELU_UPPER - RRELU_LOWER), 0.0, 1.0)


def assert_slopes_follow_paper_rrelu(layer: nn.Module) -> None:
    slopes = training_slopes(layer)
    p_value = stats.kstest(slopes, reciprocal_uniform_cdf).pvalue
    assert p_value > 0.01, f"training slopes do not follow 1/U(3, 8): KS p = {p_value:.3g}"


def test_paper_rrelu_training_slopes_follow_reciprocal_uniform() -> None:
    assert_slopes_follow_paper_rrelu(make_activation("rrelu")(1))


def test_torch_rrelu_fails_the_paper_distribution_check() -> None:
    with pytest.raises(AssertionError, match="do not follow"):
        assert_slopes_follow_paper_rrelu(nn.RReLU(1.0 / 8.0, 1.0 / 3.0))
    with pytest.raises(AssertionError, match="do not follow"):
        assert_slopes_follow_paper_rrelu(make_activation("torch_rrelu")(1))


def test_paper_rrelu_mean_training_slope() -> None:
    # E[1/a] for a ~ U(3, 8) is ln(8/3) / 5.
    mean_slope = training_slopes(make_activation("rrelu")(1), seed=1).mean()
    assert mean_slope == pytest.approx(math.log(8.0 / 3.0) / 5.0, abs=0.002)


def test_paper_rrelu_draws_per_element_and_per_pass() -> None:
    layer = make_activation("rrelu")(1)
    first, second = training_slopes(layer, seed=2), training_slopes(layer, seed=3)
    assert len(np.unique(first)) > 0.99 * KS_SAMPLES  # a divisor per element
    layer.train()
    x = -torch.rand(1000, dtype=torch.float64) - 0.1
    assert (layer(x) != layer(x)).double().mean() > 0.99  # a new draw at every forward pass
    assert not np.array_equal(first, second)


def where_form_rrelu(x: torch.Tensor, training: bool) -> torch.Tensor:
    """The paper's RReLU written the obvious way (what PaperRReLU computed before it avoided torch.where)."""
    if training:
        divisor = torch.empty_like(x).uniform_(RRELU_LOWER, RRELU_UPPER)
        return torch.where(x >= 0, x, x / divisor)
    return torch.where(x >= 0, x, x * (2.0 / (RRELU_LOWER + RRELU_UPPER)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_paper_rrelu_equals_the_where_form_bit_for_bit(training: bool, channels_last: bool) -> None:
    x = torch.randn(4, 6, 5, 5)
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, float("nan")])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn_like(x)
    outputs, grads = [], []
    for forward in (lambda t: PaperRReLU(RRELU_LOWER, RRELU_UPPER).train(training)(t),
                    lambda t: where_form_rrelu(t, training)):
        torch.manual_seed(7)
        leaf = x.clone().requires_grad_()
        y = forward(leaf)
        y.backward(upstream)
        outputs.append(y.detach())
        grads.append(leaf.grad)
    assert torch.equal(outputs[0].nan_to_num(), outputs[1].nan_to_num())
    assert torch.equal(outputs[0].isnan(), outputs[1].isnan())  # NaN stays NaN: divergence is detected
    assert torch.equal(outputs[0].signbit(), outputs[1].signbit())
    if training:  # evaluation never back-propagates; there leaky_relu's subgradient at exactly 0 differs
        assert torch.equal(grads[0].nan_to_num(), grads[1].nan_to_num())


def test_paper_rrelu_eval_slope_is_exactly_two_elevenths() -> None:
    layer = make_activation("rrelu")(1).eval()
    x = -torch.rand(1000) * 10
    assert torch.equal(layer(x), x * (2.0 / 11.0))
    assert torch.equal(layer(x), layer(x))  # deterministic at test time
    assert negative_slope("rrelu") == pytest.approx(2.0 / 11.0)


@pytest.mark.parametrize("training", [True, False])
def test_paper_rrelu_leaves_positive_inputs_unchanged(training: bool) -> None:
    layer = PaperRReLU().train(training)
    x = torch.rand(1000) * 10 + 1e-3
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("name, slope", [("leaky_relu_a100", 1.0 / 100.0), ("leaky_relu_a5.5", 2.0 / 11.0)])
def test_leaky_relu_divisor_slopes(name: str, slope: float) -> None:
    layer = make_activation(name)(3)
    x = -torch.rand(1000, dtype=torch.float64) - 0.1
    torch.testing.assert_close(layer(x) / x, torch.full_like(x, slope))
    assert torch.equal(layer(-x), -x)
    assert negative_slope(name) == pytest.approx(slope)


def test_prelu_has_one_slope_per_channel_initialised_to_quarter() -> None:
    layer = make_activation("prelu")(16)
    (slopes,) = list(layer.parameters())
    assert slopes.shape == (16,)
    assert torch.equal(slopes.detach(), torch.full((16,), 0.25))
    # Each channel uses its own slope: set slope c = c / 100 and read it back from the output.
    with torch.no_grad():
        slopes.copy_(torch.arange(16) / 100.0)
    x = -torch.ones(2, 16, 3, 3)
    observed = (layer(x) / x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(observed, torch.arange(16) / 100.0)


def test_prelu_slopes_are_exempt_from_weight_decay() -> None:
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8, activation="prelu",
                        width=4, batch_norm=True, dropout=0.0)
    no_decay = set(no_decay_parameter_names(model))
    slopes = prelu_parameters(model)
    assert len(slopes) == len(activation_layers(model)) == 4
    slope_ids = {id(p) for p in slopes}
    slope_names = {name for name, p in model.named_parameters() if id(p) in slope_ids}
    assert slope_names and slope_names <= no_decay
    for name, parameter in model.named_parameters():
        is_conv_or_fc_weight = name.endswith("weight") and parameter.dim() > 1
        assert (name not in no_decay) == is_conv_or_fc_weight, name  # biases, BN and slopes: no decay


def test_activation_layers_finds_only_marked_modules() -> None:
    model = nn.Sequential(nn.Linear(3, 3), make_activation("relu")(3), nn.ReLU(), make_activation("tanh")(3))
    assert [name for name, _ in activation_layers(model)] == ["1", "3"]
    assert all(isinstance(layer, Activation) for _, layer in activation_layers(model))


def test_unknown_activation_name_is_rejected() -> None:
    with pytest.raises(UnknownComponentError, match="leaky_relu_a5.5"):
        make_activation("leaky")
    with pytest.raises(UnknownComponentError):
        negative_slope("leaky")


def test_registry_has_the_paper_names_and_descriptions() -> None:
    assert set(PAPER_NAMES) <= set(ACTIVATIONS.names())
    for entry in ACTIVATIONS:
        assert entry.description.strip(), entry.name
        assert 0.0 <= entry.extra["negative_slope"] < 1.0, entry.name


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_keeps_the_shape(name: str) -> None:
    layer = make_activation(name)(4)
    x = torch.randn(2, 4, 3, 3)
    assert layer(x).shape == x.shape
