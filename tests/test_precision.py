"""Precision rules under bf16 autocast (GitHub issue 25), checked with CPU autocast: RReLU's divisors are
drawn in float32, PReLU computes with float32 slopes, the head's logits and the loss are float32."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import train_config
from trickbench.nn.activations import ACTIVATIONS, Float32PReLU, PaperRReLU, rrelu_divisors
from trickbench.nn.models import MODELS
from trickbench.train.loop import build_network
from trickbench.train.regularizers import regularization

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_rrelu_divisors_are_float32_and_stay_below_8_under_autocast() -> None:
    torch.manual_seed(0)
    with torch.autocast(**BF16):
        x = F.conv2d(torch.randn(64, 8, 32, 32), torch.randn(8, 8, 1, 1))  # a bf16 activation
        divisors = rrelu_divisors(x, 3.0, 8.0)
    assert x.dtype == torch.bfloat16 and divisors.dtype == torch.float32
    drawn = divisors[x < 0]
    assert drawn.numel() > 200_000 and 3.0 <= drawn.min() and drawn.max() < 8.0
    assert drawn.unique().numel() > 10_000  # not bf16's 160 values between 3 and 8
    # the control: the same draws rounded to bf16 (what a bf16 draw gives on CUDA) do reach 8.0
    assert (drawn.to(torch.bfloat16) == 8.0).any()


def test_rrelu_keeps_its_input_dtype_and_float32_results() -> None:
    layer = PaperRReLU().train()
    x = -torch.rand(10_000) - 0.1
    torch.manual_seed(1)
    plain = layer(x)
    torch.manual_seed(1)
    with torch.autocast(**BF16):
        low = layer(x.to(torch.bfloat16))
    assert plain.dtype == torch.float32 and low.dtype == torch.bfloat16
    ratio = x.to(torch.bfloat16).float() / low.float()  # the divisor, up to bf16 rounding of the output
    assert ratio.min() > 2.97 and ratio.max() < 8.04


def test_prelu_multiplies_by_float32_slopes_under_autocast() -> None:
    slope = 0.2513  # 0.25 in bf16: half a percent off, over an ulp of bf16
    torch.manual_seed(2)
    x = torch.randn(4, 3, 16, 16)
    with torch.autocast(**BF16):
        features = F.conv2d(x, torch.randn(3, 3, 1, 1))
        ours = Float32PReLU(3, init=slope)(features)
        torchs = nn.PReLU(3, init=slope)(features)
    expected = F.prelu(features.float(), torch.full((3,), slope)).to(torch.bfloat16)
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, expected)
    assert not torch.equal(torchs, expected)  # the control: torch's PReLU under autocast rounds the slope
    assert isinstance(ACTIVATIONS.get("prelu")(3), Float32PReLU)


@pytest.mark.parametrize("activation", ["relu", "prelu", "rrelu"])
@pytest.mark.parametrize("model_name", MODELS.names())
def test_the_head_and_the_loss_are_float32_under_autocast(model_name: str, activation: str) -> None:
    size = {"ndsb_net": 48}.get(model_name, 32)
    config = train_config(model=model_name, activation=activation, width=4)
    model = build_network(config, regularization(config), (size, size, 3), 10).train()
    features = {}

    def record(_module, _inputs, out) -> None:
        features["dtype"] = out.dtype

    model.blocks.register_forward_hook(record)
    with torch.autocast(**BF16):
        logits = model(torch.rand(4, 3, size, size))
        loss = F.cross_entropy(logits, torch.arange(4))
    assert features["dtype"] == torch.bfloat16  # the features ran in bf16: autocast was on
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
