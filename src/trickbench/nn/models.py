"""Networks by name: a small CPU CNN, the NiN of Lin et al. (as used by Xu et al.) and an NDSB network.

Every registry entry is ``fn(*, in_channels, num_classes, image_size, activation, width, batch_norm,
dropout) -> nn.Module`` and returns a :class:`BlockNetwork`: ``blocks`` (named feature stages, in
forward order) followed by ``head`` (the part that depends on the number of classes). Fine-tuning and
checkpoint transfer rely only on that split, never on a model's name.

Conventions shared by all three:

* ``activation`` is a factory from :func:`trickbench.nn.activations.make_activation`; it is called once
  per layer, and an activation follows every convolution (and every hidden fully connected layer).
* ``batch_norm=True`` puts a BatchNorm2d between each feature convolution and its activation (the
  convolution then has no bias). The NiN classifier convolution gets none: it produces the logits.
* ``dropout`` is a probability; 0 means no dropout layer at all.

NDSB network: Xu et al. (Table 2) give only its shape; the channel counts below are OUR
reconstruction (reproduction.md section 4, marked [reconstructed]). With width w (w = 32 is the
reference size):

    stage1  3x3 conv w,  3x3 conv w,  max pool 3/2        70 -> 35
    stage2  3x3 conv 2w, 3x3 conv 2w, max pool 3/2        35 -> 17
    split   branch "shallow": 2 x 3x3 conv 3w | branch "deep": 3 x 3x3 conv 3w,
            channel concat (6w), max pool 3/2             17 -> 8
    stage4  3x3 conv 8w, 3x3 conv 8w
    spp     spatial pyramid max pooling, levels 1, 2, 4 -> 21 * 8w features
    fc1, fc2  dropout -> fully connected 32w (1024 at w = 32) -> activation
    head    dropout -> fully connected num_classes

Pools use ceil mode (Caffe/CXXNET convention), which gives 70 -> 35 -> 17 -> 8 and, for NiN, 32 -> 16 -> 8.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable

import torch
from torch import nn

from trickbench.nn.activations import Activation, ActivationFactory, make_activation
from trickbench.errors import ParamsError
from trickbench.registry import Registry

MODELS = Registry("model", extras=("min_image_size",))
# fn(network: BlockNetwork) -> the name prefixes of the parameters fine-tuning trains (see apply_finetune)
FINETUNE_MODES = Registry("finetune_mode")

HEAD_PREFIX = "head."

NamedLayers = list[tuple[str, nn.Module]]

# NiN channel counts of Lin et al. relative to its main width 192.
NIN_WIDTH = 192


class BlockNetwork(nn.Module):
    """``head(blocks(x))``: named feature stages, then the class-count-dependent head.

    The head runs in float32 whatever the autocast context: its logits pick ensemble members through the
    validation loss, and bf16 logits carried about 3 significant digits of noise into it. It is a small
    part of the compute (one fully connected layer, or NiN's 1x1 convolution to the classes)."""

    def __init__(self, blocks: Iterable[tuple[str, nn.Module]], head: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(x)
        with torch.autocast(features.device.type, enabled=False):  # bf16 -> float32; float32, float64 stay
            return self.head(features.to(torch.promote_types(features.dtype, torch.float32)))


class ChannelConcat(nn.Module):
    """Runs parallel branches on the same input and concatenates their outputs along channels."""

    def __init__(self, branches: dict[str, nn.Module]):
        super().__init__()
        self.branches = nn.ModuleDict(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches.values()], dim=1)


class SpatialPyramidPool(nn.Module):
    """Max pools onto level x level grids and concatenates the flattened grids (He et al. 2014)."""

    def __init__(self, levels: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [nn.functional.adaptive_max_pool2d(x, level).flatten(1) for level in self.levels]
        return torch.cat(pooled, dim=1)

    def num_features(self, channels: int) -> int:
        return channels * sum(level * level for level in self.levels)


# --- building bricks -------------------------------------------------------------------------------

def activation_layer(activation: ActivationFactory, num_channels: int) -> Activation:
    """Builds one activation through the factory; wraps a bare module so it is still marked."""
    layer = activation(num_channels)
    return layer if isinstance(layer, Activation) else Activation("custom", layer)


def conv_unit(index: int, in_channels: int, out_channels: int, kernel_size: int,
              activation: ActivationFactory, batch_norm: bool) -> NamedLayers:
    """conv{index} -> [bn{index}] -> act{index}, 'same' padding."""
    layers: NamedLayers = [(f"conv{index}", nn.Conv2d(in_channels, out_channels, kernel_size,
                                                      padding=kernel_size // 2, bias=not batch_norm))]
    if batch_norm:
        layers.append((f"bn{index}", nn.BatchNorm2d(out_channels)))
    layers.append((f"act{index}", activation_layer(activation, out_channels)))
    return layers


def conv_stack(in_channels: int, out_channels: int, kernel_size: int, depth: int,
               activation: ActivationFactory, batch_norm: bool) -> NamedLayers:
    """``depth`` conv units of the same width and kernel, numbered from 1."""
    layers: NamedLayers = []
    for index in range(1, depth + 1):
        layers += conv_unit(index, in_channels if index == 1 else out_channels, out_channels,
                            kernel_size, activation, batch_norm)
    return layers


def dropout_layers(p: float) -> NamedLayers:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {p}")
    return [("dropout", nn.Dropout(p))] if p > 0 else []


def sequential(layers: NamedLayers) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def global_average_pool() -> nn.Sequential:
    return sequential([("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())])


def caffe_pool(kind: type[nn.Module]) -> nn.Module:
    """3x3 stride-2 pooling in ceil mode, as Caffe/CXXNET round: 32 -> 16 -> 8, 70 -> 35 -> 17 -> 8."""
    return kind(kernel_size=3, stride=2, ceil_mode=True)


def require_image_size(model: str, image_size: int) -> None:
    minimum = MODELS.entry(model).extra["min_image_size"]
    if image_size < minimum:
        raise ParamsError(f"train.model: {model!r} needs images of at least {minimum} px, the data has {image_size}")


def scaled(channels: int, width: int, reference: int) -> int:
    return max(1, round(channels * width / reference))


# --- the networks ----------------------------------------------------------------------------------

@MODELS.register("small_cnn", "CPU CNN: 2 x conv3x3-w, pool, conv3x3-2w, pool, conv3x3-4w, global average pool, "
                 "dropout, linear (width = w, channels of the first stage)", min_image_size=4)
def small_cnn(*, in_channels: int, num_classes: int, image_size: int, activation: ActivationFactory,
              width: int, batch_norm: bool, dropout: float) -> nn.Module:
    require_image_size("small_cnn", image_size)
    w = width
    blocks = [
        ("stage1", sequential(conv_stack(in_channels, w, 3, 2, activation, batch_norm)
                              + [("pool", nn.MaxPool2d(2))])),
        ("stage2", sequential(conv_stack(w, 2 * w, 3, 1, activation, batch_norm) + [("pool", nn.MaxPool2d(2))])),
        ("stage3", sequential(conv_stack(2 * w, 4 * w, 3, 1, activation, batch_norm))),
        ("pool", global_average_pool()),
    ]
    head = sequential(dropout_layers(dropout) + [("fc", nn.Linear(4 * w, num_classes))])
    return BlockNetwork(blocks, head)


def mlpconv(in_channels: int, channels: tuple[int, int, int], kernel_size: int,
            activation: ActivationFactory, batch_norm: bool) -> NamedLayers:
    """NiN's 'mlpconv' layer: a kxk convolution followed by two 1x1 convolutions."""
    first, second, third = channels
    return (conv_unit(1, in_channels, first, kernel_size, activation, batch_norm)
            + conv_unit(2, first, second, 1, activation, batch_norm)
            + conv_unit(3, second, third, 1, activation, batch_norm))


@MODELS.register("nin", "Network in Network (Lin et al.; Xu et al. Table 1): 3 mlpconv blocks, pools 3/2, "
                 "dropout, 1x1-classes conv + global average pool; width = main channel count (192 = paper, "
                 "160 and 96 scale with it)", min_image_size=8)
def nin(*, in_channels: int, num_classes: int, image_size: int, activation: ActivationFactory,
        width: int, batch_norm: bool, dropout: float) -> nn.Module:
    require_image_size("nin", image_size)
    c192 = width
    c160, c96 = scaled(160, width, NIN_WIDTH), scaled(96, width, NIN_WIDTH)
    blocks = [
        ("mlpconv1", sequential(mlpconv(in_channels, (c192, c160, c96), 5, activation, batch_norm)
                                + [("pool", caffe_pool(nn.MaxPool2d))] + dropout_layers(dropout))),
        # Xu et al. average-pool here (Lin et al. max-pool).
        ("mlpconv2", sequential(mlpconv(c96, (c192, c192, c192), 5, activation, batch_norm)
                                + [("pool", caffe_pool(nn.AvgPool2d))] + dropout_layers(dropout))),
        # The third mlpconv's last 1x1 convolution (to the classes) is the head below.
        ("mlpconv3", sequential(conv_unit(1, c192, c192, 3, activation, batch_norm)
                                + conv_unit(2, c192, c192, 1, activation, batch_norm))),
    ]
    # As in the Caffe model, the activation also follows the classifier convolution.
    head = sequential([("conv", nn.Conv2d(c192, num_classes, 1)),
                       ("act", activation_layer(activation, num_classes)),
                       ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())])
    return BlockNetwork(blocks, head)


def fully_connected(in_features: int, out_features: int, activation: ActivationFactory,
                    dropout: float) -> nn.Sequential:
    return sequential(dropout_layers(dropout) + [("fc", nn.Linear(in_features, out_features)),
                                                 ("act", activation_layer(activation, out_features))])


@MODELS.register("ndsb_net", "NDSB network (Xu et al. Table 2, channel counts reconstructed): VGG 3x3 stacks, "
                 "two-branch split + concat, spatial pyramid pooling 1/2/4, fc 32w -> fc 32w -> classes; "
                 "width = w, channels of the first stage (32 = reference, fc 1024)", min_image_size=32)
def ndsb_net(*, in_channels: int, num_classes: int, image_size: int, activation: ActivationFactory,
             width: int, batch_norm: bool, dropout: float) -> nn.Module:
    require_image_size("ndsb_net", image_size)
    w = width
    branches = {
        "shallow": sequential(conv_stack(2 * w, 3 * w, 3, 2, activation, batch_norm)),
        "deep": sequential(conv_stack(2 * w, 3 * w, 3, 3, activation, batch_norm)),
    }
    spp = SpatialPyramidPool((1, 2, 4))
    fc_width = 32 * w
    blocks = [
        ("stage1", sequential(conv_stack(in_channels, w, 3, 2, activation, batch_norm)
                              + [("pool", caffe_pool(nn.MaxPool2d))])),
        ("stage2", sequential(conv_stack(w, 2 * w, 3, 2, activation, batch_norm)
                              + [("pool", caffe_pool(nn.MaxPool2d))])),
        ("split", sequential([("concat", ChannelConcat(branches)), ("pool", caffe_pool(nn.MaxPool2d))])),
        ("stage4", sequential(conv_stack(6 * w, 8 * w, 3, 2, activation, batch_norm))),
        ("spp", spp),
        ("fc1", fully_connected(spp.num_features(8 * w), fc_width, activation, dropout)),
        ("fc2", fully_connected(fc_width, fc_width, activation, dropout)),
    ]
    head = sequential(dropout_layers(dropout) + [("fc", nn.Linear(fc_width, num_classes))])
    return BlockNetwork(blocks, head)


# --- public helpers --------------------------------------------------------------------------------

def build_model(name: str, *, activation: str | ActivationFactory, **kwargs: Any) -> nn.Module:
    """Builds registry model ``name``; ``activation`` may be a registry name or a factory."""
    factory = make_activation(activation) if isinstance(activation, str) else activation
    return MODELS.get(name)(activation=factory, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _require_block_network(model: nn.Module) -> BlockNetwork:
    if not isinstance(model, BlockNetwork):
        raise TypeError(f"expected a BlockNetwork built by trickbench.nn.models, got {type(model).__name__}")
    return model


def _last_block_with_parameters(model: BlockNetwork) -> str:
    names = [name for name, block in model.blocks.named_children() if any(True for _ in block.parameters())]
    return names[-1]


@FINETUNE_MODES.register("full", "train every parameter, starting from the checkpoint's")
def _full(network: BlockNetwork) -> list[str]:
    return [""]


@FINETUNE_MODES.register("top", "train the head and the last feature block with parameters (small_cnn: stage3, "
                         "nin: mlpconv3, ndsb_net: fc2); the other blocks frozen")
def _top(network: BlockNetwork) -> list[str]:
    return [HEAD_PREFIX, f"blocks.{_last_block_with_parameters(network)}."]


@FINETUNE_MODES.register("linear", "train the head only (the last Linear, or NiN's 1x1-classes convolution with its "
                         "activation): a linear classifier on frozen features")
def _linear(network: BlockNetwork) -> list[str]:
    return [HEAD_PREFIX]


def apply_finetune(model: nn.Module, mode: str) -> list[str]:
    """Sets requires_grad for fine-tuning mode `mode` (FINETUNE_MODES) and returns the names of the
    trainable parameters; an unknown mode is an UnknownComponentError listing the valid ones."""
    network = _require_block_network(model)
    trainable_prefixes = FINETUNE_MODES.get(mode)(network)
    trainable: list[str] = []
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(any(name.startswith(prefix) for prefix in trainable_prefixes))
        if parameter.requires_grad:
            trainable.append(name)
    return trainable


def load_backbone(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Loads every tensor whose name and shape match the model; returns the model's names left as built.

    With a different class count the head's tensors do not match and keep their fresh initialization.
    Raises ValueError when nothing matches (a checkpoint of another architecture).
    """
    own = model.state_dict()
    matching = {name: tensor for name, tensor in state_dict.items()
                if name in own and own[name].shape == tensor.shape}
    if not matching:
        raise ValueError("no tensor of the checkpoint matches the model's names and shapes; "
                         "was it saved from the same model and width?")
    model.load_state_dict(matching, strict=False)
    return [name for name in own if name not in matching]
