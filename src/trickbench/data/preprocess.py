"""Pre-processing (the seed's section 2): one transform applied to every batch, train and eval, after
augmentation.

Each entry is a factory ``fn(stats, device) -> transform`` where ``stats`` is the runtime stats dict
(:func:`trickbench.data.stats.load_stats`) and ``transform(x)`` maps an (N, C, H, W) batch in [0, 1] to
the network input of the same shape and dtype. Constants are moved to `device` once, in the factory.

Per-channel entries use the statistics of all training pixels of a channel (the convention for CNNs,
instead of the seed's per-feature ``np.mean(X, axis=0)``); the whitening entries work per feature on the
flattened image, as in the seed.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from trickbench.registry import Registry

# needs_whitening: the entry reads the D x D matrices of stats.npz, so params with stats.whitening: false
# refuse it at validation
PREPROCESSORS = Registry("preprocessing", extras=("needs_whitening",))

Transform = Callable[[Tensor], Tensor]


@contextmanager
def exact_float32(device_type: str) -> Iterator[None]:
    """Float32 matmuls in full float32 inside: no autocast, and on CUDA no TF32 (which the loop allows for
    the model when amp is off; its 10-bit products would put the whitening ~0.1 % off)."""
    precision = torch.get_float32_matmul_precision()
    if device_type == "cuda":
        torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        if device_type == "cuda":
            torch.set_float32_matmul_precision(precision)


def _tensor(stats: dict, key: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Tensor:
    try:
        value = stats[key]
    except KeyError:
        raise KeyError(f"pre-processing needs stats[{key!r}]; the runtime stats dict has "
                       f"{sorted(stats)} (whitening keys come from stats.npz)") from None
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.as_tensor(value, dtype=dtype, device=device)


def _channel_tensor(stats: dict, key: str, device: torch.device | str) -> Tensor:
    return _tensor(stats, key, device).reshape(1, -1, 1, 1)


def _check_channels(x: Tensor, constant: Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != constant.shape[1]:
        raise ValueError(f"{name}: batch of shape {tuple(x.shape)} does not have the "
                         f"{constant.shape[1]} channels of the training statistics")


@PREPROCESSORS.register("none", "identity: raw pixels in [0, 1]", needs_whitening=False)
def identity(stats: dict, device: torch.device | str) -> Transform:
    return lambda x: x


@PREPROCESSORS.register("zero_center", "subtract the per-channel mean of the training pixels", needs_whitening=False)
def zero_center(stats: dict, device: torch.device | str) -> Transform:
    mean = _channel_tensor(stats, "channel_mean", device)

    def transform(x: Tensor) -> Tensor:
        _check_channels(x, mean, "zero_center")
        return x - mean.to(x.dtype)

    return transform


@PREPROCESSORS.register("normalize", "per-channel (x - mean) / std over the training pixels",
                        needs_whitening=False)
def normalize(stats: dict, device: torch.device | str) -> Transform:
    mean = _channel_tensor(stats, "channel_mean", device)
    std = _channel_tensor(stats, "channel_std", device)
    inv_std = torch.where(std > 0, 1.0 / std.clamp_min(1e-12), torch.ones_like(std))  # constant channel: 1

    def transform(x: Tensor) -> Tensor:
        _check_channels(x, mean, "normalize")
        return (x - mean.to(x.dtype)) * inv_std.to(x.dtype)

    return transform


@PREPROCESSORS.register(
    "minmax",
    "per channel, map the training [min, max] linearly onto [-1, 1] (not clamped: other data may fall outside)",
    needs_whitening=False,
)
def minmax(stats: dict, device: torch.device | str) -> Transform:
    low = _channel_tensor(stats, "channel_min", device)
    high = _channel_tensor(stats, "channel_max", device)
    span = high - low
    scale = torch.where(span > 0, 2.0 / span.clamp_min(1e-12), torch.ones_like(span))

    def transform(x: Tensor) -> Tensor:
        _check_channels(x, low, "minmax")
        return (x - low.to(x.dtype)) * scale.to(x.dtype) - 1.0

    return transform


def _whitening(stats: dict, device: torch.device | str, matrix_key: str, name: str) -> Transform:
    """x_white = (x_flat - mu) @ W = x_flat @ W + b with b = -mu @ W, one addmm in float32."""
    if stats.get("whitening") is False:
        raise ValueError(f"{name}: the stats were computed without whitening matrices (stats.whitening: false)")
    mean = _tensor(stats, "feature_mean", device, torch.float64)
    matrix64 = _tensor(stats, matrix_key, device, torch.float64)
    d = mean.numel()
    if matrix64.shape != (d, d):
        raise ValueError(f"{name}: stats[{matrix_key!r}] has shape {tuple(matrix64.shape)}, "
                         f"expected ({d}, {d}) to match feature_mean")
    bias = (-(mean @ matrix64)).to(torch.float32)
    matrix = matrix64.to(torch.float32)
    del matrix64

    def transform(x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != d:
            raise ValueError(f"{name}: batch of shape {tuple(x.shape)} has {flat.shape[1]} features per "
                             f"image, the whitening statistics {d}; compute the stats at the network's "
                             f"input size")
        with exact_float32(x.device.type):  # a bf16 addmm would put ZCA ~1 % off
            return torch.addmm(bias, flat.float(), matrix).reshape(x.shape).to(x.dtype)

    return transform


@PREPROCESSORS.register(
    "pca_whiten",
    "PCA whitening of the flattened image: (x - mu) U / sqrt(S + eps), reshaped to (C, H, W) "
    "(channels then hold principal components, not pixels)",
    needs_whitening=True,
)
def pca_whiten(stats: dict, device: torch.device | str) -> Transform:
    return _whitening(stats, device, "pca_whitening", "pca_whiten")


@PREPROCESSORS.register(
    "zca_whiten",
    "ZCA whitening of the flattened image: (x - mu) U diag(1 / sqrt(S + eps)) U^T, stays in pixel space",
    needs_whitening=True,
)
def zca_whiten(stats: dict, device: torch.device | str) -> Transform:
    return _whitening(stats, device, "zca_whitening", "zca_whiten")


def build_preprocessor(name: str, stats: dict[str, Any], device: torch.device | str) -> Transform:
    """The transform of the named pre-processing (UnknownComponentError lists the valid names)."""
    return PREPROCESSORS.get(name)(stats, device)
