"""Batched augmentations checked against their definitions on fresh random inputs."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trickbench.data import augment as A
from trickbench.data.augment import AUGMENTATIONS, apply_augmentations
from trickbench.registry import UnknownComponentError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(n: int, c: int = 3, h: int = 8, w: int = 8, seed: int = 1234) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=gen(seed))


def random_fancy_stats(c: int = 3, seed: int = 7) -> dict:
    g = gen(seed)
    q, _ = torch.linalg.qr(torch.randn((c, c), generator=g, dtype=torch.float64))
    return {"eigenvectors": q.float(), "eigenvalues": torch.tensor([0.2, 0.05, 0.01][:c])}


STATS = random_fancy_stats()


# ------------------------------------------------------------------------------------- registry
def test_the_registry_holds_exactly_the_augmentations_tested_here():
    assert set(AUGMENTATIONS.names()) == {"flip", "crop", "color_jitter", "hsv", "fancy_pca", "rotate_scale",
                                          "rotation", "gaussian_noise", "contrast"}


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_augmentation_contract(name, channels):
    x = rand_images(16, channels, 10, 12)
    stats = STATS if channels == 3 else random_fancy_stats(1)
    fn = AUGMENTATIONS.get(name)
    out = fn(x, gen(5), stats)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, fn(x, gen(5), stats)), "same seed must give the same output"
    assert not torch.equal(out, fn(x, gen(6), stats)), "another seed must give another output"
    # the generator advances: two presentations of the same batch differ
    g = gen(5)
    assert not torch.equal(fn(x, g, stats), fn(x, g, stats))


def test_apply_augmentations_order_and_unknown():
    x = rand_images(8)
    g1, g2 = gen(3), gen(3)
    expected = A.crop(A.flip(x, g1, {}), g1, {})
    assert torch.equal(apply_augmentations(x, ["flip", "crop"], g2, {}), expected)
    assert torch.equal(apply_augmentations(x, [], gen(0), {}), x)
    with pytest.raises(UnknownComponentError):
        apply_augmentations(x, ["flip", "nope"], gen(0), {})


# ------------------------------------------------------------------------------------------ flip
def test_flip_each_image_identical_or_mirrored():
    x = rand_images(2000, 3, 4, 5)
    out = A.flip(x, gen(11), {})
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())
    frac = mirrored.float().mean().item()
    assert abs(frac - 0.5) < 0.05  # 5 sigma is ~0.056 for n=2000


# ------------------------------------------------------------------------------------------ crop
@pytest.mark.parametrize("size,pad", [(8, 1), (28, 3), (32, 4), (70, 4)])
def test_crop_padding(size, pad):
    assert A.crop_padding(size, size) == pad


def test_crop_is_shifted_window_of_zero_padded_input():
    n, h, w = 400, 32, 32
    pad = A.crop_padding(h, w)
    x = rand_images(n, 3, h, w) * 0.9 + 0.05  # no zeros in the input: the padding is recognisable
    out = A.crop(x, gen(2), {})
    assert out.shape == x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (N, C, 2p+1, 2p+1, H, W)
    match = (windows == out[:, :, None, None]).flatten(4).all(-1).all(1)  # (N, 2p+1, 2p+1)
    assert bool((match.flatten(1).sum(1) == 1).all()), "each output must be exactly one window"
    offsets = match.flatten(1).float().argmax(1)
    counts = torch.bincount(offsets, minlength=(2 * pad + 1) ** 2)
    assert int((counts > 0).sum()) > 0.9 * (2 * pad + 1) ** 2  # offsets spread over the whole range


def test_crop_to_and_center_crop():
    x = rand_images(50, 1, 20, 24)
    out = A.crop_to(x, 16, gen(4))
    assert out.shape == (50, 1, 16, 16)
    windows = x.unfold(2, 16, 1).unfold(3, 16, 1)  # (N, 1, 5, 9, 16, 16)
    match = (windows == out[:, :, None, None]).flatten(4).all(-1).all(1)
    assert bool((match.flatten(1).sum(1) == 1).all())
    assert len(set(match.flatten(1).float().argmax(1).tolist())) > 10
    centre = A.center_crop(x, (16, 20))
    assert torch.equal(centre, x[:, :, 2:18, 2:22])
    assert torch.equal(A.center_crop(x, 16), x[:, :, 2:18, 4:20])
    with pytest.raises(ValueError):
        A.crop_to(x, 21, gen(0))
    with pytest.raises(ValueError):
        A.center_crop(x, 25)


# ---------------------------------------------------------------------------------- color jitter
def test_adjust_color_definitions():
    x = rand_images(6)
    ones = torch.ones(6)
    assert torch.allclose(A.adjust_color(x, ones, ones, ones), x, atol=1e-6)
    gray = A.adjust_color(x, ones, ones, torch.zeros(6))
    assert torch.allclose(gray, gray[:, :1].expand_as(gray), atol=1e-6)
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray[:, :1], luma, atol=1e-6)
    flat = A.adjust_color(x, ones, torch.zeros(6), ones)
    assert torch.allclose(flat, luma.mean((1, 2, 3), keepdim=True).expand_as(x), atol=1e-6)
    half = A.adjust_color(x * 0.5, 2 * ones, ones, ones)
    assert torch.allclose(half, x, atol=1e-6)


def test_color_jitter_one_draw_per_image():
    # a constant grey image stays a constant grey image (brightness only acts; contrast/saturation neutral)
    levels = torch.linspace(0.2, 0.6, 64)
    x = levels.view(-1, 1, 1, 1).expand(64, 3, 5, 5).clone()
    out = A.color_jitter(x, gen(8), {})
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))
    ratio = out[:, 0, 0, 0] / levels
    assert ratio.min() >= 0.6 - 1e-5 and ratio.max() <= 1.4 + 1e-5
    assert ratio.std() > 0.1


# ------------------------------------------------------------------------------------------- HSV
def test_rgb_hsv_round_trip_and_known_values():
    x = rand_images(32, 3, 6, 6)
    x[0] = 0.0  # black
    x[1] = 0.5  # grey
    assert torch.allclose(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-6)
    hsv = A.rgb_to_hsv(x)
    assert hsv.min() >= 0 and hsv.max() <= 1
    colours = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.25, 0.25]]).view(5, 3, 1, 1)
    expected = torch.tensor([[0, 1, 1], [1 / 3, 1, 1], [2 / 3, 1, 1], [1 / 6, 1, 1], [0, 0.5, 0.5]])
    assert torch.allclose(A.rgb_to_hsv(colours).flatten(1), expected, atol=1e-6)


def neutral_params(n: int, **overrides) -> dict[str, torch.Tensor]:
    params = {"hue_shift": 0.0, "sat_power": 1.0, "sat_scale": 1.0, "sat_shift": 0.0,
              "val_power": 1.0, "val_scale": 1.0, "val_shift": 0.0}
    params.update(overrides)
    return {k: torch.full((n,), float(v)) for k, v in params.items()}


def test_hsv_jitter_definitions():
    x = rand_images(16)
    assert torch.allclose(A.hsv_jitter(x, neutral_params(16)), x, atol=1e-6)
    # hue is a rotation: +h then -h is the identity, and +1/3 turns red into green
    there = A.hsv_jitter(x, neutral_params(16, hue_shift=0.3))
    assert not torch.allclose(there, x, atol=1e-2)
    assert torch.allclose(A.hsv_jitter(there, neutral_params(16, hue_shift=-0.3)), x, atol=1e-5)
    red = torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)
    green = A.hsv_jitter(red, neutral_params(1, hue_shift=1 / 3))
    assert torch.allclose(green.flatten(), torch.tensor([0.0, 1, 0]), atol=1e-5)
    # V: power, then scale, then shift
    grey = torch.full((1, 3, 2, 2), 0.5)
    out = A.hsv_jitter(grey, neutral_params(1, val_power=2.0, val_scale=1.2, val_shift=0.05))
    assert torch.allclose(out, torch.full_like(grey, 0.25 * 1.2 + 0.05), atol=1e-6)
    # S: (1, 0.5, 0.5) has S = 0.5, V = 1; S ** 2 = 0.25 gives (1, 0.75, 0.75)
    pink = torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1)
    out = A.hsv_jitter(pink, neutral_params(1, sat_power=2.0))
    assert torch.allclose(out.flatten(), torch.tensor([1.0, 0.75, 0.75]), atol=1e-6)
    # grey images: V part only
    g1 = torch.full((1, 1, 2, 2), 0.5)
    out = A.hsv_jitter(g1, neutral_params(1, val_power=2.0, hue_shift=0.5, sat_scale=0.0))
    assert torch.allclose(out, torch.full_like(g1, 0.25))


def test_hsv_params_ranges():
    p = A.hsv_params(20000, gen(9), "cpu")
    for key in ("sat_power", "val_power"):
        assert p[key].min() >= 0.25 - 1e-6 and p[key].max() <= 4 + 1e-6
        assert abs(p[key].median().item() - 1.0) < 0.05  # log-uniform: median 1
        assert abs(p[key].log().mean().item()) < 0.03
        assert (p[key] < 0.35).any() and (p[key] > 3.5).any()
    for key in ("sat_scale", "val_scale"):
        assert p[key].min() >= 0.7 and p[key].max() <= 1.4 and abs(p[key].mean().item() - 1.05) < 0.01
    for key in ("sat_shift", "val_shift", "hue_shift"):
        assert p[key].min() >= -0.1 and p[key].max() <= 0.1 and abs(p[key].mean().item()) < 0.005
    # independent draws for the seven quantities
    corr = torch.corrcoef(torch.stack(list(p.values())))
    assert (corr - torch.eye(7)).abs().max() < 0.05


def test_hsv_one_draw_per_image():
    colours = torch.rand((64, 3, 1, 1), generator=gen(3)) * 0.8 + 0.1
    x = colours.expand(64, 3, 6, 7).clone()
    out = A.hsv(x, gen(4), {})
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-6), "constant colour stays constant"
    assert (out[:, :, 0, 0] - colours[:, :, 0, 0]).abs().max() > 0.1
    grey = torch.full((64, 1, 4, 4), 0.5)
    out = A.hsv(grey, gen(4), {})
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))
    assert out[:, 0, 0, 0].unique().numel() > 50  # different images, different draws


# ------------------------------------------------------------------------------------- fancy PCA
def test_fancy_pca_offsets_constant_per_image_and_alpha_distribution():
    n = 20000
    x = torch.full((n, 3, 3, 3), 0.5)  # mid-grey: offsets (|.| < 0.1) never clamp
    out = A.fancy_pca(x, gen(21), STATS)
    offsets = out - x
    per_image = offsets[:, :, :1, :1]
    assert torch.allclose(offsets, per_image.expand_as(offsets), atol=1e-7), "one offset per image"
    per_image = per_image.flatten(1).double()  # (N, 3)
    assert per_image.abs().max() < 0.45
    assert (per_image[1:] - per_image[:-1]).abs().sum(1).min() > 0, "offsets differ between images"
    # recover alpha: offset = P (alpha * lambda)  =>  alpha = (P^T offset) / lambda
    vectors = STATS["eigenvectors"].double()
    values = STATS["eigenvalues"].double()
    alpha = (per_image @ vectors) / values
    assert torch.allclose(alpha.std(0), torch.full((3,), 0.1, dtype=torch.float64), rtol=0.03)
    assert alpha.mean(0).abs().max() < 0.005
    corr = torch.corrcoef(alpha.T)
    assert (corr - torch.eye(3, dtype=torch.float64)).abs().max() < 0.05


def test_fancy_pca_clamps_and_checks_stats():
    x = torch.ones((8, 3, 2, 2))
    big = {"eigenvectors": torch.eye(3), "eigenvalues": torch.full((3,), 50.0)}
    out = A.fancy_pca(x, gen(0), big)
    assert out.min() >= 0 and out.max() <= 1 and (out < 1).any()
    with pytest.raises(KeyError):
        A.fancy_pca(x, gen(0), {})
    with pytest.raises(ValueError):
        A.fancy_pca(torch.ones((2, 1, 2, 2)), gen(0), STATS)
    # stats from JSON (lists) work too
    as_lists = {k: v.tolist() for k, v in STATS.items()}
    assert torch.equal(A.fancy_pca(x * 0.5, gen(1), as_lists), A.fancy_pca(x * 0.5, gen(1), STATS))


# ---------------------------------------------------------------------------------- rotate/scale
def test_rotate_scale_constant_image_and_shape():
    x = torch.full((32, 1, 17, 13), 0.7)
    out = A.rotate_scale(x, gen(1), {})
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-6)
    white_bg = torch.ones((4, 1, 16, 16))
    white_bg[:, :, 6:10, 6:10] = 0.0  # dark centred object on white
    out = A.rotate_scale(white_bg, gen(2), {})
    assert torch.allclose(out[:, :, 0, 0], torch.ones(4, 1)), "corners are filled with the border (white)"


def test_rotate_scale_by_definitions():
    x = rand_images(4, 3, 9, 9)
    zeros, ones = torch.zeros(4), torch.ones(4)
    assert torch.allclose(A.rotate_scale_by(x, zeros, ones), x, atol=1e-6)
    assert torch.allclose(A.rotate_scale_by(x, torch.full((4,), 90.0), ones), torch.rot90(x, 1, (-2, -1)),
                          atol=1e-5)
    y = rand_images(4, 1, 6, 10)
    assert torch.allclose(A.rotate_scale_by(y, torch.full((4,), 180.0), torch.ones(4)), y.flip(-1, -2),
                          atol=1e-5)
    # non-square images rotate in pixel units: the central square turns like a square image
    wide = rand_images(4, 1, 6, 10)
    turned = A.rotate_scale_by(wide, torch.full((4,), 90.0), ones)
    assert torch.allclose(turned[..., 2:8], torch.rot90(wide[..., 2:8], 1, (-2, -1)), atol=1e-5)
    # magnification 2 about the centre: the centre pixel of an odd image is unchanged
    zoom = A.rotate_scale_by(x, zeros, 2 * ones)
    assert torch.allclose(zoom[..., 4, 4], x[..., 4, 4], atol=1e-6)
    assert not torch.allclose(zoom, x, atol=1e-2)


def test_rotate_scale_draw_ranges(monkeypatch):
    seen = {}

    def spy(x, angles, scales):
        seen["angles"], seen["scales"] = angles, scales
        return x

    monkeypatch.setattr(A, "rotate_scale_by", spy)
    A.rotate_scale(torch.zeros((5000, 1, 2, 2)), gen(0), {})
    angles, scales = seen["angles"], seen["scales"]
    assert angles.min() >= -A.ROTATION_DEGREES and angles.max() <= A.ROTATION_DEGREES
    assert angles.min() < -170 and angles.max() > 170
    assert scales.min() >= 0.9 and scales.max() <= 1.1 and abs(scales.mean().item() - 1.0) < 0.005
    assert math.isclose(A.ROTATION_DEGREES, 180.0)


# -------------------------------------------------------------- Tips and Tricks §3: rotation, noise, contrast
def test_rotation_draws_small_angles_without_magnification(monkeypatch):
    calls = []

    def spy(x, angles, scales):
        calls.append((angles, scales))
        return x

    monkeypatch.setattr(A, "rotate_scale_by", spy)
    A.rotation(torch.zeros((5000, 1, 2, 2)), gen(0), {})
    angles, scales = calls[0]
    assert angles.shape == (5000,) and torch.equal(scales, torch.ones(5000))
    assert angles.abs().max() <= 15.0 and angles.abs().max() > 14.9
    assert abs(angles.mean()) < 0.5 and abs(angles.std() - 15.0 / math.sqrt(3)) < 0.3  # uniform on [-15, 15]


def test_rotation_turns_each_image_by_its_own_angle():
    # rotate_scale_by at 90 degrees is rot90 (test_rotate_scale_by_definitions); here: a centred point
    # stays put, an off-centre point moves along its circle by an angle of at most 15 degrees
    x = torch.zeros((64, 1, 33, 33))
    x[:, :, 16, 28] = 1.0  # 12 px right of the centre (16, 16)
    out = A.rotation(x, gen(3), {})
    rows, cols = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    mass = out[:, 0].sum((1, 2))
    centre_row = (out[:, 0] * rows).sum((1, 2)) / mass - 16
    centre_col = (out[:, 0] * cols).sum((1, 2)) / mass - 16
    radius = torch.hypot(centre_row, centre_col)
    turned = torch.rad2deg(torch.atan2(-centre_row, centre_col))  # counter-clockwise as displayed
    assert torch.allclose(radius, torch.full_like(radius, 12.0), atol=0.5)
    assert turned.abs().max() <= 15.5 and turned.std() > 5  # one angle per image
    centred = torch.zeros((8, 3, 9, 9))
    centred[:, :, 4, 4] = 1.0
    assert torch.allclose(A.rotation(centred, gen(4), {})[:, :, 4, 4], torch.ones(8, 3), atol=0.1)


def test_gaussian_noise_has_the_declared_spread_and_is_independent_per_pixel():
    x = torch.full((64, 3, 16, 16), 0.5)  # 10 sigma from either bound: clamping never acts
    out = A.gaussian_noise(x, gen(11), {})
    noise = out - x
    assert abs(noise.mean()) < 0.002
    assert abs(noise.std() - A.NOISE_STD) < 0.001
    flat = noise.flatten()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1]) < 0.02  # neighbours independent
    per_image = noise.std((1, 2, 3))
    assert per_image.std() < 0.005  # the same sigma for every image


def test_gaussian_noise_stays_in_range_at_the_bounds():
    x = torch.cat([torch.zeros((4, 1, 8, 8)), torch.ones((4, 1, 8, 8))])
    out = A.gaussian_noise(x, gen(12), {})
    assert out.min() >= 0 and out.max() <= 1
    assert (out[:4] > 0).float().mean() > 0.3 and (out[4:] < 1).float().mean() > 0.3


def test_contrast_scales_each_images_spread_by_its_factor_around_its_mean():
    # small deviations around mid grey: no pixel is clipped, so std(out) = factor x std(x) exactly
    x = 0.5 + 0.1 * (rand_images(256, 3, 8, 8) - 0.5)
    g = gen(13)
    factors = A._uniform((256,), *A.CONTRAST_RANGE, gen(13), x.device)
    out = A.contrast(x, g, {})
    assert torch.allclose(out.std((1, 2, 3)) / x.std((1, 2, 3)), factors, atol=1e-4)
    luma = lambda t: (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).mean((1, 2))
    assert torch.allclose(luma(out), luma(x), atol=1e-5)  # the blend keeps each image's mean luma
    assert factors.min() >= 0.6 and factors.max() < 1.4 and factors.std() > 0.2


def test_contrast_is_color_jitters_contrast_step():
    x = rand_images(32)
    factors = A._uniform((32,), *A.CONTRAST_RANGE, gen(14), x.device)
    ones = torch.ones(32)
    assert torch.allclose(A.contrast(x, gen(14), {}), A.adjust_color(x, ones, factors, ones), atol=1e-6)
