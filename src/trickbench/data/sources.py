"""Data sources: locate and verify raw files (`fetch`, the download stage), decode them to uint8 arrays
(`load`, the prepare stage's first step).

A source is a small class with `locate` (find the files, download if allowed, verify checksums, never
decode) and `decode` (files -> RawDataset), registered with one line::

    @SOURCES.register("name", "one-line description")
    class MySource(Source):
        OPTIONS = {"path": "what it is"}
        def locate(self, opts, raw_dir, *, fetching): ...
        def decode(self, located, opts, *, progress, workers): ...

`SOURCE_OPTIONS` lists every source's option keys (params.yaml `data.options`) with a description.
Relative paths in options are relative to the working directory (the repository root in a pipeline run).
Class index = position of the class name in sorted order (for CIFAR: the official label order).
Every failure caused by the input is a `DataError` whose message names the file (and member) and what
was expected; `load` returns arrays only, so a failure never leaves partial outputs.
"""
from __future__ import annotations

import codecs
import gzip
import importlib.metadata
import importlib.util
import io
import json
import os
import pickle
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from trickbench.data.archives import (
    DataWarning, DecodeSpec, ImageTree, TreeLayout, decode_members, md5_file, open_tree,
    read_regular_file, read_tar_members, require_regular_file, tree_layout,
)
from trickbench.data.download import MIRROR_ENV, download_file, mirror_url
from trickbench.errors import DataError
from trickbench.io import sha256_file
from trickbench.registry import Registry

__all__ = [
    "RawSplit", "RawDataset", "DataError", "DataWarning", "SOURCES", "SOURCE_OPTIONS", "Source", "Options",
    "Located", "fetch", "load", "CIFAR_SPECS", "CIFAR10_CLASSES",
]

SOURCES = Registry("data source")
MANIFEST_MAX_BYTES = 2**20  # a MANIFEST.json beside an archive (../shared/datasets: 10 KiB)


# ---------------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------------
@dataclass
class RawSplit:
    """One split as decoded uint8 arrays."""

    images: np.ndarray  # uint8, (N, H, W, C), C = 1 (grayscale) or 3 (RGB)
    labels: np.ndarray  # int64, (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, H, W, 1|3), got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                             f"{self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class RawDataset:
    name: str
    class_names: list[str]
    train: RawSplit
    test: RawSplit | None  # None where the source has no labelled test split
    provenance: dict = field(default_factory=dict)  # files read (sha256), options, layout, decode settings


@dataclass
class Located:
    """What `Source.locate` found: JSON-able file records and info, plus open handles for `decode`."""

    files: list[dict]
    info: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)

    def close(self) -> None:
        for value in self.state.values():
            if isinstance(value, ImageTree):
                value.close()


class Options:
    """Typed access to `data.options`; every error names the option key."""

    def __init__(self, source: str, given: Mapping[str, Any] | None, allowed: Mapping[str, str]):
        self.source, self.allowed = source, dict(allowed)
        self.given = dict(given or {})
        unknown = sorted(set(self.given) - set(self.allowed))
        if unknown:
            valid = ", ".join(sorted(self.allowed)) or "none"
            raise DataError(f"data.options.{unknown[0]}: unknown option for data source {source!r} "
                            f"(valid options: {valid})")

    def _key(self, key: str) -> str:
        return f"data.options.{key}"

    def has(self, key: str) -> bool:
        return self.given.get(key) is not None

    def path(self, key: str, *, required: bool = False) -> Path | None:
        value = self.given.get(key)
        if value is None:
            if required:
                raise DataError(f"{self._key(key)}: data source {self.source!r} needs this option "
                                f"({self.allowed[key]})")
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise DataError(f"{self._key(key)}: expected a path, got {value!r}")
        return Path(value).expanduser()

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.given.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise DataError(f"{self._key(key)}: expected an integer in [{lo}, {hi}], got {value!r}")
        return int(value)

    def choice(self, key: str, choices: tuple, default: Any) -> Any:
        value = self.given.get(key, default)
        if not any(value == choice and type(value) is type(choice) for choice in choices):  # 3.0 is not 3
            raise DataError(f"{self._key(key)}: expected one of {list(choices)}, got {value!r}")
        return value

    def text(self, key: str) -> str | None:
        value = self.given.get(key)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{self._key(key)}: expected a string, got {value!r}")
        return value

    def jsonable(self) -> dict:
        return {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in sorted(self.given.items())}


class Source:
    """Base of every data source. Subclasses set OPTIONS and implement locate and decode."""

    OPTIONS: ClassVar[dict[str, str]] = {}

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        """Find the raw files and verify them; never decode. `fetching`: the download stage (may download,
        runs the thorough checks); otherwise the prepare stage (never downloads)."""
        raise NotImplementedError

    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        raise NotImplementedError

    def image_side(self, opts: Options) -> int | None:
        """Side of the square images `decode` will give when the options alone tell (None: only the files
        tell); raises DataError for a bad value of an option it reads. `trickbench validate` calls it."""
        return None


def _source(name: str, options: Mapping[str, Any] | None) -> tuple[Source, Options]:
    cls = SOURCES.get(name)
    return cls(), Options(name, options, cls.OPTIONS)


def fetch(source: str, options: Mapping[str, Any] | None, raw_dir: str | os.PathLike) -> dict:
    """The download stage: locate (or download into raw_dir) and verify the raw files; never decode.

    Returns a JSON-able record {"source", "options", "files": [{"path", "sha256", "bytes", "role",
    "kind", "check"}], ...source-specific layout info} for the stage to write.
    """
    src, opts = _source(source, options)
    located = src.locate(opts, Path(raw_dir), fetching=True)
    try:
        return {"source": source, "options": opts.jsonable(), "files": located.files, **located.info}
    finally:
        located.close()


def load(source: str, options: Mapping[str, Any] | None, raw_dir: str | os.PathLike, *, progress: bool = True,
         workers: int | None = None) -> RawDataset:
    """The prepare stage's decode step: read what `fetch` located (never downloads), return uint8 arrays.

    progress: tqdm bar on stderr. workers: decoding processes (default: the CPUs this process may use).
    """
    src, opts = _source(source, options)
    located = src.locate(opts, Path(raw_dir), fetching=False)
    try:
        dataset = src.decode(located, opts, progress=progress, workers=workers)
    finally:
        located.close()
    provenance = {"source": source, "options": opts.jsonable(), "files": located.files, **located.info}
    provenance.update(dataset.provenance)
    provenance["splits"] = {
        split: {"n_images": len(part), "shape": list(part.images.shape[1:]),
                "per_class": {c: int(n) for c, n in zip(dataset.class_names,
                                                         np.bincount(part.labels, minlength=len(dataset.class_names)))}}
        for split, part in (("train", dataset.train), ("test", dataset.test)) if part is not None
    }
    provenance["versions"] = {pkg: _version(pkg) for pkg in ("numpy", "pillow", "trickbench")}
    dataset.provenance = provenance
    return dataset


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        if package == "trickbench":
            import trickbench
            return getattr(trickbench, "__version__", None)
        return None


# ---------------------------------------------------------------------------------------------------
# helpers shared by sources
# ---------------------------------------------------------------------------------------------------
def _file_record(path: Path, role: str, check: str, *, sha256: str | None = None,
                 tree: ImageTree | None = None) -> dict:
    if tree is not None:
        sha256 = sha256 or tree.digest()
        nbytes, kind = tree.nbytes(), tree.kind
    else:
        sha256 = sha256 or sha256_file(path)
        nbytes, kind = path.stat().st_size, "file"
    return {"path": os.fspath(path), "role": role, "kind": kind, "sha256": sha256, "bytes": nbytes, "check": check}


def _manifest_sha256(path: Path) -> tuple[Path, str] | None:
    """sha256 listed for `path` in a MANIFEST.json beside it (the ../shared/datasets format), if any."""
    manifest = path.parent / "MANIFEST.json"
    if not manifest.is_file():
        return None
    try:
        entry = json.loads(read_regular_file(manifest, MANIFEST_MAX_BYTES))["archives"][path.name]["sha256"]
    except (KeyError, TypeError):
        return None
    except (OSError, ValueError, DataError) as exc:
        warnings.warn(f"{manifest}: unreadable ({exc}); not using it to verify {path.name}", DataWarning,
                      stacklevel=3)
        return None
    return manifest, str(entry)


def _locate_tree(path: Path, role: str, *, fetching: bool, main_split: str = "train",
                 ignore_splits: tuple[str, ...] = ()) -> tuple[dict, ImageTree, TreeLayout]:
    """Open a ZIP/tar/folder image tree, check it against a MANIFEST.json beside it, (when fetching)
    check member CRCs, and read its layout (names only; nothing is decoded)."""
    tree = open_tree(path)
    try:
        checks = []
        sha = tree.digest()
        listed = _manifest_sha256(tree.path) if tree.kind != "dir" else None
        if listed is not None:
            manifest, expected = listed
            if expected != sha:
                raise DataError(f"{tree.path}: sha256 {sha} does not match {expected} listed in {manifest} "
                                "(corrupt, truncated or replaced archive)")
            checks.append(f"sha256 matches {manifest.name}")
        if fetching:
            checks.append(tree.verify())
        layout = tree_layout(tree, main_split=main_split, ignore_splits=ignore_splits)
    except BaseException:
        tree.close()
        raise
    record = _file_record(tree.path, role, "; ".join(checks) or "exists", sha256=sha, tree=tree)
    return record, tree, layout


def _layout_info(layout: TreeLayout) -> dict:
    return {
        "layout": "<split>/<class>/<image>" if layout.split_folders else "<class>/<image>",
        "prefix": layout.prefix,
        "class_names": layout.class_names,
        "counts": layout.counts(),
        "n_skipped": len(layout.skipped),
        "skipped": layout.skipped[:20],
        "n_unlabelled": len(layout.unlabelled),
    }


def _decode_split(tree: ImageTree, layout: TreeLayout, split: str, spec: DecodeSpec, *, progress: bool,
                  workers: int | None, desc: str) -> RawSplit:
    names, labels = layout.members(split)
    images = decode_members(tree, names, spec, workers=workers, progress=progress, desc=desc)
    return RawSplit(images, labels)


# ---------------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------------
def _sklearn_digits_path() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("scikit-learn is not installed: the digits source reads its bundled "
                        "sklearn/datasets/data/digits.csv.gz")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


@SOURCES.register("digits", "scikit-learn's bundled 8x8 handwritten digits: 1,797 grayscale images, offline")
class Digits(Source):
    """scikit-learn's digits (`sklearn.datasets.load_digits`), read from the file scikit-learn ships
    (sklearn/datasets/data/digits.csv.gz: 64 pixel values 0..16 and the label per row).

    Pixels become uint8 by round(v * 255 / 16); images (1797, 8, 8, 1); classes "0".."9"; test=None.
    No options.
    """

    OPTIONS: ClassVar[dict[str, str]] = {}

    def image_side(self, opts: Options) -> int | None:
        return 8

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        path = _sklearn_digits_path()
        if not path.is_file():
            raise DataError(f"{path}: not found (expected inside the installed scikit-learn)")
        check = f"shipped with scikit-learn {_version('scikit-learn')}"
        return Located([_file_record(path, "digits.csv.gz", check)], {}, {"path": path})

    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        path = located.state["path"]
        try:
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: cannot read the digits table ({exc})") from None
        if table.ndim != 2 or table.shape[1] != 65:
            raise DataError(f"{path}: expected 65 columns (64 pixels + label), got shape {table.shape}")
        pixels, labels = table[:, :64], table[:, 64]
        if pixels.min() < 0 or pixels.max() > 16 or not np.array_equal(labels, np.round(labels)):
            raise DataError(f"{path}: expected pixel values 0..16 and integer labels")
        images = np.rint(pixels * 255.0 / 16.0).astype(np.uint8).reshape(-1, 8, 8, 1)
        train = RawSplit(images, labels.astype(np.int64))
        names = [str(i) for i in range(10)]
        if train.labels.min() < 0 or train.labels.max() >= len(names):
            raise DataError(f"{path}: labels outside 0..9")
        return RawDataset("digits", names, train, None, {"decode": {"scale": "round(v * 255 / 16)"}})


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# ---------------------------------------------------------------------------------------------------
# Official URL, archive MD5 and per-file MD5s, as torchvision's CIFAR10/CIFAR100 classes carry them
# (tests check they still agree with the installed torchvision); `bytes`: the archive's size as the
# server announces it (Content-Length of www.cs.toronto.edu), checked before and while downloading.
CIFAR_SPECS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "filename": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "bytes": 170_498_071,
        "base_folder": "cifar-10-batches-py",
        "train": [["data_batch_1", "c99cafc152244af753f735de768cd75f"],
                  ["data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"],
                  ["data_batch_3", "54ebc095f3ab1f0389bbae665268c751"],
                  ["data_batch_4", "634d18415352ddfa80567beed471001a"],
                  ["data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"]],
        "test": [["test_batch", "40351d587109b95175f43aff81a1287e"]],
        "meta": ["batches.meta", "5ff9c542aee3614f3951f8cda6e48888"],
        "label_keys": {"fine": ("labels", "label_names")},
        "n_classes": 10,
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "filename": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "bytes": 169_001_437,
        "base_folder": "cifar-100-python",
        "train": [["train", "16019d7e3df5f24257cddd939b257f8d"]],
        "test": [["test", "f0ef6b0ae62326f3e7ffdfab6717acfc"]],
        "meta": ["meta", "7973b15100ade9c7d40fb424638fde48"],
        "label_keys": {"fine": ("fine_labels", "fine_label_names"),
                       "coarse": ("coarse_labels", "coarse_label_names")},
        "n_classes": 100,
    },
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_CIFAR_OPTIONS = {
    "root": "folder holding the extracted official <base_folder>/ (cifar-10-batches-py or cifar-100-python) "
            "or the official .tar.gz; nothing is downloaded",
    "archive": "path to the official python .tar.gz, or to one ZIP in the layout <split>/<class>/<image> "
               "with train/ (and optionally test/) folders; nothing is downloaded",
    "train_archive": "ZIP (or folder/tar) of training images, <class>/<image> or train/<class>/<image>, "
                     "e.g. ../shared/datasets/cifar10/cifar10_train.zip or its _subset",
    "test_archive": "ZIP (or folder/tar) of test images, <class>/<image> or test/<class>/<image>; "
                    "optional, needs train_archive",
    "md5": "expected MD5 of the .tar.gz (default: the official one torchvision carries); only for a re-packed "
           "archive or a mirror serving one",
    "mirror": "base URL the download stage fetches the official .tar.gz from instead of "
              "https://www.cs.toronto.edu/~kriz/ (the file name is appended; also $TRICKBENCH_DATA_MIRROR)",
}


def _local_copy_hint(spec: dict) -> str:
    return (f"without network, set data.options.archive to a local copy of {spec['filename']} (or data.options.root "
            f"to a folder holding it or {spec['base_folder']}/), or data.options.mirror / ${MIRROR_ENV} to a mirror")


class _PickleGlobals(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, dtypes and scalars: a pickle cannot run code."""

    _reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    _scalar = np.float64(1.0).__reduce__()[0]
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): _scalar,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _PickleGlobals(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"{where}: not a CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch(obj: dict, where: str, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    for key in ("data", label_key):
        if key not in obj:
            raise DataError(f"{where}: missing key b{key!r} (have {sorted(obj)}; expected the official CIFAR "
                            "python format)")
    data = np.asarray(obj["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    labels = np.asarray(obj[label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {len(labels)} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{where}: labels outside 0..{n_classes - 1}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


class _Cifar(Source):
    NAME: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""  # as the data set's authors write it, for messages
    # the class folders an image-folder copy must hold, in label order (None: any n_classes folders)
    CLASS_FOLDERS: ClassVar[list[str] | None] = None

    def spec(self) -> dict:
        return CIFAR_SPECS[self.NAME]

    def label_type(self, opts: Options) -> str:
        if "label_type" not in self.OPTIONS:
            return "fine"
        return opts.choice("label_type", tuple(self.spec()["label_keys"]), "fine")

    def image_side(self, opts: Options) -> int | None:
        self.label_type(opts)
        return 32

    # ---- locate
    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        spec = self.spec()
        modes = [k for k in ("root", "archive", "train_archive") if opts.has(k)]
        if opts.has("test_archive") and not opts.has("train_archive"):
            raise DataError("data.options.test_archive: needs data.options.train_archive as well")
        if len(modes) > 1:
            raise DataError(f"data.options: give only one of root, archive, train_archive (got {', '.join(modes)})")
        label_type = self.label_type(opts)
        if opts.text("mirror") is not None and modes:
            raise DataError(f"data.options.mirror: only used to download the official archive; "
                            f"data.options.{modes[0]} gives a local copy instead")
        if opts.has("train_archive"):
            archives = {"train": opts.path("train_archive"), "test": opts.path("test_archive")}
            return self._locate_trees(archives, label_type, fetching=fetching)
        archive = opts.path("archive")
        if archive is not None:
            if not archive.exists():
                raise DataError(f"{archive}: no such file (data.options.archive)")
            if not archive.is_dir():
                require_regular_file(archive, " (data.options.archive)")
            if archive.is_dir() or archive.name.lower().endswith(".zip") or zipfile.is_zipfile(archive):
                return self._locate_trees({"both": archive}, label_type, fetching=fetching)
            return self._locate_tarball(archive, opts, fetching=fetching)
        root = opts.path("root")
        if root is not None:
            if not root.is_dir():
                raise DataError(f"{root}: no such folder (data.options.root)")
            if (root / spec["base_folder"]).is_dir():
                return self._locate_extracted(root / spec["base_folder"])
            if root.name == spec["base_folder"]:
                return self._locate_extracted(root)
            if (root / spec["filename"]).is_file():
                return self._locate_tarball(root / spec["filename"], opts, fetching=fetching)
            raise DataError(f"{root}: holds neither {spec['base_folder']}/ nor {spec['filename']} "
                            "(data.options.root)")
        if (raw_dir / spec["base_folder"]).is_dir():
            return self._locate_extracted(raw_dir / spec["base_folder"])
        tarball = raw_dir / spec["filename"]
        if fetching:
            return self._fetch_tarball(tarball, opts)
        if not tarball.is_file():
            raise DataError(f"{tarball}: not found; run the download stage first (or set data.options.root, "
                            ".archive or .train_archive)")
        return self._locate_tarball(tarball, opts, fetching=fetching, retry="; run the download stage again")

    def _fetch_tarball(self, tarball: Path, opts: Options) -> Located:
        """The download stage without a local copy: a file already under the real name is verified like any
        other (never trusted for existing) and fetched again if it fails; else it is downloaded."""
        spec = self.spec()
        if os.path.lexists(tarball):
            try:
                return self._locate_tarball(tarball, opts, fetching=True)
            except DataError as exc:
                warnings.warn(f"{exc}; downloading it again", DataWarning, stacklevel=3)
        url = mirror_url(spec["url"], opts.text("mirror"), key="data.options.mirror")
        expected_bytes = None if opts.has("md5") else spec["bytes"]  # a re-packed archive has its own size
        print(f"download: fetching {url} -> {tarball}", file=sys.stdout, flush=True)
        got = download_file(url, tarball, md5=opts.text("md5") or spec["md5"], expected_bytes=expected_bytes,
                            local_copy=_local_copy_hint(spec))
        return self._locate_tarball(tarball, opts, fetching=True, md5=got["md5"], sha256=got["sha256"],
                                    url=url)

    def _locate_tarball(self, path: Path, opts: Options, *, fetching: bool, md5: str | None = None,
                        sha256: str | None = None, url: str | None = None, retry: str = "") -> Located:
        spec = self.spec()
        expected = opts.text("md5") or spec["md5"]
        what = "data.options.md5" if opts.has("md5") else f"the official MD5 (torchvision {self.NAME.upper()})"
        got = md5 or md5_file(path)
        if got != expected:
            raise DataError(f"{path}: MD5 {got} does not match {what} {expected} "
                            f"(corrupt, truncated or not the official python release){retry}")
        check = f"md5 {got} matches {what}" + (f"; downloaded from {url}" if url else "")
        record = _file_record(path, "archive", check, sha256=sha256)
        return Located([record], {"format": "official python pickles (.tar.gz)"}, {"tarball": path})

    def _locate_extracted(self, folder: Path) -> Located:
        spec = self.spec()
        records = []
        for role in ("train", "test", "meta"):
            entries = [spec["meta"]] if role == "meta" else spec[role]
            for name, expected in entries:
                path = folder / name
                if not path.is_file():
                    raise DataError(f"{path}: not found (expected the official {spec['base_folder']}/ folder)")
                got = md5_file(path)
                if got != expected:
                    raise DataError(f"{path}: MD5 {got} does not match the official {expected} "
                                    f"(torchvision {self.NAME.upper()}); corrupt or not the official release")
                records.append(_file_record(path, role, f"md5 {got} matches the official value"))
        return Located(records, {"format": "official python pickles (extracted)"}, {"folder": folder})

    def _locate_trees(self, archives: dict[str, Path | None], label_type: str, *, fetching: bool) -> Located:
        spec = self.spec()
        if label_type != "fine":
            raise DataError(f"data.options.label_type: {label_type!r} needs the official python archive; "
                            "image folders only carry one label per image")
        records, state, layouts = [], {}, {}
        try:
            for role, path in archives.items():
                if path is None:
                    continue
                if role == "both":
                    record, tree, layout = _locate_tree(path, "archive", fetching=fetching)
                    splits = [s for s in ("train", "test") if s in layout.splits]
                else:
                    other = "test" if role == "train" else "train"
                    record, tree, layout = _locate_tree(path, f"{role}_archive", fetching=fetching,
                                                        main_split=role, ignore_splits=(other,))
                    splits = [role]
                records.append(record)
                state[f"tree_{role}"] = tree
                for split in splits:
                    layouts[split] = (role, layout)
                    self._check_classes(layout.class_names, path)
        except BaseException:
            Located([], {}, state).close()
            raise
        if "train" in layouts and "test" in layouts:
            train_names, test_names = layouts["train"][1].class_names, layouts["test"][1].class_names
            if train_names != test_names:
                raise DataError(f"{archives.get('test') or archives.get('both')}: test class folders "
                                f"{test_names} differ from the training class folders {train_names}")
        state["layouts"] = layouts
        info = {"format": "image folders <split>/<class>/<image>",
                "counts": {split: {c: len(f) for c, f in layout.splits[split].items()}
                           for split, (_, layout) in layouts.items()},
                "n_skipped": sum(len(layout.skipped) for _, layout in layouts.values())}
        return Located(records, info, state)

    def _check_classes(self, names: list[str], path: Path) -> None:
        spec = self.spec()
        if self.CLASS_FOLDERS is not None and names != self.CLASS_FOLDERS:
            raise DataError(f"{path}: class folders {names} are not the {self.TITLE} classes "
                            f"{self.CLASS_FOLDERS}")
        if len(names) != spec["n_classes"]:
            raise DataError(f"{path}: {len(names)} class folders, expected {spec['n_classes']} for {self.NAME}")

    # ---- decode
    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        spec = self.spec()
        label_type = self.label_type(opts)
        if "layouts" in located.state:
            return self._decode_trees(located, progress=progress, workers=workers)
        label_key, names_key = spec["label_keys"][label_type]
        base = spec["base_folder"]
        wanted = [name for name, _ in spec["train"] + spec["test"]] + [spec["meta"][0]]
        if "tarball" in located.state:
            tarball = located.state["tarball"]
            raw = read_tar_members(tarball, [f"{base}/{name}" for name in wanted])
            blobs = {name: (raw[f"{base}/{name}"], f"{tarball}: member '{base}/{name}'") for name in wanted}
        else:
            folder = located.state["folder"]
            blobs = {name: (read_regular_file(folder / name), os.fspath(folder / name)) for name in wanted}
        meta_blob, meta_where = blobs[spec["meta"][0]]
        meta = _unpickle(meta_blob, meta_where)
        if names_key not in meta:
            raise DataError(f"{meta_where}: missing key b{names_key!r} (have {sorted(meta)})")
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
        splits = {}
        for split in ("train", "test"):
            parts = [_cifar_batch(_unpickle(*blobs[name]), blobs[name][1], label_key, len(class_names))
                     for name, _ in spec[split]]
            splits[split] = RawSplit(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return RawDataset(self.NAME, class_names, splits["train"], splits["test"],
                          {"label_type": label_type, "decode": {"format": "python pickle, CHW -> HWC"}})

    def _decode_trees(self, located: Located, *, progress: bool, workers: int | None) -> RawDataset:
        spec = DecodeSpec(channels=3, image_size=None, expected_hw=(32, 32))
        out: dict[str, RawSplit] = {}
        class_names: list[str] = []
        for split, (role, layout) in located.state["layouts"].items():
            tree = located.state[f"tree_{role}"]
            out[split] = _decode_split(tree, layout, split, spec, progress=progress, workers=workers,
                                       desc=f"{self.NAME} {split}")
            class_names = layout.class_names
        if "train" not in out:
            raise DataError(f"{located.files[0]['path']}: no train/ folder (expected <split>/<class>/<image>)")
        return RawDataset(self.NAME, class_names, out["train"], out.get("test"),
                          {"label_type": "fine", "decode": spec.describe()})


@SOURCES.register("cifar10", "CIFAR-10 (60,000 32x32 RGB, 10 classes): official python archive or image-folder ZIPs")
class Cifar10(_Cifar):
    """CIFAR-10, 32x32x3, classes airplane..truck (official label order), train 50,000 / test 10,000.

    Where the files come from (options, at most one of root / archive / train_archive):
    - none: raw_dir/cifar-10-batches-py/ or raw_dir/cifar-10-python.tar.gz; `fetch` downloads the
      official archive there (URL, MD5 and size as torchvision's CIFAR10 class has them; streamed to a
      temporary name, verified, renamed; a file already there is verified first and fetched again if it
      fails); `mirror` (or $TRICKBENCH_DATA_MIRROR) replaces the base URL;
    - root: a folder holding the extracted cifar-10-batches-py/ (each file checked against its official
      MD5) or cifar-10-python.tar.gz; archive: the official .tar.gz (MD5 checked; `md5` overrides) or one
      ZIP with train/ and test/ image folders;
    - train_archive (+ test_archive): ZIPs of images, `<split>/<class>/<image>` or `<class>/<image>`, like
      ../shared/datasets/cifar10/cifar10_train.zip and cifar10_test.zip (JPEG re-encodings of the
      official pixels; a MANIFEST.json beside them is used to check their sha256). Every image must be
      32x32 and the class folders must be the ten CIFAR-10 names.
    """

    NAME = "cifar10"
    TITLE = "CIFAR-10"
    CLASS_FOLDERS = CIFAR10_CLASSES
    OPTIONS: ClassVar[dict[str, str]] = dict(_CIFAR_OPTIONS)


@SOURCES.register("cifar100", "CIFAR-100 (60,000 32x32 RGB, 100 fine / 20 coarse classes): official python archive")
class Cifar100(_Cifar):
    """CIFAR-100, 32x32x3, 100 fine classes (default) or 20 coarse superclasses (`label_type: coarse`),
    train 50,000 / test 10,000. Options root, archive, train_archive, test_archive, md5 and mirror work as for
    cifar10, with the folder cifar-100-python/ (files train, test, meta), the archive
    cifar-100-python.tar.gz and torchvision's CIFAR100 URL and MD5s; image-folder ZIPs must hold 100 class
    folders and only give fine labels (label_type: coarse needs the official archive).
    """

    NAME = "cifar100"
    TITLE = "CIFAR-100"
    OPTIONS: ClassVar[dict[str, str]] = {
        **_CIFAR_OPTIONS,
        "label_type": "fine (100 classes, default) or coarse (20 superclasses); coarse needs the official archive",
    }


# ---------------------------------------------------------------------------------------------------
# image trees: ndsb, imagefolder
# ---------------------------------------------------------------------------------------------------
class _TreeSource(Source):
    """A ZIP, tar or folder of `<class>/<image>` or `<split>/<class>/<image>`."""

    NAME: ClassVar[str] = ""
    IGNORE_SPLITS: ClassVar[tuple[str, ...]] = ()

    def path(self, opts: Options, raw_dir: Path) -> Path:
        raise NotImplementedError

    def decode_spec(self, opts: Options) -> DecodeSpec:
        raise NotImplementedError

    def image_side(self, opts: Options) -> int | None:
        return self.decode_spec(opts).image_size

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        self.decode_spec(opts)  # option errors before any file work
        record, tree, layout = _locate_tree(self.path(opts, raw_dir), "archive", fetching=fetching,
                                            ignore_splits=self.IGNORE_SPLITS)
        return Located([record], _layout_info(layout), {"tree": tree, "layout": layout})

    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        tree, layout = located.state["tree"], located.state["layout"]
        spec = self.decode_spec(opts)
        train = _decode_split(tree, layout, "train", spec, progress=progress, workers=workers,
                              desc=f"{self.NAME} train")
        if spec.image_size is None and spec.expected_hw is None:  # the test split must match the train size
            spec = DecodeSpec(spec.channels, None, spec.pad_value, train.images.shape[1:3])
        test = None
        if "test" in layout.splits and "test" not in self.IGNORE_SPLITS:
            test = _decode_split(tree, layout, "test", spec, progress=progress, workers=workers,
                                 desc=f"{self.NAME} test")
        return RawDataset(self.NAME, layout.class_names, train, test, {"decode": spec.describe()})


@SOURCES.register("ndsb", "Kaggle National Data Science Bowl plankton: 121 classes, grayscale, variable size")
class Ndsb(_TreeSource):
    """National Data Science Bowl 2015 plankton images (121 classes, 30,336 labelled images), grayscale.

    Obtaining the data (no credentials are stored here): download train.zip of the Kaggle competition
    "datasciencebowl" (needs a Kaggle account), or NOAA NCEI's "PlanktonSet 1.0" (the same images), or
    use the 5,000-image subset ../shared/datasets/ndsb/ndsb_train_subset.zip.
    Layout: `train/<class>/<image>` (Kaggle train.zip; PlanktonSet's unlabelled test/ images are skipped
    with a warning) or `<class>/<image>`, in a ZIP, tar or folder, optionally below wrapping folders.
    Images are converted to one channel (Image.convert("L"); the shared subset is RGB with R = G = B),
    resized keeping the aspect ratio so the longer side is `image_size` (BICUBIC, up or down), centred
    and padded with `pad_value` (white: plankton is dark on white) to image_size x image_size.
    The default 80 leaves room for the paper's 70x70 random crops. test=None (Kaggle never released test
    labels; use a validation split). Options: archive (default raw_dir/train.zip), image_size, pad_value.
    """

    NAME = "ndsb"
    IGNORE_SPLITS = ("test",)
    OPTIONS: ClassVar[dict[str, str]] = {
        "archive": "Kaggle datasciencebowl train.zip, NOAA PlanktonSet 1.0 (ZIP, tar or folder) or "
                   "../shared/datasets/ndsb/ndsb_train_subset.zip; default raw_dir/train.zip",
        "image_size": "side of the square output (default 80): longer side resized to it keeping the aspect "
                      "ratio, centred, padded with pad_value",
        "pad_value": "background grey level for padding, 0..255 (default 255, white)",
    }

    def path(self, opts: Options, raw_dir: Path) -> Path:
        path = opts.path("archive") or raw_dir / "train.zip"
        if not path.exists():
            raise DataError(
                f"{path}: not found. NDSB cannot be downloaded without a Kaggle account: set data.options.archive "
                "to Kaggle's datasciencebowl train.zip, NOAA NCEI PlanktonSet 1.0, or "
                "../shared/datasets/ndsb/ndsb_train_subset.zip"
            )
        return path

    def decode_spec(self, opts: Options) -> DecodeSpec:
        return DecodeSpec(channels=1, image_size=opts.integer("image_size", 80, 8, 4096),
                          pad_value=opts.integer("pad_value", 255, 0, 255))

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        located = super().locate(opts, raw_dir, fetching=fetching)
        n = len(located.state["layout"].class_names)
        if n != 121:
            warnings.warn(f"{located.files[0]['path']}: {n} class folders, NDSB has 121", DataWarning, stacklevel=3)
        return located


@SOURCES.register("imagefolder", "any folder/ZIP/tar of <class>/<image> or <split>/<class>/<image> images")
class ImageFolder(_TreeSource):
    """Images in `<class>/<image>` (all train, test=None) or `<split>/<class>/<image>` (split: train, test)
    in a folder, ZIP or tar, in any format Pillow reads (extensions: see archives.IMAGE_EXTENSIONS; other
    files are skipped with a warning). Class index = position of the folder name in sorted order.

    Options: path (required); channels 3 (default, Image.convert("RGB")) or 1 (Image.convert("L"));
    image_size: resize keeping the aspect ratio and pad to a square as for ndsb, else every image must
    have the size of the first one (DataError naming the file that differs); pad_value (default 0).
    """

    NAME = "imagefolder"
    OPTIONS: ClassVar[dict[str, str]] = {
        "path": "folder, ZIP or tar of <class>/<image> or <split>/<class>/<image> (split: train, test); required",
        "channels": "3 (RGB, default) or 1 (grayscale)",
        "image_size": "side of the square output: longer side resized to it keeping the aspect ratio, centred, "
                      "padded with pad_value; absent: all images must have the same size",
        "pad_value": "padding value 0..255 for image_size (default 0)",
    }

    def path(self, opts: Options, raw_dir: Path) -> Path:
        path = opts.path("path", required=True)
        assert path is not None
        if not path.exists():
            raise DataError(f"{path}: no such file or folder (data.options.path)")
        return path

    def decode_spec(self, opts: Options) -> DecodeSpec:
        channels = opts.choice("channels", (1, 3), 3)
        return DecodeSpec(channels=channels, image_size=opts.integer("image_size", None, 1, 4096),
                          pad_value=opts.integer("pad_value", 0, 0, 255))


SOURCE_OPTIONS: dict[str, dict[str, str]] = {entry.name: dict(entry.fn.OPTIONS) for entry in SOURCES}
