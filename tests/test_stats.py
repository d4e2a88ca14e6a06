"""Training-set statistics against numpy reference computations on small random data sets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trickbench.data.stats import ARRAY_KEYS, JSON_TENSOR_KEYS, compute_stats, load_stats, plot_spectrum, runtime_stats


def correlated_images(n: int = 5000, h: int = 4, w: int = 4, c: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W, C) images with correlated channels and pixels, all directions well above uint8 noise."""
    rng = np.random.default_rng(seed)
    d = h * w * c
    mixing = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    common = rng.standard_normal((n, 1))  # brightness shared by every pixel and channel
    z = rng.standard_normal((n, d)) @ mixing + 1.5 * common
    images = 128 + 22 * z.reshape(n, h, w, c)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data():
    images = correlated_images()
    stats_json, arrays = compute_stats(images, epsilon=1e-5)
    return images, stats_json, arrays


def flat_nchw(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64).transpose(0, 3, 1, 2).reshape(len(images), -1) / 255.0


def test_channel_statistics_match_numpy(data):
    images, s, _ = data
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(s["channel_mean"], pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s["channel_std"], pixels.std(0), rtol=1e-10)
    np.testing.assert_allclose(s["channel_min"], pixels.min(0))
    np.testing.assert_allclose(s["channel_max"], pixels.max(0))
    np.testing.assert_allclose(s["pixel_covariance"], np.cov(pixels.T, bias=True), rtol=1e-10, atol=1e-14)
    assert s["num_pixels"] == images.shape[0] * 16 and s["feature_dim"] == 48
    assert s["image_shape"] == [3, 4, 4] and s["num_images"] == 5000 and s["whitening_epsilon"] == 1e-5
    json.dumps(s)  # serialisable as is


def test_pixel_pca(data):
    _, s, _ = data
    values, vectors = np.array(s["eigenvalues"]), np.array(s["eigenvectors"])
    cov = np.array(s["pixel_covariance"])
    assert values.shape == (3,) and vectors.shape == (3, 3)
    assert np.all(values >= 0) and np.all(np.diff(values) <= 0)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(cov @ vectors, vectors * values, atol=1e-12)
    np.testing.assert_allclose(s["explained_variance_ratio"], values / values.sum())
    assert values[0] > 3 * values[1]  # the shared brightness dominates


def test_whitening_spectrum(data):
    images, s, a = data
    x = flat_nchw(images)
    np.testing.assert_allclose(a["feature_mean"], x.mean(0), rtol=1e-12)
    s_values, u = a["whiten_eigenvalues"], a["whiten_eigenvectors"].astype(np.float64)
    assert s_values.shape == (48,) and u.shape == (48, 48)
    assert np.all(s_values >= 0) and np.all(np.diff(s_values) <= 0)
    np.testing.assert_allclose(u.T @ u, np.eye(48), atol=1e-5)
    cov = np.cov(x.T, bias=True)
    np.testing.assert_allclose(s_values, np.linalg.eigvalsh(cov)[::-1], rtol=1e-9, atol=1e-15)
    assert s_values[-1] > 100 * s["whitening_epsilon"]  # the fixture is well conditioned


@pytest.mark.parametrize("key", ["pca_whitening", "zca_whitening"])
def test_whitened_training_data_has_identity_covariance(data, key):
    images, s, a = data
    white = (flat_nchw(images) - a["feature_mean"]) @ a[key].astype(np.float64)
    np.testing.assert_allclose(white.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(white.T @ white / len(white), np.eye(48), atol=0.02)


def test_zca_symmetric_and_pca_relation(data):
    _, s, a = data
    zca, pca, u = (a[k].astype(np.float64) for k in ("zca_whitening", "pca_whitening", "whiten_eigenvectors"))
    np.testing.assert_array_equal(a["zca_whitening"], a["zca_whitening"].T)
    np.testing.assert_allclose(zca, pca @ u.T, rtol=1e-4, atol=1e-3)
    expected_pca = u / np.sqrt(a["whiten_eigenvalues"] + s["whitening_epsilon"])
    np.testing.assert_allclose(pca, expected_pca, rtol=1e-5)


def test_chunking_subsampling_and_grey():
    images = correlated_images(300, 3, 3, 3, seed=1)
    full_json, full = compute_stats(images, chunk_size=1000)
    small_json, small = compute_stats(images, chunk_size=7)
    for key in ("channel_mean", "channel_std", "pixel_covariance", "eigenvalues"):
        np.testing.assert_allclose(small_json[key], full_json[key], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(small["whiten_eigenvalues"], full["whiten_eigenvalues"], rtol=1e-9, atol=1e-15)
    sub_json, sub = compute_stats(images, max_whiten_samples=120, seed=3)
    assert sub_json["num_whiten_samples"] == 120 and full_json["num_whiten_samples"] == 300
    assert sub_json["channel_mean"] == full_json["channel_mean"]  # channel stats use every image
    assert not np.allclose(sub["whiten_eigenvalues"], full["whiten_eigenvalues"])
    _, sub_again = compute_stats(images, max_whiten_samples=120, seed=3)
    np.testing.assert_array_equal(sub["zca_whitening"], sub_again["zca_whitening"])
    grey_json, grey = compute_stats(images[..., 0])  # (N, H, W) is read as one channel
    assert grey_json["image_shape"] == [1, 3, 3] and grey["zca_whitening"].shape == (9, 9)
    assert np.array(grey_json["eigenvectors"]).shape == (1, 1)
    with pytest.raises(TypeError):
        compute_stats(images.astype(np.float32))


def test_load_stats_round_trip(tmp_path, data):
    _, s, a = data
    (tmp_path / "stats.json").write_text(json.dumps(s))
    np.savez(tmp_path / "stats.npz", **a)
    rt = load_stats(tmp_path / "stats.json", tmp_path / "stats.npz")
    for key in JSON_TENSOR_KEYS + ARRAY_KEYS:
        assert isinstance(rt[key], torch.Tensor) and rt[key].dtype == torch.float32, key
    assert rt["eigenvectors"].shape == (3, 3) and rt["zca_whitening"].shape == (48, 48)
    assert rt["feature_dim"] == 48 and rt["whitening_epsilon"] == 1e-5
    np.testing.assert_allclose(rt["channel_mean"].numpy(), s["channel_mean"], rtol=1e-6)
    json_only = load_stats(tmp_path / "stats.json")
    assert "zca_whitening" not in json_only and "eigenvalues" in json_only
    assert runtime_stats(s, a).keys() == rt.keys()


def test_plot_spectrum(data):
    from matplotlib.figure import Figure

    _, s, a = data
    fig = plot_spectrum(s, a)
    assert isinstance(fig, Figure)
    spec, cum = fig.axes[:2]
    assert spec.get_yscale() == "log"
    assert spec.get_xlabel() and spec.get_ylabel() and cum.get_xlabel() and cum.get_ylabel()
    assert fig._suptitle is not None and "D = 48" in fig._suptitle.get_text()
    line = cum.get_lines()[0].get_ydata()
    assert np.isclose(line[-1], 1.0) and np.all(np.diff(line) >= 0)
    fig.canvas.draw()  # renders headless
