"""Training-set statistics for pre-processing (the seed's section 2) and fancy PCA (section 1).

:func:`compute_stats` returns two parts, both on the [0, 1] pixel scale (uint8 / 255):

* a JSON-serialisable dict (the stage writes it as stats.json):
  ``channel_mean``, ``channel_std`` (population std, ddof 0, like ``np.std``), ``channel_min``,
  ``channel_max`` (C floats each); ``pixel_covariance`` (C x C, over all training pixels);
  ``eigenvalues`` (C, descending, >= 0) and ``eigenvectors`` (C x C, orthonormal columns) of it;
  ``explained_variance_ratio`` (C); ``whitening_epsilon``; ``num_images``; ``num_pixels`` (N H W);
  ``image_shape`` ([C, H, W]); ``feature_dim`` (D = C H W); ``num_whiten_samples``;
* numpy arrays (the stage writes them as stats.npz) for whitening the flattened image:
  ``feature_mean`` (D,) float64, ``whiten_eigenvalues`` (D,) float64 (descending, >= 0),
  ``whiten_eigenvectors`` U (D, D) float32, ``pca_whitening`` W = U diag(1/sqrt(S + eps)) (D, D) float32
  and ``zca_whitening`` W U^T (D, D) float32, so that x_white = (x - feature_mean) @ W.

Feature order: an image is flattened channel-first, index = c H W + h W + w, i.e. exactly
``x.reshape(N, -1)`` of the (N, C, H, W) batches the loader produces (not the (H, W, C) storage order).

Covariances divide by the number of samples (the seed's ``X.T @ X / N``) and are accumulated in
float64 over chunks, centred on the mean from a first pass, so CIFAR (50,000 x 3,072) needs well under
1 GB beyond the images.

:func:`load_stats` turns both files into the *runtime stats dict* that augmentations and
pre-processors read (see its docstring for the keys).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch

from trickbench.data.prepared import read_npz
from trickbench.io import read_json

JSON_TENSOR_KEYS = (
    "channel_mean", "channel_std", "channel_min", "channel_max",
    "pixel_covariance", "eigenvalues", "eigenvectors", "explained_variance_ratio",
)
ARRAY_KEYS = ("feature_mean", "whiten_eigenvalues", "whiten_eigenvectors", "pca_whitening", "zca_whitening")


def _as_nhwc(train_images: np.ndarray) -> np.ndarray:
    images = np.asarray(train_images)
    if images.dtype != np.uint8:
        raise TypeError(f"compute_stats: train_images must be uint8 (N, H, W, C), got dtype {images.dtype}")
    if images.ndim == 3:  # (N, H, W) grey
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] < 2:
        raise ValueError("compute_stats: train_images must have shape (N, H, W, C) with C in (1, 3) and "
                         f"N >= 2, got {images.shape}")
    return images


def _sign_fix(vectors: np.ndarray) -> np.ndarray:
    """Flip eigenvector columns so that each one's largest-magnitude entry is positive (deterministic)."""
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def _eigh_descending(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    values, vectors = values[::-1], vectors[:, ::-1]
    return np.clip(values, 0.0, None), _sign_fix(np.ascontiguousarray(vectors))


def compute_stats(
    train_images: np.ndarray,
    epsilon: float = 1e-5,
    max_whiten_samples: int | None = None,
    seed: int = 0,
    chunk_size: int = 1024,
    whiten: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-channel statistics, the C x C pixel PCA and the D x D whitening matrices of a training set.

    train_images: uint8 (N, H, W, C) (or (N, H, W) for grey). Channel statistics and the pixel
    covariance use every image; the D x D covariance uses a random subset of `max_whiten_samples`
    images (drawn with `seed`) when N is larger, centred on the full-set feature mean. `chunk_size`
    images are converted to float64 at a time.
    """
    images = _as_nhwc(train_images)
    n, h, w, c = images.shape
    d = c * h * w
    num_pixels = n * h * w
    chunk_size = max(1, int(chunk_size))

    channel_mean, feature_mean = _means(images, chunk_size, whiten)
    channel_min = images.reshape(-1, c).min(0).astype(np.float64) / 255.0
    channel_max = images.reshape(-1, c).max(0).astype(np.float64) / 255.0
    whiten_idx = _whiten_indices(n, max_whiten_samples, seed)
    pixel_cov = _pixel_cross_products(images, channel_mean, chunk_size) / num_pixels
    if not whiten:  # a D x D matrix of large images costs minutes and D² floats: skip on request
        whiten_idx = whiten_idx[:0]
    feature_cross = _feature_cross_products(images, whiten_idx, feature_mean, chunk_size, whiten)
    feature_cov = feature_cross / max(len(whiten_idx), 1)

    eigenvalues, eigenvectors = _eigh_descending(pixel_cov)
    total = eigenvalues.sum()
    explained = eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)

    s, u = _eigh_descending(feature_cov) if whiten else (np.zeros(0), np.zeros((0, 0)))
    pca = u / np.sqrt(s + epsilon)  # column i scaled by 1/sqrt(S_i + eps)
    zca = pca @ u.T
    zca = (zca + zca.T) / 2

    stats_json: dict[str, Any] = {
        "channel_mean": channel_mean.tolist(),
        "channel_std": np.sqrt(np.diag(pixel_cov)).tolist(),
        "channel_min": channel_min.tolist(),
        "channel_max": channel_max.tolist(),
        "pixel_covariance": pixel_cov.tolist(),
        "eigenvalues": eigenvalues.tolist(),
        "eigenvectors": eigenvectors.tolist(),
        "explained_variance_ratio": explained.tolist(),
        "whitening_epsilon": float(epsilon),
        "num_images": int(n),
        "num_pixels": int(num_pixels),
        "image_shape": [int(c), int(h), int(w)],
        "feature_dim": int(d),
        "num_whiten_samples": int(len(whiten_idx)),
        "whitening": bool(whiten),
    }
    arrays = {
        "feature_mean": feature_mean if whiten else np.zeros(0),
        "whiten_eigenvalues": s,
        "whiten_eigenvectors": u.astype(np.float32),
        "pca_whitening": pca.astype(np.float32),
        "zca_whitening": zca.astype(np.float32),
    }
    return stats_json, arrays


def _means(images: np.ndarray, chunk_size: int, whiten: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: the per-channel mean over all pixels and the per-feature mean (zeros without `whiten`)."""
    n, h, w, c = images.shape
    d = c * h * w
    channel_sum = np.zeros(c)
    feature_sum = np.zeros(d)
    for start in range(0, n, chunk_size):
        block = images[start:start + chunk_size].astype(np.float64) / 255.0
        channel_sum += block.reshape(-1, c).sum(0)
        if whiten:
            feature_sum += block.transpose(0, 3, 1, 2).reshape(len(block), d).sum(0)
    return channel_sum / (n * h * w), feature_sum / n


def _whiten_indices(n: int, max_whiten_samples: int | None, seed: int) -> np.ndarray:
    """The sorted images of the D x D covariance: all, or `max_whiten_samples` drawn with `seed`."""
    if max_whiten_samples is not None and max_whiten_samples < n:
        if max_whiten_samples < 2:
            raise ValueError(f"compute_stats: max_whiten_samples must be >= 2, got {max_whiten_samples}")
        return np.sort(np.random.default_rng(seed).choice(n, size=max_whiten_samples, replace=False))
    return np.arange(n)


def _pixel_cross_products(images: np.ndarray, channel_mean: np.ndarray, chunk_size: int) -> np.ndarray:
    """Pass 2, pixels: the C x C sum of centred cross-products over every pixel."""
    n, c = images.shape[0], images.shape[-1]
    pixel_cross = np.zeros((c, c))
    for start in range(0, n, chunk_size):
        pixels = images[start:start + chunk_size].reshape(-1, c).astype(np.float64) / 255.0 - channel_mean
        pixel_cross += pixels.T @ pixels
    return pixel_cross


def _feature_cross_products(images: np.ndarray, whiten_idx: np.ndarray, feature_mean: np.ndarray, chunk_size: int,
                            whiten: bool) -> np.ndarray:
    """Pass 2, features: the D x D sum of centred cross-products over the images `whiten_idx` (0 x 0 without
    `whiten`)."""
    d = int(np.prod(images.shape[1:]))
    feature_cross = np.zeros((d, d) if whiten else (0, 0))
    for start in range(0, len(whiten_idx), chunk_size):
        block = images[whiten_idx[start:start + chunk_size]].astype(np.float64) / 255.0
        centred = block.transpose(0, 3, 1, 2).reshape(len(block), d) - feature_mean
        feature_cross += centred.T @ centred
    return feature_cross


def runtime_stats(
    stats_json: Mapping[str, Any],
    arrays: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """The runtime stats dict: the JSON dict merged with the arrays, numeric entries as torch tensors.

    Keys ``JSON_TENSOR_KEYS`` and ``ARRAY_KEYS`` (where given) become float32 tensors on `device`; every
    other JSON entry (``whitening_epsilon``, ``num_images``, ``num_pixels``, ``image_shape``,
    ``feature_dim``, ``num_whiten_samples``) stays a Python value.
    """
    out: dict[str, Any] = dict(stats_json)
    for key in JSON_TENSOR_KEYS:
        if key in out:
            out[key] = torch.as_tensor(np.asarray(out[key], dtype=np.float32), device=device)
    for key, value in (arrays or {}).items():
        out[key] = torch.as_tensor(np.asarray(value, dtype=np.float32), device=device)
    return out


def load_stats(
    json_path: str | os.PathLike,
    npz_path: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Read stats.json (and stats.npz if given) into the runtime stats dict of :func:`runtime_stats`.

    Without the npz the whitening keys are absent and the pca_whiten / zca_whiten pre-processors raise.
    """
    stats_json = read_json(json_path)
    arrays = None if npz_path is None else read_npz(npz_path, ARRAY_KEYS, "stats")
    return runtime_stats(stats_json, arrays, device)


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def plot_spectrum(stats_json: Mapping[str, Any], arrays: Mapping[str, Any]):
    """Figure: eigenvalue spectrum (log scale) of the D x D whitening covariance, with the whitening
    epsilon marked, and the cumulative explained variance against the number of components."""
    import seaborn as sns
    from matplotlib.figure import Figure

    values = np.clip(_numpy(arrays["whiten_eigenvalues"]), 0.0, None)
    epsilon = float(stats_json.get("whitening_epsilon", 0.0))
    ranks = np.arange(1, len(values) + 1)
    cumulative = np.cumsum(values) / values.sum() if values.sum() > 0 else np.zeros_like(values)
    shape = stats_json.get("image_shape")
    shape_text = "x".join(str(v) for v in shape) if shape else f"D={len(values)}"

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax_spec, ax_cum = fig.subplots(1, 2)
        positive = values > 0
        ax_spec.plot(ranks[positive], values[positive], color=sns.color_palette()[0], lw=1.5,
                     label="eigenvalue $S_i$")
        if epsilon > 0:
            ax_spec.axhline(epsilon, color=sns.color_palette()[3], ls="--", lw=1.2,
                            label=f"whitening $\\epsilon$ = {epsilon:g}")
        ax_spec.set_yscale("log")
        ax_spec.set_xlabel("component i (descending)")
        ax_spec.set_ylabel("eigenvalue (pixel scale [0, 1])")
        ax_spec.set_title("Eigenvalue spectrum")
        ax_spec.legend(loc="upper right")

        ax_cum.plot(ranks, cumulative, color=sns.color_palette()[2], lw=1.5)
        for level in (0.9, 0.99):
            k = int(np.searchsorted(cumulative, level) + 1)
            if k <= len(values):
                ax_cum.axvline(k, color="grey", ls=":", lw=1)
                ax_cum.annotate(f"{level:.0%}: {k}", (k, level), textcoords="offset points",
                                xytext=(4, -14), fontsize=9)
        ax_cum.set_ylim(0, 1.02)
        ax_cum.set_xlabel("number of components")
        ax_cum.set_ylabel("cumulative explained variance")
        ax_cum.set_title("Cumulative explained variance")
        fig.suptitle(f"Whitening covariance of the training images ({shape_text}, "
                     f"D = {len(values)}, N = {stats_json.get('num_whiten_samples', '?')})")
    return fig
