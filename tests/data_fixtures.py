"""Builders of small data-source inputs: image trees (folders, ZIPs, tars) and CIFAR archives in the
official python-pickle layout, written byte for byte the way the Python 2 originals are."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import BIN

REPO = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    """../shared/datasets beside the repository, or $TRICKBENCH_SHARED_DATASETS."""
    override = os.environ.get("TRICKBENCH_SHARED_DATASETS")
    return Path(override) if override else REPO.parent / "shared" / "datasets"


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# images and trees
# ---------------------------------------------------------------------------------------------------
def image_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def random_pixels(rng: np.random.Generator, size: tuple[int, int], channels: int) -> np.ndarray:
    shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_zip(path: Path, members: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    """ZIP with members stored under exactly the given names (no sanitising: '../x' stays '../x')."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in dirs:
            zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def write_folder(root: Path, members: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    for name in dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def image_tree(rng: np.random.Generator, *, splits: tuple[str, ...] | None, classes: dict[str, int],
               channels_by_class: dict[str, int] | None = None,
               size: tuple[int, int] = (6, 5)) -> tuple[dict[str, bytes], dict[str, dict[str, np.ndarray]]]:
    """PNG members `<split>/<class>/<i>.png` (or `<class>/<i>.png` when splits is None) and their
    pixels as RGB (H, W, 3): {split: {member: pixels}}; grayscale classes are saved as mode L."""
    members: dict[str, bytes] = {}
    pixels: dict[str, dict[str, np.ndarray]] = {}
    for split in splits or ("train",):
        pixels[split] = {}
        for cls, count in classes.items():
            channels = (channels_by_class or {}).get(cls, 3)
            for i in range(count):
                name = f"{split}/{cls}/{i:03d}.png" if splits else f"{cls}/{i:03d}.png"
                array = random_pixels(rng, size, channels)
                members[name] = image_bytes(array)
                pixels[split][name] = np.repeat(array[..., None], 3, axis=2) if channels == 1 else array
    return members, pixels


# ---------------------------------------------------------------------------------------------------
# CIFAR in the official python layout
# ---------------------------------------------------------------------------------------------------
class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler that writes bytes as Python 2 `str` (BINSTRING opcodes), as in the official
    CIFAR files: they load as bytes with encoding="bytes" and as str with encoding="latin1"."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _cifar_files(rng: np.random.Generator, *, kind: str, n: int) -> tuple[dict[str, bytes], dict]:
    """Files (name -> bytes) of a tiny official-format CIFAR-10 or CIFAR-100 and the expected arrays."""
    files: dict[str, bytes] = {}
    expected: dict = {}
    if kind == "cifar10":
        names = [f"class{i}" for i in range(10)]
        files["batches.meta"] = py2_pickle({b"num_cases_per_batch": n, b"label_names": [s.encode() for s in names],
                                            b"num_vis": 3072})
        batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        for split, batch_names in batches.items():
            data, labels = [], []
            for batch in batch_names:
                x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
                y = rng.integers(0, 10, n).tolist()
                files[batch] = py2_pickle({b"batch_label": f"{batch} of 5".encode(), b"labels": y, b"data": x,
                                           b"filenames": [f"{batch}_{i}.png".encode() for i in range(n)]})
                data.append(x)
                labels += y
            expected[split] = (np.concatenate(data), np.asarray(labels))
        expected["class_names"] = names
    else:
        fine = [f"fine{i:02d}" for i in range(100)]
        coarse = [f"coarse{i:02d}" for i in range(20)]
        files["meta"] = py2_pickle({b"fine_label_names": [s.encode() for s in fine],
                                    b"coarse_label_names": [s.encode() for s in coarse]})
        for split in ("train", "test"):
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            y_fine = rng.integers(0, 100, n).tolist()
            y_coarse = [i // 5 for i in y_fine]
            files[split] = py2_pickle({b"filenames": [b"x.png"] * n, b"batch_label": split.encode(),
                                       b"fine_labels": y_fine, b"coarse_labels": y_coarse, b"data": x})
            expected[split] = (x, np.asarray(y_fine), np.asarray(y_coarse))
        expected["class_names"] = fine
        expected["coarse_names"] = coarse
    return files, expected


def build_cifar(root: Path, rng: np.random.Generator, *, kind: str = "cifar10", n: int = 4) -> dict:
    """Write root/<base_folder>/... and root/<archive>.tar.gz; return paths, per-file MD5s, expected arrays."""
    base = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    tarball = root / ("cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz")
    files, expected = _cifar_files(rng, kind=kind, n=n)
    folder = root / base
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with tarfile.open(tarball, "w:gz") as tf:
        info = tarfile.TarInfo(base)
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return {"folder": folder, "tarball": tarball, "md5": {name: md5(folder / name) for name in files},
            "tar_md5": md5(tarball), "expected": expected}


def hwc(data: np.ndarray) -> np.ndarray:
    """Official (N, 3072) rows -> (N, 32, 32, 3), written independently of the loader."""
    out = np.empty((len(data), 32, 32, 3), dtype=np.uint8)
    for c in range(3):
        out[..., c] = data[:, c * 1024:(c + 1) * 1024].reshape(-1, 32, 32)
    return out


# ---------------------------------------------------------------------------------------------------
# hostile archives: raw ZIP and tar entries, patched headers, image headers without pixels
# ---------------------------------------------------------------------------------------------------
def write_zip_entries(path: Path, entries: list[tuple[str, bytes, int]], *, deflate: bool = False) -> Path:
    """ZIP of (name, data, unix st_mode) entries; st_mode 0 records no file type (as a DOS tool would)."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def patch_zip_central(path: Path, member: str, **fields: int) -> Path:
    """Overwrite fields of `member`'s central-directory entry in place: flags, method, crc,
    compress_size, file_size (the values zipfile trusts when it lists and opens members)."""
    offsets = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"), "compress_size": (20, "<I"),
               "file_size": (24, "<I")}
    blob = bytearray(path.read_bytes())
    encoded = member.encode()
    start = 0
    while True:
        at = blob.index(b"PK\x01\x02", start)
        name_len = struct.unpack_from("<H", blob, at + 28)[0]
        if bytes(blob[at + 46:at + 46 + name_len]) == encoded:
            break
        start = at + 4
    for field, value in fields.items():
        offset, fmt = offsets[field]
        struct.pack_into(fmt, blob, at + offset, value)
    path.write_bytes(bytes(blob))
    return path


def write_tar_entries(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes] | bytes],
                      mode: str = "w:gz") -> Path:
    """tar of regular members (name, data), ready TarInfo headers (links, devices, FIFOs) and raw bytes
    (the data blocks of the header before them, padded to 512 bytes: a hand-made long-name block)."""
    with tarfile.open(path, mode) as tf:
        for entry in entries:
            if isinstance(entry, bytes):
                padded = entry + b"\0" * (-len(entry) % tarfile.BLOCKSIZE)
                tf.fileobj.write(padded)
                tf.offset += len(padded)
            elif isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def tar_header(name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, linkname: str = "",
               devmajor: int = 0, devminor: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    info.devmajor, info.devminor = devmajor, devminor
    return info


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels but holds one row of data: Pillow reads the size
    from the header without decoding (an image bomb unless the size is checked first)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + \
        chunk(b"IEND", b"")


# runs the real CLI entry point after lowering the data limits named in $TRICKBENCH_TEST_LIMITS
LIMITS_RUNNER = ("import json, os, sys; import trickbench.data.limits as limits; "
                 "[setattr(limits, k, v) for k, v in json.loads(os.environ['TRICKBENCH_TEST_LIMITS']).items()]; "
                 "from trickbench.cli import main; sys.exit(main(sys.argv[1:]))")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()) if root.exists() else []


def run_stage(workdir: Path, stage: str, limits: dict, timeout_s: float) -> subprocess.CompletedProcess:
    """`trickbench <stage>` in `workdir` (with `limits` lowered in its process); a hang fails the test."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TRICKBENCH_TEST_LIMITS": json.dumps(limits)}
    head = [str(BIN / "python"), "-c", LIMITS_RUNNER] if limits else [str(BIN / "trickbench")]
    argv = head + ["--params", "params.yaml", stage] + (["--no-progress"] if stage == "prepare" else [])
    try:
        return subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"trickbench {stage} did not end within {timeout_s} s (a hang)")
