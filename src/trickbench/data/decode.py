"""Decoding: encoded images to one (N, H, W, C) uint8 array, exactly or not at all.

Modes the pipeline represents faithfully are converted (palette, bilevel, YCbCr, RGBX, and an alpha channel
that is opaque everywhere); 16-bit grey (PNG/TIFF `I;16*`, and `I` within 0..65535, e.g. a 16-bit PGM) is
scaled to 8 bit by round(v * 255 / 65535), never clipped; a transparent pixel, CMYK, LAB, HSV, floating
point or 32-bit values are refused with one line naming the image (`MODE_RULES`). Before any array is
allocated, the decoded size of a data set is bounded (`check_decoded_size`, MAX_DECODED_BYTES).

`decode_members` splits the member list into chunks and decodes them in a process pool (fork start method
on Linux, so stage scripts without a `__main__` guard are safe; spawn elsewhere). Every worker opens its own
handle on the archive (an open file must not be shared across processes). Small jobs (< `POOL_MIN_IMAGES`)
or `workers=1` decode in-process. A tqdm bar on stderr counts images.
"""
from __future__ import annotations

import concurrent.futures as cf
import io
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from trickbench.data import limits
from trickbench.data.trees import ImageTree, tree_for_worker
from trickbench.errors import DataError

__all__ = ["DecodeSpec", "MODE_RULES", "fit_and_pad", "decode_image", "decode_members", "check_decoded_size",
           "decoded_shape"]

RESAMPLE = Image.Resampling.BICUBIC  # used by fit_and_pad; antialiased when shrinking
POOL_MIN_IMAGES = 2048  # below this, decoding in-process beats starting a pool
CHUNK_IMAGES = 1024  # images per pool task (a chunk of 32x32 RGB is 3 MiB)


@dataclass(frozen=True)
class DecodeSpec:
    """How one image becomes an (H, W, C) uint8 array.

    channels: 1 (Image.convert("L")) or 3 (Image.convert("RGB")).
    image_size: None keeps the size (then every image must be `expected_hw`), else `fit_and_pad`.
    pad_value: background for fit_and_pad (0..255, every channel).
    """

    channels: int = 3
    image_size: int | None = None
    pad_value: int = 0
    expected_hw: tuple[int, int] | None = None

    def describe(self) -> dict:
        return {"channels": self.channels, "image_size": self.image_size, "pad_value": self.pad_value,
                "expected_hw": list(self.expected_hw) if self.expected_hw else None,
                "resample": RESAMPLE.name.lower(), "pillow": Image.__version__}


def fit_and_pad(image: Image.Image, size: int, pad_value: int) -> Image.Image:
    """Resize keeping the aspect ratio so the longer side is `size` (up or down), centre on a
    size x size canvas filled with `pad_value` (offset (size - w) // 2, (size - h) // 2)."""
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), RESAMPLE)
    if (nw, nh) == (size, size):
        return image
    fill = pad_value if image.mode == "L" else (pad_value,) * len(image.getbands())
    canvas = Image.new(image.mode, (size, size), fill)
    canvas.paste(image, ((size - nw) // 2, (size - nh) // 2))
    return canvas


class _Refused(Exception):
    pass


_PROFILE = "converting it needs its colour profile; save it as RGB (or greyscale) first"
# Pillow mode -> how it becomes L or RGB: "convert" (exact), "opaque" (exact where every pixel is opaque),
# "scale16" (16-bit grey scaled to 8 bit), else the reason it is refused. Modes not listed are refused.
MODE_RULES: dict[str, str] = {
    "L": "convert", "RGB": "convert", "1": "convert", "P": "opaque", "RGBX": "convert", "YCbCr": "convert",
    "RGBA": "opaque", "LA": "opaque", "PA": "opaque", "RGBa": "opaque", "La": "opaque",
    "I;16": "scale16", "I;16L": "scale16", "I;16B": "scale16", "I;16N": "scale16", "I": "scale16",
    "CMYK": f"CMYK (print colours): {_PROFILE}",
    "LAB": f"CIELAB colours: {_PROFILE}",
    "HSV": "HSV colours: save it as RGB first",
    "F": "32-bit floating-point pixels: save it as 8- or 16-bit first",
}


def _alpha_is_opaque(image: Image.Image) -> bool:
    if image.mode == "P" and "transparency" not in image.info:
        return True
    with_alpha = image.convert("RGBA") if image.mode in ("P", "PA") else image
    return with_alpha.getchannel(with_alpha.getbands()[-1]).getextrema()[0] == 255


def _scaled_16bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise _Refused(f"mode {image.mode} with values {values.min()}..{values.max()}, outside 16 bits; "
                       "save it as 8- or 16-bit first")
    return Image.fromarray(((values + 128) // 257).astype(np.uint8), "L")  # round(v * 255 / 65535)


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` as L or RGB, exactly; _Refused where that cannot be done."""
    rule = MODE_RULES.get(image.mode, f"mode {image.mode}: not a mode the pipeline can represent faithfully; "
                                      "save it as 8-bit RGB or greyscale first")
    if rule == "scale16":
        image = _scaled_16bit(image)
    elif rule == "opaque" and not _alpha_is_opaque(image):
        raise _Refused(f"mode {image.mode} with transparent pixels: the pipeline has no alpha channel; "
                       "flatten it onto a background first")
    elif rule not in ("convert", "opaque"):
        raise _Refused(rule)
    return image if image.mode == mode else image.convert(mode)


def decode_image(data: bytes, spec: DecodeSpec, where: str) -> np.ndarray:
    """Decode one encoded image to (H, W, C) uint8; DataError naming `where` if it cannot be done."""
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > limits.MAX_IMAGE_PIXELS:  # from the header: nothing decoded yet
                raise _Refused(f"image of {image.width}x{image.height} pixels, above {limits.MAX_IMAGE_PIXELS} "
                               "(MAX_IMAGE_PIXELS)")
            image.load()
            converted = _to_mode(image, mode)
            if spec.image_size is not None:
                converted = fit_and_pad(converted, spec.image_size, spec.pad_value)
            array = np.asarray(converted, dtype=np.uint8)
    except _Refused as exc:
        raise DataError(f"{where}: {exc}; refusing to decode it") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None
    if spec.expected_hw is not None and array.shape[:2] != tuple(spec.expected_hw):
        h, w = spec.expected_hw
        raise DataError(
            f"{where}: image is {array.shape[1]}x{array.shape[0]} (width x height) but {w}x{h} was expected "
            "(set the image_size option to resize and pad every image)"
        )
    return array[:, :, None] if array.ndim == 2 else array


def decoded_shape(tree: ImageTree, first: str, spec: DecodeSpec) -> tuple[int, int, int]:
    """(H, W, C) every image of `tree` decodes to under `spec`; without a size in `spec`, the size in the
    header of its `first` member (nothing is decoded)."""
    if spec.image_size is not None:
        return spec.image_size, spec.image_size, spec.channels
    if spec.expected_hw is not None:
        return spec.expected_hw[0], spec.expected_hw[1], spec.channels
    where = f"{tree.path}: member {first!r}"
    try:
        with Image.open(io.BytesIO(tree.read(first))) as image:
            return image.height, image.width, spec.channels
    except Exception as exc:  # as decode_image: Pillow raises many types
        raise DataError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None


def check_decoded_size(n_images: int, shape: tuple[int, int, int], origin: object) -> None:
    """DataError before allocating when `n_images` of `shape` (H, W, C) exceed MAX_DECODED_BYTES."""
    total = n_images * shape[0] * shape[1] * shape[2]
    if total > limits.MAX_DECODED_BYTES:
        raise DataError(f"{origin}: {n_images} images of {shape[1]}x{shape[0]}x{shape[2]} decode to "
                        f"{limits.size_text(total)}, above {limits.size_text(limits.MAX_DECODED_BYTES)} "
                        "(MAX_DECODED_BYTES); set data.options.image_size to resize every image")


_WORKER_TREES: dict[tuple[int, str, str], ImageTree] = {}


def _worker_tree(handle: tuple[str, str]) -> ImageTree:
    # keyed by pid: a forked child must never use its parent's open file (shared file offset)
    key = (os.getpid(), *handle)
    tree = _WORKER_TREES.get(key)
    if tree is None:
        tree = _WORKER_TREES[key] = tree_for_worker(handle)
    return tree


def _decode_chunk(handle: tuple[str, str] | None, origin: str, names: Sequence[str],
                  payloads: Sequence[bytes] | None, spec: DecodeSpec, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty((len(names), *shape), dtype=np.uint8)
    tree = _worker_tree(handle) if payloads is None and handle is not None else None
    for i, name in enumerate(names):
        data = payloads[i] if payloads is not None else tree.read(name)  # type: ignore[union-attr]
        where = f"{origin}/{name}" if handle and handle[0] == "dir" else f"{origin}: member {name!r}"
        out[i] = decode_image(data, spec, where)
    return out


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _mp_context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def decode_members(tree: ImageTree, names: Sequence[str], spec: DecodeSpec, *, workers: int | None = None,
                   progress: bool = True, desc: str = "decode") -> np.ndarray:
    """Decode `names` of `tree` into one (N, H, W, C) uint8 array, in order.

    The output shape comes from `spec` (image_size or expected_hw); without either, the first image
    sets the size every other image must have.
    """
    from tqdm import tqdm

    if not names:
        return np.empty((0, 0, 0, spec.channels), dtype=np.uint8)
    origin = str(tree.path)
    shape = decoded_shape(tree, names[0], spec)
    if spec.image_size is None:  # every other image must have the size of the first
        spec = DecodeSpec(spec.channels, None, spec.pad_value, shape[:2])
    check_decoded_size(len(names), shape, origin)
    workers = _default_workers() if workers is None else max(1, int(workers))
    handle = tree.handle()
    chunk = CHUNK_IMAGES if len(names) >= workers * CHUNK_IMAGES * 4 else max(64, -(-len(names) // (workers * 4)))
    starts = list(range(0, len(names), chunk))
    out = np.empty((len(names), *shape), dtype=np.uint8)
    bar = tqdm(total=len(names), desc=desc, unit="img", file=sys.stderr, disable=not progress, leave=False)
    try:
        in_process = workers == 1 or len(names) < POOL_MIN_IMAGES or multiprocessing.current_process().daemon
        if in_process:
            for start in starts:
                part = names[start:start + chunk]
                payloads = tree.read_many(part)
                out[start:start + len(part)] = _decode_chunk(handle, origin, part, payloads, spec, shape)
                bar.update(len(part))
            return out
        with cf.ProcessPoolExecutor(min(workers, len(starts)), mp_context=_mp_context()) as pool:
            futures = {}
            for start in starts:
                part = list(names[start:start + chunk])
                payloads = tree.read_many(part) if handle is None else None
                futures[pool.submit(_decode_chunk, handle, origin, part, payloads, spec, shape)] = start
            try:
                for future in cf.as_completed(futures):
                    block = future.result()
                    start = futures[future]
                    out[start:start + len(block)] = block
                    bar.update(len(block))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return out
    finally:
        bar.close()