"""CIFAR-10 and CIFAR-100: the official python archive (downloaded, or a local copy), its extracted folder,
or image-folder ZIPs of the same pixels."""
from __future__ import annotations

import codecs
import io
import os
import pickle
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trickbench.data import DataWarning
from trickbench.data.decode import DecodeSpec
from trickbench.data.download import MIRROR_ENV, download_file, mirror_url
from trickbench.data.files import md5_file, read_regular_file, require_regular_file
from trickbench.data.sources.base import Located, Options, RawDataset, RawSplit, Source, file_record, register
from trickbench.data.sources.tree_source import check_decoded_total, decode_split, locate_tree, write_example_tree
from trickbench.data.trees import read_tar_members
from trickbench.errors import DataError

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


def _integer_labels(raw: Any, where: str, key: str, n_classes: int) -> np.ndarray:
    """The labels under b`key` as int64, exactly: class indices 0..n_classes-1, never truncated floats or
    class names; DataError naming the file and the key otherwise."""
    expected = f"expected integer class indices 0..{n_classes - 1} (the official CIFAR python format)"
    items = raw.tolist() if isinstance(raw, np.ndarray) and raw.ndim == 1 else raw
    if not isinstance(items, (list, tuple)):
        raise DataError(f"{where}: key b{key!r} holds {type(raw).__name__}, not a list of labels; {expected}")
    bad = next((v for v in items if isinstance(v, bool) or not isinstance(v, int)), None)
    if bad is not None:
        raise DataError(f"{where}: key b{key!r} holds {bad!r:.40} ({type(bad).__name__}); {expected}")
    if items and (min(items) < 0 or max(items) >= n_classes):
        raise DataError(f"{where}: key b{key!r}: labels outside 0..{n_classes - 1}")
    return np.asarray(items, dtype=np.int64)


def _cifar_batch(obj: dict, where: str, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    for key in ("data", label_key):
        if key not in obj:
            raise DataError(f"{where}: missing key b{key!r} (have {sorted(obj)}; expected the official CIFAR "
                            "python format)")
    data = np.asarray(obj["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    labels = _integer_labels(obj[label_key], where, label_key, n_classes)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {len(labels)} labels for {data.shape[0]} images")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


class _Cifar(Source):
    TITLE: ClassVar[str] = ""  # as the data set's authors write it, for messages
    # the class folders an image-folder copy must hold, in label order (None: any n_classes folders)
    CLASS_FOLDERS: ClassVar[list[str] | None] = None

    def spec(self) -> dict:
        return CIFAR_SPECS[self.name]

    def label_type(self, opts: Options) -> str:
        if "label_type" not in self.OPTIONS:
            return "fine"
        return opts.choice("label_type", tuple(self.spec()["label_keys"]), "fine")

    def image_side(self, opts: Options) -> int | None:
        self.label_type(opts)
        return 32

    def example_options(self, folder: Path) -> dict[str, Any]:
        classes = self.CLASS_FOLDERS or [f"class_{index:03d}" for index in range(self.spec()["n_classes"])]
        write_example_tree(folder, classes, side=32, channels=3, splits=("train", "test"), per_class=1)
        return {"archive": str(folder)}

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
        what = "data.options.md5" if opts.has("md5") else f"the official MD5 (torchvision {self.name.upper()})"
        got = md5 or md5_file(path)
        if got != expected:
            raise DataError(f"{path}: MD5 {got} does not match {what} {expected} "
                            f"(corrupt, truncated or not the official python release){retry}")
        check = f"md5 {got} matches {what}" + (f"; downloaded from {url}" if url else "")
        record = file_record(path, "archive", check, sha256=sha256)
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
                                    f"(torchvision {self.name.upper()}); corrupt or not the official release")
                records.append(file_record(path, role, f"md5 {got} matches the official value"))
        return Located(records, {"format": "official python pickles (extracted)"}, {"folder": folder})

    def _locate_trees(self, archives: dict[str, Path | None], label_type: str, *, fetching: bool) -> Located:
        if label_type != "fine":
            raise DataError(f"data.options.label_type: {label_type!r} needs the official python archive; "
                            "image folders only carry one label per image")
        records, state, layouts = [], {}, {}
        try:
            for role, path in archives.items():
                if path is None:
                    continue
                if role == "both":
                    record, tree, layout = locate_tree(path, "archive", fetching=fetching)
                    splits = [s for s in ("train", "test") if s in layout.splits]
                else:
                    other = "test" if role == "train" else "train"
                    record, tree, layout = locate_tree(path, f"{role}_archive", fetching=fetching,
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
            raise DataError(f"{path}: {len(names)} class folders, expected {spec['n_classes']} for {self.name}")

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
        return RawDataset(self.name, class_names, splits["train"], splits["test"],
                          {"label_type": label_type, "decode": {"format": "python pickle, CHW -> HWC"}})

    def _decode_trees(self, located: Located, *, progress: bool, workers: int | None) -> RawDataset:
        spec = DecodeSpec(channels=3, image_size=None, expected_hw=(32, 32))
        out: dict[str, RawSplit] = {}
        class_names: list[str] = []
        check_decoded_total([(located.state[f"tree_{role}"], layout, split)
                             for split, (role, layout) in located.state["layouts"].items()], spec)
        for split, (role, layout) in located.state["layouts"].items():
            tree = located.state[f"tree_{role}"]
            out[split] = decode_split(tree, layout, split, spec, progress=progress, workers=workers,
                                       desc=f"{self.name} {split}")
            class_names = layout.class_names
        if "train" not in out:
            raise DataError(f"{located.files[0]['path']}: no train/ folder (expected <split>/<class>/<image>)")
        return RawDataset(self.name, class_names, out["train"], out.get("test"),
                          {"label_type": "fine", "decode": spec.describe()})


@register("cifar10", "CIFAR-10 (60,000 32x32 RGB, 10 classes): official python archive or image-folder ZIPs")
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

    TITLE = "CIFAR-10"
    CLASS_FOLDERS = CIFAR10_CLASSES
    OPTIONS: ClassVar[dict[str, str]] = dict(_CIFAR_OPTIONS)


@register("cifar100", "CIFAR-100 (60,000 32x32 RGB, 100 fine / 20 coarse classes): official python archive")
class Cifar100(_Cifar):
    """CIFAR-100, 32x32x3, 100 fine classes (default) or 20 coarse superclasses (`label_type: coarse`),
    train 50,000 / test 10,000. Options root, archive, train_archive, test_archive, md5 and mirror work as for
    cifar10, with the folder cifar-100-python/ (files train, test, meta), the archive
    cifar-100-python.tar.gz and torchvision's CIFAR100 URL and MD5s; image-folder ZIPs must hold 100 class
    folders and only give fine labels (label_type: coarse needs the official archive).
    """

    TITLE = "CIFAR-100"
    OPTIONS: ClassVar[dict[str, str]] = {
        **_CIFAR_OPTIONS,
        "label_type": "fine (100 classes, default) or coarse (20 superclasses); coarse needs the official archive",
    }

