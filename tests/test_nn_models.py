"""Networks against reproduction.md section 4, fine-tuning and checkpoint transfer."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from trickbench.nn.activations import Activation, activation_layers
from trickbench.nn.models import (
    MODELS,
    apply_finetune,
    build_model,
    count_parameters,
    load_backbone,
)
from trickbench.registry import UnknownComponentError

SMALL = dict(in_channels=1, num_classes=10, image_size=8, width=4)
CONFIGS: dict[str, dict[str, Any]] = {  # small variants of each model, fast on a CPU
    "small_cnn": dict(in_channels=1, num_classes=10, image_size=8, width=4),
    "nin": dict(in_channels=3, num_classes=10, image_size=32, width=24),
    "ndsb_net": dict(in_channels=1, num_classes=121, image_size=32, width=4),
}
TOP_BLOCK = {"small_cnn": "blocks.stage3.", "nin": "blocks.mlpconv3.", "ndsb_net": "blocks.fc2."}


def build(name: str, activation: str = "relu", batch_norm: bool = False, dropout: float = 0.5,
          **overrides: Any) -> nn.Module:
    config = {**CONFIGS[name], **overrides}
    return build_model(name, activation=activation, batch_norm=batch_norm, dropout=dropout, **config)


def random_input(name: str, batch: int = 2, **overrides: Any) -> torch.Tensor:
    config = {**CONFIGS[name], **overrides}
    return torch.randn(batch, config["in_channels"], config["image_size"], config["image_size"])


def forward_call_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """(kind, name) of every conv, linear, batch-norm and activation in the order the forward pass calls them."""
    kinds = {nn.Conv2d: "weight", nn.Linear: "weight", nn.BatchNorm2d: "norm", Activation: "act"}
    calls: list[tuple[str, str]] = []
    handles = []
    for name, module in model.named_modules():
        kind = kinds.get(type(module))
        if kind:
            handles.append(module.register_forward_hook(
                lambda _m, _i, _o, kind=kind, name=name: calls.append((kind, name))))
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return calls


def test_nin_has_the_paper_parameter_count() -> None:
    model = build("nin", width=192)
    assert count_parameters(model) == 966_986
    assert not any(isinstance(m, (nn.Linear, nn.BatchNorm2d)) for m in model.modules())


def test_nin_shapes_and_pooling() -> None:
    model = build("nin", width=192).eval()
    x = random_input("nin")
    with torch.no_grad():
        after_block1 = model.blocks.mlpconv1(x)
        after_block2 = model.blocks.mlpconv2(after_block1)
        logits = model(x)
    assert after_block1.shape == (2, 96, 16, 16)
    assert after_block2.shape == (2, 192, 8, 8)
    assert logits.shape == (2, 10)
    assert isinstance(model.blocks.mlpconv1.pool, nn.MaxPool2d)
    assert isinstance(model.blocks.mlpconv2.pool, nn.AvgPool2d)


def test_nin_width_scales_all_channel_counts() -> None:
    model = build("nin", width=48)
    first_block = [m.out_channels for m in model.blocks.mlpconv1.modules() if isinstance(m, nn.Conv2d)]
    assert first_block == [48, 40, 24]  # 192, 160, 96 scaled by 48/192


@pytest.mark.parametrize("dropout, expected", [(0.5, 2), (0.0, 0)])
def test_nin_dropout_after_the_first_two_blocks(dropout: float, expected: int) -> None:
    model = build("nin", dropout=dropout)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == expected and all(d.p == dropout for d in dropouts)


@pytest.mark.parametrize("name, expected_activations", [("small_cnn", 4), ("nin", 9), ("ndsb_net", 13)])
def test_an_activation_follows_every_convolution(name: str, expected_activations: int) -> None:
    model = build(name)
    calls = forward_call_order(model, random_input(name))
    kinds = [kind for kind, _ in calls]
    activations = [call_name for kind, call_name in calls if kind == "act"]
    assert len(activations) == expected_activations
    # Every weight layer except the final Linear classifier is directly followed by an activation.
    for index, kind in enumerate(kinds):
        if kind == "weight" and not calls[index][1].startswith("head.fc"):
            assert kinds[index + 1] == "act", calls[index]
    # activation_layers() lists them in the order the forward pass uses them.
    assert [layer_name for layer_name, _ in activation_layers(model)] == activations


@pytest.mark.parametrize("name", ["small_cnn", "nin", "ndsb_net"])
def test_batch_norm_sits_between_convolution_and_activation(name: str) -> None:
    model = build(name, batch_norm=True)
    kinds = [kind for kind, _ in forward_call_order(model, random_input(name))]
    norms = kinds.count("norm")
    assert norms > 0
    for i, kind in enumerate(kinds):
        if kind == "norm":
            assert kinds[i - 1] == "weight" and kinds[i + 1] == "act"
    convs = [m for m in model.blocks.modules() if isinstance(m, nn.Conv2d)]
    assert norms == len(convs) and all(conv.bias is None for conv in convs)


@pytest.mark.parametrize("in_channels, image_size", [(1, 8), (3, 32)])
def test_small_cnn_output_shape(in_channels: int, image_size: int) -> None:
    model = build("small_cnn", in_channels=in_channels, image_size=image_size, width=16)
    x = random_input("small_cnn", batch=5, in_channels=in_channels, image_size=image_size)
    assert model(x).shape == (5, 10)


def test_ndsb_net_output_shape_on_70_pixel_crops() -> None:
    model = build("ndsb_net", activation="prelu", width=32, image_size=70).eval()
    x = random_input("ndsb_net", image_size=70)
    with torch.no_grad():
        assert model.blocks.split(model.blocks.stage2(model.blocks.stage1(x))).shape == (2, 192, 8, 8)
        assert model(x).shape == (2, 121)
    assert model.blocks.fc1.fc.out_features == 1024


def test_ndsb_net_rejects_images_too_small_for_the_pyramid() -> None:
    with pytest.raises(ValueError, match="at least 32 px"):
        build("ndsb_net", image_size=16)


@pytest.mark.parametrize("name", ["small_cnn", "nin", "ndsb_net"])
@pytest.mark.parametrize("mode", ["full", "linear", "top"])
def test_apply_finetune_freezes_exactly_what_it_reports(name: str, mode: str) -> None:
    model = build(name, activation="prelu")
    trainable = apply_finetune(model, mode)
    all_names = [n for n, _ in model.named_parameters()]
    assert trainable == [n for n, p in model.named_parameters() if p.requires_grad]
    head = [n for n in all_names if n.startswith("head.")]
    expected = {"full": all_names, "linear": head,
                "top": [n for n in all_names if n.startswith(("head.", TOP_BLOCK[name]))]}[mode]
    assert trainable == expected
    assert any(n.endswith("weight") for n in head)
    # Frozen parameters receive no gradient.
    model(random_input(name)).sum().backward()
    for parameter_name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == (parameter_name in trainable), parameter_name
    assert count_parameters(model, trainable_only=True) == sum(
        p.numel() for n, p in model.named_parameters() if n in trainable)


def test_apply_finetune_rejects_unknown_mode() -> None:
    with pytest.raises(UnknownComponentError, match="unknown finetune_mode 'head'; valid names: full, top, linear"):
        apply_finetune(build("small_cnn"), "head")


def test_nin_linear_head_is_the_classifier_convolution() -> None:
    model = build("nin", activation="prelu")
    assert apply_finetune(model, "linear") == ["head.conv.weight", "head.conv.bias", "head.act.inner.weight"]


@pytest.mark.parametrize("name", ["small_cnn", "nin", "ndsb_net"])
def test_load_backbone_skips_the_head_when_class_counts_differ(name: str) -> None:
    torch.manual_seed(0)
    source = build(name, activation="prelu")
    target = build(name, activation="prelu", num_classes=7)
    skipped = load_backbone(target, source.state_dict())
    assert skipped and all(n.startswith("head.") for n in skipped)
    source_state = source.state_dict()
    for tensor_name, tensor in target.state_dict().items():
        assert torch.equal(tensor, source_state[tensor_name]) == (tensor_name not in skipped), tensor_name


def test_load_backbone_loads_everything_when_shapes_match() -> None:
    source, target = build("nin"), build("nin")
    assert load_backbone(target, source.state_dict()) == []
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_load_backbone_rejects_another_architecture() -> None:
    with pytest.raises(ValueError, match="no tensor"):
        load_backbone(build("small_cnn"), build("nin").state_dict())


def test_unknown_model_name_is_rejected() -> None:
    with pytest.raises(UnknownComponentError, match="nin"):
        build_model("vgg", activation="relu", batch_norm=False, dropout=0.0, **SMALL)


def test_registry_descriptions_and_names() -> None:
    assert {"small_cnn", "nin", "ndsb_net"} <= set(MODELS.names())
    for entry in MODELS:
        assert entry.description.strip() and "width" in entry.description, entry.name
