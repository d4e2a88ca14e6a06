"""Pre-processing transforms built from real training statistics, checked on the training data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trickbench.data.preprocess import PREPROCESSORS, build_preprocessor
from trickbench.data.stats import compute_stats, runtime_stats
from trickbench.registry import UnknownComponentError


def training_images(n: int = 3000, seed: int = 0) -> np.ndarray:
    """uint8 (N, 4, 4, 3) with different channel means/scales and correlated pixels."""
    rng = np.random.default_rng(seed)
    d = 48
    mixing = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    z = (rng.standard_normal((n, d)) @ mixing + rng.standard_normal((n, 1))).reshape(n, 4, 4, 3)
    images = np.array([60.0, 128.0, 190.0]) + np.array([10.0, 25.0, 18.0]) * z
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup():
    images = training_images()
    stats_json, arrays = compute_stats(images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # what the loader produces
    return x, runtime_stats(stats_json, arrays)


def test_the_registry_holds_exactly_the_preprocessings_tested_here_and_refuses_others():
    assert set(PREPROCESSORS.names()) == {"none", "zero_center", "normalize", "minmax", "pca_whiten", "zca_whiten"}
    with pytest.raises(UnknownComponentError):
        build_preprocessor("whiten", {}, "cpu")


def test_none_and_zero_center(setup):
    x, stats = setup
    assert torch.equal(build_preprocessor("none", stats, "cpu")(x), x)
    out = build_preprocessor("zero_center", stats, "cpu")(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3)), x.std((0, 2, 3)), atol=1e-5, rtol=0)


def test_normalize_gives_zero_mean_unit_std_per_channel(setup):
    x, stats = setup
    assert x.std((0, 2, 3)).min() < 0.07 < x.std((0, 2, 3)).max()  # channels really differ in scale
    out = build_preprocessor("normalize", stats, "cpu")(x)
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)


def test_minmax_maps_training_data_onto_minus_one_one(setup):
    x, stats = setup
    out = build_preprocessor("minmax", stats, "cpu")(x)
    lo, hi = out.amin((0, 2, 3)), out.amax((0, 2, 3))
    torch.testing.assert_close(lo, -torch.ones(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(hi, torch.ones(3), atol=1e-6, rtol=0)
    assert x.amin((0, 2, 3)).max() > 0.05  # bounds come from the data, not from [0, 1]


@pytest.mark.parametrize("name", ["pca_whiten", "zca_whiten"])
def test_whitening_gives_identity_covariance(setup, name):
    x, stats = setup
    out = build_preprocessor(name, stats, "cpu")(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    flat = out.reshape(len(out), -1).double()
    torch.testing.assert_close(flat.mean(0), torch.zeros(48, dtype=torch.float64), atol=1e-4, rtol=0)
    cov = flat.T @ flat / len(flat)
    torch.testing.assert_close(cov, torch.eye(48, dtype=torch.float64), atol=0.02, rtol=0)


def test_zca_stays_close_to_pixels_and_pca_does_not(setup):
    # ZCA is the whitening closest to the input: each output correlates with its own input pixel
    x, stats = setup
    flat_in = x.reshape(len(x), -1).double()
    corr = {}
    for name in ("pca_whiten", "zca_whiten"):
        flat_out = build_preprocessor(name, stats, "cpu")(x).reshape(len(x), -1).double()
        a = (flat_in - flat_in.mean(0)) / flat_in.std(0)
        b = (flat_out - flat_out.mean(0)) / flat_out.std(0)
        corr[name] = ((a * b).mean(0)).abs().mean().item()
    assert corr["zca_whiten"] > 0.5 > corr["pca_whiten"]


def test_whitening_errors(setup):
    x, stats = setup
    transform = build_preprocessor("zca_whiten", stats, "cpu")
    with pytest.raises(ValueError, match="features"):
        transform(x[:, :, :3, :3])
    json_only = {k: v for k, v in stats.items() if k != "zca_whitening"}
    with pytest.raises(KeyError, match="zca_whitening"):
        build_preprocessor("zca_whiten", json_only, "cpu")
    with pytest.raises(ValueError, match="channels"):
        build_preprocessor("normalize", stats, "cpu")(x[:, :1])


def test_accepts_json_lists_and_numpy(setup):
    x, stats = setup
    plain = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in stats.items()}
    for name in ("normalize", "minmax", "zca_whiten"):
        torch.testing.assert_close(build_preprocessor(name, plain, "cpu")(x),
                                   build_preprocessor(name, stats, "cpu")(x))
