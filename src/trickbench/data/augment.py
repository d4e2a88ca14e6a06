"""Batched data augmentation on the device (the seed's section 1).

A batch is a float tensor ``x`` of shape (N, C, H, W) with values in [0, 1] and C = 1 or 3. Every
registered augmentation has the signature ``fn(x, generator, stats) -> Tensor``:

* only batched tensor operations (no per-image Python loop, no PIL), so it runs where ``x`` lives;
* all randomness comes from ``generator`` (a ``torch.Generator`` on ``x.device``), drawn once per image
  per call (one call = one presentation of the batch; ``gaussian_noise``: once per pixel), so a run is
  reproducible and resumable from the generator's state;
* ``stats`` is the runtime statistics dict of :func:`trickbench.data.stats.load_stats`; only
  ``fancy_pca`` reads it (``eigenvalues``, ``eigenvectors``);
* the output has the input's shape and dtype and stays in [0, 1].

The number and order of random draws per call depend only on the batch shape, never on the data.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from trickbench.data.preprocess import exact_float32
from trickbench.registry import Registry

AUGMENTATIONS = Registry("augmentation")

FLIP_PROBABILITY = 0.5
CROP_MAX_PADDING = 4  # zero padding of `crop` for images of 32 px and more
COLOR_JITTER_RANGE = (0.6, 1.4)  # brightness, contrast and saturation factors
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as torchvision uses
HSV_POWER_RANGE = (0.25, 4.0)  # S and V are raised to a power drawn log-uniformly from here
HSV_SCALE_RANGE = (0.7, 1.4)
HSV_SHIFT_RANGE = (-0.1, 0.1)
HSV_HUE_SHIFT_RANGE = (-0.1, 0.1)  # hue in turns (1.0 = 360 degrees), wraps around
FANCY_PCA_ALPHA_STD = 0.1
ROTATION_DEGREES = 180.0  # rotate_scale draws an angle uniformly from [-ROTATION_DEGREES, ROTATION_DEGREES]
SCALE_RANGE = (0.9, 1.1)  # rotate_scale magnification (> 1 zooms in)
# "Tips and Tricks" §3 (rotated, noisy and contrast-changed images), at strengths that keep a CIFAR object
# recognisable: a small tilt, noise well below the pixels' spread (about 0.25), a moderate contrast change
SMALL_ROTATION_DEGREES = 15.0
NOISE_STD = 0.05  # of the [0, 1] pixel range
CONTRAST_RANGE = COLOR_JITTER_RANGE


# --------------------------------------------------------------------------------------- helpers
def _uniform(shape: Sequence[int], low: float, high: float, generator: torch.Generator,
             device: torch.device) -> Tensor:
    """Float32 uniform draws in [low, high) from `generator`."""
    return low + (high - low) * torch.rand(tuple(shape), generator=generator, device=device)


def _check_batch(x: Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected a batch of shape (N, C, H, W) with C in (1, 3), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor in [0, 1], got dtype {x.dtype}")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _gather_windows(x: Tensor, top: Tensor, left: Tensor, height: int, width: int) -> Tensor:
    """Per-image windows x[n, :, top[n]:top[n]+height, left[n]:left[n]+width], batched by indexing."""
    n, c = x.shape[:2]
    device = x.device
    rows = top.view(n, 1) + torch.arange(height, device=device)  # (N, height)
    cols = left.view(n, 1) + torch.arange(width, device=device)  # (N, width)
    return x[
        torch.arange(n, device=device).view(n, 1, 1, 1),
        torch.arange(c, device=device).view(1, c, 1, 1),
        rows.view(n, 1, height, 1),
        cols.view(n, 1, 1, width),
    ]


def crop_padding(height: int, width: int | None = None) -> int:
    """Zero padding of `crop`: 4 px for images of 32 px and more, max(1, size // 8) below.

    32x32 CIFAR -> 4, 28x28 MNIST -> 3, 8x8 digits -> 1 (4 px on an 8 px image would leave half of it
    black).
    """
    size = height if width is None else min(height, width)
    return min(CROP_MAX_PADDING, max(1, size // 8))


def _to_tensor(value: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.as_tensor(value, dtype=dtype, device=device)


# ------------------------------------------------------------------------------------------ flip
@AUGMENTATIONS.register("flip", "horizontal (left-right) flip of each image with probability 0.5")
def flip(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "flip")
    mask = torch.rand(x.shape[0], generator=generator, device=x.device) < FLIP_PROBABILITY
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


# ------------------------------------------------------------------------------------------ crop
@AUGMENTATIONS.register(
    "crop",
    "random translation: zero-pad by p = min(4, max(1, size // 8)) px (4 for 32x32) and take a random "
    "crop of the original size, offsets uniform in [0, 2p] per image",
)
def crop(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "crop")
    n, _, h, w = x.shape
    pad = crop_padding(h, w)
    padded = F.pad(x, (pad, pad, pad, pad))  # zeros (black)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=x.device)
    return _gather_windows(padded, offsets[:, 0], offsets[:, 1], h, w)


def crop_to(x: Tensor, size: int | Sequence[int], generator: torch.Generator) -> Tensor:
    """Training crop of the NDSB protocol: a random size x size window of each (larger) image.

    Offsets are uniform over all valid positions, drawn once per image. No padding: `size` must not
    exceed the image.
    """
    _check_batch(x, "crop_to")
    n, _, h, w = x.shape
    ch, cw = _pair(size)
    if ch > h or cw > w:
        raise ValueError(f"crop_to: crop size {(ch, cw)} exceeds image size {(h, w)}")
    top = torch.randint(0, h - ch + 1, (n,), generator=generator, device=x.device)
    left = torch.randint(0, w - cw + 1, (n,), generator=generator, device=x.device)
    return _gather_windows(x, top, left, ch, cw)


def center_crop(x: Tensor, size: int | Sequence[int]) -> Tensor:
    """Evaluation crop of the NDSB protocol: the central size x size window (top-left on odd margins)."""
    _check_batch(x, "center_crop")
    h, w = x.shape[-2:]
    ch, cw = _pair(size)
    if ch > h or cw > w:
        raise ValueError(f"center_crop: crop size {(ch, cw)} exceeds image size {(h, w)}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


# ---------------------------------------------------------------------------------- color jitter
def _gray(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of an RGB batch; a grey batch is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)  # scalar weights: no host-to-device copy per batch
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_color(x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor) -> Tensor:
    """Deterministic part of `color_jitter` with per-image factors of shape (N,), as torchvision does.

    brightness: x * b; contrast: blend with the image's mean luma, m + c (x - m); saturation: blend with
    the pixel's luma, g + s (x - g) (skipped for C = 1). Applied in this order, clamped to [0, 1] after
    each step.
    """
    shape = (-1, 1, 1, 1)
    x = (x * brightness.to(x.dtype).view(shape)).clamp(0, 1)
    x = adjust_contrast(x, contrast)
    if x.shape[1] == 3:
        gray = _gray(x)
        x = (gray + saturation.to(x.dtype).view(shape) * (x - gray)).clamp(0, 1)
    return x


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its mean luma m: m + factor (x - m), per-image factors of shape (N,), clamped
    to [0, 1]. Without clipping the image's standard deviation is multiplied by the factor."""
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor.to(x.dtype).view(-1, 1, 1, 1) * (x - mean)).clamp(0, 1)


@AUGMENTATIONS.register(
    "contrast",
    "contrast alone: each image blended with its mean luma by a factor uniform in [0.6, 1.4] per image "
    "(m + c (x - m), clamped to [0, 1]; brightness and colour kept)",
)
def contrast(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "contrast")
    return adjust_contrast(x, _uniform((x.shape[0],), *CONTRAST_RANGE, generator, x.device))


@AUGMENTATIONS.register(
    "color_jitter",
    "brightness, contrast and saturation each scaled by a factor uniform in [0.6, 1.4] per image "
    "(torchvision blends, fixed order, clamped to [0, 1]; no saturation for grey images)",
)
def color_jitter(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "color_jitter")
    factors = _uniform((x.shape[0], 3), *COLOR_JITTER_RANGE, generator, x.device)
    return adjust_color(x, factors[:, 0], factors[:, 1], factors[:, 2])


# ------------------------------------------------------------------------------------------- HSV
def rgb_to_hsv(x: Tensor) -> Tensor:
    """Batched RGB -> HSV, all components in [0, 1] (hue in turns; 0 for grey pixels)."""
    r, g, b = x.unbind(1)
    maxc = x.amax(1)
    minc = x.amin(1)
    delta = maxc - minc
    saturation = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                             torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    hue = torch.remainder(hue / 6.0, 1.0)
    return torch.stack([hue, saturation, maxc], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Batched HSV -> RGB (inverse of rgb_to_hsv): f(n) = V - V S max(0, min(k, 4 - k, 1)), k = (n + 6H) mod 6."""
    hue, saturation, value = (t.unsqueeze(1) for t in hsv.unbind(1))
    k = torch.remainder(torch.cat([5.0 + 6.0 * hue, 3.0 + 6.0 * hue, 1.0 + 6.0 * hue], 1), 6.0)  # R, G, B
    return value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0, 1)


def hsv_params(n: int, generator: torch.Generator, device: torch.device | str) -> dict[str, Tensor]:
    """One draw per image of every HSV-jitter quantity, each a float32 tensor of shape (n,).

    Powers are log-uniform on [0.25, 4] (log p uniform on [-ln 4, ln 4]) so that 1 is the median and
    p and 1/p are equally likely; scales and shifts are uniform. S and V get independent draws.
    """
    u = torch.rand((n, 7), generator=generator, device=device)
    lo, hi = math.log(HSV_POWER_RANGE[0]), math.log(HSV_POWER_RANGE[1])
    scale_lo, scale_hi = HSV_SCALE_RANGE
    shift_lo, shift_hi = HSV_SHIFT_RANGE
    hue_lo, hue_hi = HSV_HUE_SHIFT_RANGE
    return {
        "hue_shift": hue_lo + (hue_hi - hue_lo) * u[:, 0],
        "sat_power": torch.exp(lo + (hi - lo) * u[:, 1]),
        "sat_scale": scale_lo + (scale_hi - scale_lo) * u[:, 2],
        "sat_shift": shift_lo + (shift_hi - shift_lo) * u[:, 3],
        "val_power": torch.exp(lo + (hi - lo) * u[:, 4]),
        "val_scale": scale_lo + (scale_hi - scale_lo) * u[:, 5],
        "val_shift": shift_lo + (shift_hi - shift_lo) * u[:, 6],
    }


def hsv_jitter(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Deterministic part of `hsv` with per-image parameters of shape (N,) (see hsv_params).

    S' = clamp(S ** sat_power * sat_scale + sat_shift, 0, 1), likewise V'; H' = (H + hue_shift) mod 1.
    For C = 1 the image is V (a grey pixel has S = 0 and no hue), so only the V part applies.
    Computed in float32, returned in x's dtype, clamped to [0, 1].
    """
    shape = (-1, 1, 1)
    xf = x.float()

    def jitter(channel: Tensor, prefix: str) -> Tensor:
        power, scale, shift = (params[f"{prefix}_{k}"].float().view(shape) for k in ("power", "scale", "shift"))
        return (channel.clamp_min(0).pow(power) * scale + shift).clamp(0, 1)

    if x.shape[1] == 1:
        return jitter(xf[:, 0], "val").unsqueeze(1).to(x.dtype)
    hue, saturation, value = rgb_to_hsv(xf).unbind(1)
    hue = torch.remainder(hue + params["hue_shift"].float().view(shape), 1.0)
    out = hsv_to_rgb(torch.stack([hue, jitter(saturation, "sat"), jitter(value, "val")], 1))
    return out.clamp(0, 1).to(x.dtype)


@AUGMENTATIONS.register(
    "hsv",
    "HSV jitter per image: S and V raised to a power log-uniform in [0.25, 4], times a factor in "
    "[0.7, 1.4], plus a value in [-0.1, 0.1] (clamped to [0, 1]); hue shifted by [-0.1, 0.1] turns "
    "(wraps); grey images: V part only",
)
def hsv(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "hsv")
    return hsv_jitter(x, hsv_params(x.shape[0], generator, x.device))


# ------------------------------------------------------------------------------------- fancy PCA
def fancy_pca_offsets(alpha: Tensor, eigenvalues: Tensor, eigenvectors: Tensor) -> Tensor:
    """Per-image colour offsets (N, C): sum_i p_i alpha_i lambda_i with p_i the columns of `eigenvectors`."""
    return (alpha * eigenvalues.view(1, -1)) @ eigenvectors.T


@AUGMENTATIONS.register(
    "fancy_pca",
    "AlexNet fancy PCA: add sum_i p_i alpha_i lambda_i to every pixel, alpha_i ~ N(0, 0.1) once per image, "
    "p_i, lambda_i eigenvectors/eigenvalues of the training pixels' CxC covariance ([0, 1] scale); clamped",
)
def fancy_pca(x: Tensor, generator: torch.Generator, stats: dict) -> Tensor:
    _check_batch(x, "fancy_pca")
    n, c = x.shape[:2]
    try:
        eigenvalues = _to_tensor(stats["eigenvalues"], x.device)
        eigenvectors = _to_tensor(stats["eigenvectors"], x.device)
    except (KeyError, TypeError):
        raise KeyError("fancy_pca needs stats['eigenvalues'] and stats['eigenvectors'] "
                       "(the runtime dict of trickbench.data.stats.load_stats)") from None
    if eigenvalues.shape != (c,) or eigenvectors.shape != (c, c):
        raise ValueError(f"fancy_pca: stats eigenvalues {tuple(eigenvalues.shape)} / eigenvectors "
                         f"{tuple(eigenvectors.shape)} do not match {c} image channels")
    alpha = FANCY_PCA_ALPHA_STD * torch.randn((n, c), generator=generator, device=x.device)
    with torch.autocast(x.device.type, enabled=False):  # float32 offsets under any autocast context
        offsets = fancy_pca_offsets(alpha, eigenvalues, eigenvectors)
    return (x + offsets.to(x.dtype).view(n, c, 1, 1)).clamp(0, 1)


# ------------------------------------------------------------------------------ rotate and scale
def rotate_scale_by(x: Tensor, angles: Tensor, scales: Tensor) -> Tensor:
    """Rotate each image by angles[n] degrees (counter-clockwise as displayed) about its centre and
    magnify by scales[n], in one affine_grid + grid_sample (bilinear).

    Samples that fall outside the image take the nearest border pixel (padding_mode="border"), which is
    the background for centred NDSB cut-outs on white. Bilinear interpolation is a convex combination,
    so values stay in [0, 1] without clamping. Aspect ratio is respected for non-square images.
    """
    n, c, h, w = x.shape
    radians = torch.deg2rad(angles.float())
    cos = torch.cos(radians) / scales.float()
    sin = torch.sin(radians) / scales.float()
    # affine_grid maps output to input coordinates normalised to [-1, 1] per axis; rotating in pixel
    # units needs the h/w factors on the off-diagonal.
    theta = torch.stack(
        [torch.stack([cos, -sin * (h / w), torch.zeros_like(cos)], 1),
         torch.stack([sin * (w / h), cos, torch.zeros_like(cos)], 1)], 1
    )
    with exact_float32(x.device.type):  # a bf16 grid samples ~0.15 px off at 80 px
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(x.dtype)


@AUGMENTATIONS.register(
    "rotate_scale",
    "random rotation uniform in [-180, 180] degrees and magnification uniform in [0.9, 1.1] per image "
    "(bilinear, border pixels fill the corners)",
)
def rotate_scale(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "rotate_scale")
    u = torch.rand((x.shape[0], 2), generator=generator, device=x.device)
    angles = ROTATION_DEGREES * (2.0 * u[:, 0] - 1.0)
    scales = SCALE_RANGE[0] + (SCALE_RANGE[1] - SCALE_RANGE[0]) * u[:, 1]
    return rotate_scale_by(x, angles, scales)


@AUGMENTATIONS.register(
    "rotation",
    "small random rotation uniform in [-15, 15] degrees per image, no magnification (bilinear, border "
    "pixels fill the corners)",
)
def rotation(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    _check_batch(x, "rotation")
    angles = _uniform((x.shape[0],), -SMALL_ROTATION_DEGREES, SMALL_ROTATION_DEGREES, generator, x.device)
    return rotate_scale_by(x, angles, torch.ones_like(angles))


# ----------------------------------------------------------------------------------------- noise
@AUGMENTATIONS.register(
    "gaussian_noise",
    "additive Gaussian noise N(0, 0.05²) drawn per pixel and channel on the [0, 1] pixels, before "
    "pre-processing (clamped to [0, 1])",
)
def gaussian_noise(x: Tensor, generator: torch.Generator, stats: dict | None = None) -> Tensor:
    # On the [0, 1] pixels like every other entry, so the strength is the same whatever the
    # pre-processing (after `normalize` it is 0.05 / the channel's std, about 0.2 on CIFAR-10)
    _check_batch(x, "gaussian_noise")
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return (x + NOISE_STD * noise.to(x.dtype)).clamp(0, 1)


# ------------------------------------------------------------------------------------ composition
def apply_augmentations(x: Tensor, names: Sequence[str], generator: torch.Generator,
                        stats: dict | None = None) -> Tensor:
    """Apply the named augmentations in the given order (an unknown name raises UnknownComponentError)."""
    fns = [AUGMENTATIONS.get(name) for name in names]  # fail on a bad name before any work
    for fn in fns:
        x = fn(x, generator, stats if stats is not None else {})
    return x
