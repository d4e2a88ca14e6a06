"""Data sources on real data (../shared/datasets) and on small inputs the tests build themselves."""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_fixtures import (
    build_cifar, hwc, image_bytes, image_tree, random_pixels, shared_datasets, write_folder, write_tar, write_zip,
)
from trickbench.data import decode, sources
from trickbench.data.files import md5_file
from trickbench.data.sources import cifar
from trickbench.data.sources import DataError, DataWarning, fetch, load
from trickbench.io import sha256_arrays, sha256_file
from trickbench.registry import UnknownComponentError

SHARED = shared_datasets()
CIFAR_DIR = SHARED / "cifar10"
NDSB_ZIP = SHARED / "ndsb" / "ndsb_train_subset.zip"


def needs_shared(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            pytest.skip(f"{path} not available (set TRICKBENCH_SHARED_DATASETS)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ---------------------------------------------------------------------------------------------------
# registry, options
# ---------------------------------------------------------------------------------------------------
def test_cifar100_alone_offers_coarse_labels():
    assert sources.SOURCES.get("cifar100").OPTIONS["label_type"]
    assert "label_type" not in sources.SOURCES.get("cifar10").OPTIONS


def test_unknown_source_and_option_are_named(tmp_path):
    with pytest.raises(UnknownComponentError, match="cifar11"):
        fetch("cifar11", {}, tmp_path)
    with pytest.raises(DataError, match=r"data\.options\.imagesize.*image_size"):
        load("ndsb", {"imagesize": 70}, tmp_path)
    with pytest.raises(DataError, match=r"data\.options\.channels"):
        load("imagefolder", {"path": str(tmp_path), "channels": 2}, tmp_path)


# ---------------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------------
def test_digits_matches_sklearn(tmp_path):
    from sklearn.datasets import load_digits

    data = load("digits", {}, tmp_path, progress=False)
    assert data.class_names == [str(i) for i in range(10)] and data.test is None
    assert data.train.images.shape == (1797, 8, 8, 1) and data.train.images.dtype == np.uint8
    assert data.train.images.min() == 0 and data.train.images.max() == 255
    reference = load_digits()
    np.testing.assert_array_equal(data.train.images[..., 0], np.round(reference.images * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(data.train.labels, reference.target)
    assert data.train.labels.dtype == np.int64
    json.dumps(data.provenance)


def test_digits_fetch_records_the_sklearn_file(tmp_path):
    record = fetch("digits", None, tmp_path)
    (entry,) = record["files"]
    assert entry["path"].endswith("digits.csv.gz")
    assert entry["sha256"] == sha256_file(entry["path"]) and entry["bytes"] == Path(entry["path"]).stat().st_size
    json.dumps(record)


# ---------------------------------------------------------------------------------------------------
# CIFAR in the official python format (archives built here)
# ---------------------------------------------------------------------------------------------------
def test_cifar_constants_agree_with_torchvision():
    tv = pytest.importorskip("torchvision.datasets")
    for name, cls in (("cifar10", tv.CIFAR10), ("cifar100", tv.CIFAR100)):
        spec = cifar.CIFAR_SPECS[name]
        assert (spec["url"], spec["filename"], spec["md5"], spec["base_folder"]) == \
            (cls.url, cls.filename, cls.tgz_md5, cls.base_folder)
        assert spec["train"] == cls.train_list and spec["test"] == cls.test_list
        assert spec["meta"] == [cls.meta["filename"], cls.meta["md5"]]


def test_cifar10_tarball(tmp_path, rng):
    built = build_cifar(tmp_path, rng, kind="cifar10", n=5)
    data = load("cifar10", {"archive": str(built["tarball"]), "md5": built["tar_md5"]}, tmp_path / "raw")
    expected = built["expected"]
    assert data.class_names == expected["class_names"]
    assert data.train.images.shape == (25, 32, 32, 3) and data.test.images.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(data.train.images, hwc(expected["train"][0]))
    np.testing.assert_array_equal(data.train.labels, expected["train"][1])
    np.testing.assert_array_equal(data.test.images, hwc(expected["test"][0]))
    np.testing.assert_array_equal(data.test.labels, expected["test"][1])
    record = fetch("cifar10", {"archive": str(built["tarball"]), "md5": built["tar_md5"]}, tmp_path / "raw")
    assert record["files"][0]["sha256"] == sha256_file(built["tarball"])
    json.dumps(data.provenance)


def test_cifar10_checksum_mismatch_names_the_file(tmp_path, rng):
    built = build_cifar(tmp_path, rng, kind="cifar10")
    # the official MD5 (the default) cannot match an archive built here
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: MD5 .* official"):
        fetch("cifar10", {"archive": str(built["tarball"])}, tmp_path)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: MD5 .* data\.options\.md5"):
        load("cifar10", {"archive": str(built["tarball"]), "md5": "0" * 32}, tmp_path)


def test_cifar10_extracted_folder_and_torchvision(tmp_path, rng, monkeypatch):
    tv = pytest.importorskip("torchvision.datasets")
    built = build_cifar(tmp_path, rng, kind="cifar10", n=3)
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_1: MD5 .* official"):
        fetch("cifar10", {"root": str(tmp_path)}, tmp_path)
    spec = cifar.CIFAR_SPECS["cifar10"]
    ours = {"train": [[n, built["md5"][n]] for n, _ in spec["train"]], "test": [["test_batch", built["md5"]["test_batch"]]],
            "meta": ["batches.meta", built["md5"]["batches.meta"]]}
    monkeypatch.setitem(cifar.CIFAR_SPECS, "cifar10", {**spec, **ours})
    record = fetch("cifar10", {"root": str(tmp_path)}, tmp_path)
    assert [Path(f["path"]).name for f in record["files"]] == \
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    assert all(f["sha256"] == sha256_file(f["path"]) for f in record["files"])
    data = load("cifar10", {"root": str(tmp_path)}, tmp_path)
    # torchvision reads the same folder (with encoding="latin1") and must agree
    monkeypatch.setattr(tv.CIFAR10, "train_list", ours["train"])
    monkeypatch.setattr(tv.CIFAR10, "test_list", ours["test"])
    monkeypatch.setattr(tv.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                             "md5": built["md5"]["batches.meta"]})
    for split, train in (("train", True), ("test", False)):
        reference = tv.CIFAR10(str(tmp_path), train=train, download=False)
        np.testing.assert_array_equal(getattr(data, split).images, reference.data)
        np.testing.assert_array_equal(getattr(data, split).labels, reference.targets)
        assert data.class_names == reference.classes
    # one changed byte in one file is caught
    path = built["folder"] / "data_batch_3"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"data_batch_3: MD5"):
        load("cifar10", {"root": str(tmp_path)}, tmp_path)


def test_cifar100_fine_and_coarse(tmp_path, rng):
    built = build_cifar(tmp_path, rng, kind="cifar100", n=6)
    expected = built["expected"]
    options = {"archive": str(built["tarball"]), "md5": built["tar_md5"]}
    fine = load("cifar100", options, tmp_path)
    coarse = load("cifar100", {**options, "label_type": "coarse"}, tmp_path)
    assert fine.class_names == expected["class_names"] and coarse.class_names == expected["coarse_names"]
    for split in ("train", "test"):
        x, y_fine, y_coarse = expected[split]
        np.testing.assert_array_equal(getattr(fine, split).images, hwc(x))
        np.testing.assert_array_equal(getattr(coarse, split).images, hwc(x))
        np.testing.assert_array_equal(getattr(fine, split).labels, y_fine)
        np.testing.assert_array_equal(getattr(coarse, split).labels, y_coarse)
    assert coarse.provenance["label_type"] == "coarse"
    with pytest.raises(DataError, match=r"label_type"):
        load("cifar100", {**options, "label_type": "medium"}, tmp_path)
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz: MD5"):
        load("cifar100", {"archive": str(built["tarball"])}, tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path, rng, monkeypatch):
    built = build_cifar(tmp_path, rng, kind="cifar10")
    evil = pickle.dumps({"data": os.getcwd}, protocol=2)  # unpickling would call a global: refused
    (built["folder"] / "test_batch").write_bytes(evil)
    spec = cifar.CIFAR_SPECS["cifar10"]
    names = [n for n, _ in spec["train"]] + ["test_batch"]
    ours = {"train": [[n, md5_file(built["folder"] / n)] for n in names[:5]],
            "test": [["test_batch", md5_file(built["folder"] / "test_batch")]],
            "meta": ["batches.meta", built["md5"]["batches.meta"]]}
    monkeypatch.setitem(cifar.CIFAR_SPECS, "cifar10", {**spec, **ours})
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR python pickle .*refusing to load global posix\.getcwd"):
        load("cifar10", {"root": str(tmp_path)}, tmp_path)


def test_cifar_download_failure_and_missing_download(tmp_path):
    """In-process view of the offline download (tests/test_download.py runs the CLI against a server)."""
    import socket

    from trickbench.data.download import NetworkError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # released: nothing listens there
    with pytest.raises(NetworkError, match=rf"network unreachable: cannot fetch http://127\.0\.0\.1:{port}/"
                                           r"cifar-10-python\.tar\.gz \(connection refused\).*data\.options\.archive"):
        fetch("cifar10", {"mirror": f"http://127.0.0.1:{port}"}, tmp_path / "raw")
    assert issubclass(NetworkError, DataError)
    assert not any((tmp_path / "raw").iterdir())  # no partial file left behind
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz: not found; run the download stage"):
        load("cifar100", {}, tmp_path / "raw")
    with pytest.raises(DataError, match=r"data\.options\.mirror: only used to download .*data\.options\.root"):
        fetch("cifar10", {"mirror": "http://example.org", "root": str(tmp_path)}, tmp_path / "raw")
    with pytest.raises(DataError, match=r"data\.options\.mirror: .*data\.options\.train_archive gives a local copy"):
        fetch("cifar10", {"mirror": "http://example.org", "train_archive": str(tmp_path)}, tmp_path / "raw")


def test_cifar_corrupt_tarball(tmp_path, rng):
    built = build_cifar(tmp_path, rng, kind="cifar10")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(built["tarball"].read_bytes()[:2000])
    with pytest.raises(DataError, match=r"cut\.tar\.gz: corrupt or truncated"):
        load("cifar10", {"archive": str(truncated), "md5": md5_file(truncated)}, tmp_path)


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 image ZIPs from ../shared/datasets
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_subsets():
    train, test = CIFAR_DIR / "cifar10_train_subset.zip", CIFAR_DIR / "cifar10_test_subset.zip"
    needs_shared(train, test)
    options = {"train_archive": str(train), "test_archive": str(test)}
    return options, load("cifar10", options, "unused-raw-dir", progress=False)


def test_cifar10_shared_test_subset(cifar_subsets):
    options, data = cifar_subsets
    manifest = json.loads((CIFAR_DIR / "MANIFEST.json").read_text())
    assert data.class_names == cifar.CIFAR10_CLASSES == manifest["class_names"]
    assert data.test.images.shape == (2000, 32, 32, 3) and data.test.images.dtype == np.uint8
    assert np.bincount(data.test.labels).tolist() == [200] * 10
    assert data.train.images.shape == (10000, 32, 32, 3) and np.bincount(data.train.labels).tolist() == [1000] * 10
    assert (np.diff(data.test.labels) >= 0).all()  # class order, then file name
    # pixels equal Pillow's own decode of sampled members
    with zipfile.ZipFile(options["test_archive"]) as zf:
        for cls_index, cls, number in ((0, "airplane", 0), (3, "cat", 7), (9, "truck", 199), (5, "dog", 123)):
            reference = np.asarray(Image.open(io.BytesIO(zf.read(f"test/{cls}/{number:04d}.jpg"))).convert("RGB"))
            np.testing.assert_array_equal(data.test.images[cls_index * 200 + number], reference)
    assert data.provenance["splits"]["test"]["per_class"]["truck"] == 200
    json.dumps(data.provenance)


def test_cifar10_shared_decode_is_stable(cifar_subsets):
    options, first = cifar_subsets
    second = load("cifar10", options, "unused-raw-dir", progress=False, workers=1)  # other code path
    assert sha256_arrays(first.train.images, first.train.labels, first.test.images, first.test.labels) == \
        sha256_arrays(second.train.images, second.train.labels, second.test.images, second.test.labels)


def test_cifar10_shared_fetch_records_checksums(tmp_path):
    test = CIFAR_DIR / "cifar10_test_subset.zip"
    train = CIFAR_DIR / "cifar10_train_subset.zip"
    needs_shared(test, train)
    manifest = json.loads((CIFAR_DIR / "MANIFEST.json").read_text())["archives"]
    record = fetch("cifar10", {"train_archive": str(train), "test_archive": str(test)}, tmp_path)
    assert record["source"] == "cifar10" and len(record["files"]) == 2
    for entry, path in zip(record["files"], (train, test)):
        assert entry["path"] == str(path)
        assert entry["sha256"] == manifest[path.name]["sha256"] == sha256_file(path)
        assert entry["bytes"] == path.stat().st_size
        assert "MANIFEST.json" in entry["check"] and "CRC-32" in entry["check"]
    assert record["counts"]["test"]["cat"] == 200
    json.dumps(record)
    # the same archive with a MANIFEST.json that lists another sha256
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(test, copy / test.name)
    (copy / "MANIFEST.json").write_text(json.dumps({"archives": {test.name: {"sha256": "f" * 64}}}))
    with pytest.raises(DataError, match=r"cifar10_test_subset\.zip: sha256 .* does not match"):
        fetch("cifar10", {"train_archive": str(train), "test_archive": str(copy / test.name)}, tmp_path)


def test_cifar10_zip_checks_classes_and_size(tmp_path, rng):
    members, _ = image_tree(rng, splits=("train",), classes={c: 1 for c in cifar.CIFAR10_CLASSES}, size=(32, 32))
    good = write_zip(tmp_path / "good.zip", members)
    data = load("cifar10", {"archive": str(good)}, tmp_path)
    assert data.test is None and data.train.images.shape == (10, 32, 32, 3)
    members["train/cat/001.png"] = image_bytes(random_pixels(rng, (28, 28), 3))
    with pytest.raises(DataError, match=r"member 'train/cat/001\.png'.*28x28.*32x32"):
        load("cifar10", {"archive": str(write_zip(tmp_path / "size.zip", members))}, tmp_path)
    wrong, _ = image_tree(rng, splits=("train",), classes={"a": 1, "b": 1}, size=(32, 32))
    with pytest.raises(DataError, match=r"wrong\.zip: class folders \['a', 'b'\] are not the CIFAR-10 classes"):
        fetch("cifar10", {"archive": str(write_zip(tmp_path / "wrong.zip", wrong))}, tmp_path)
    with pytest.raises(DataError, match=r"test_archive: needs data\.options\.train_archive"):
        fetch("cifar10", {"test_archive": str(good)}, tmp_path)
    test_only = write_zip(tmp_path / "test_only.zip", {k.replace("train/", "test/"): v for k, v in members.items()})
    with pytest.warns(DataWarning, match="not used|ignoring"), \
            pytest.raises(DataError, match=r"test_only\.zip: no labelled train/ split \(found test/ \(not used here\)"):
        fetch("cifar10", {"train_archive": str(test_only)}, tmp_path)
    with pytest.raises(DataError, match=r"only one of root, archive, train_archive"):
        fetch("cifar10", {"archive": str(good), "root": str(tmp_path)}, tmp_path)


# ---------------------------------------------------------------------------------------------------
# NDSB subset from ../shared/datasets
# ---------------------------------------------------------------------------------------------------
def reference_ndsb(data: bytes, size: int = 80) -> np.ndarray:
    """The documented ndsb transform, written independently: R channel of Pillow's RGB decode, longer
    side resized to `size` (bicubic), centred on a white square."""
    channel = Image.open(io.BytesIO(data)).convert("RGB").getchannel("R")
    w, h = channel.size
    nw, nh = max(1, round(w * size / max(w, h))), max(1, round(h * size / max(w, h)))
    if (nw, nh) != (w, h):
        channel = channel.resize((nw, nh), Image.Resampling.BICUBIC)
    out = np.full((size, size), 255, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = np.asarray(channel)
    return out


def test_ndsb_shared_subset(tmp_path):
    needs_shared(NDSB_ZIP)
    manifest = json.loads((NDSB_ZIP.parent / "MANIFEST.json").read_text())
    data = load("ndsb", {"archive": str(NDSB_ZIP)}, tmp_path, progress=False, workers=2)  # the pool path
    assert data.test is None and len(data.class_names) == 121
    assert data.class_names == manifest["class_names"] == sorted(data.class_names)
    assert data.train.images.shape == (5000, 80, 80, 1) and data.train.images.dtype == np.uint8
    per_class = manifest["archives"]["ndsb_train_subset.zip"]["per_class"]
    assert np.bincount(data.train.labels, minlength=121).tolist() == [per_class[c] for c in data.class_names]
    with zipfile.ZipFile(NDSB_ZIP) as zf:
        names = sorted(n for n in zf.namelist() if not n.endswith("/"))  # = class order, then file name
        for index in (0, 1, 777, 2500, 4999):
            np.testing.assert_array_equal(data.train.images[index, :, :, 0], reference_ndsb(zf.read(names[index])))
            assert data.class_names[data.train.labels[index]] == names[index].split("/")[1]
    assert data.provenance["files"][0]["sha256"] == manifest["archives"]["ndsb_train_subset.zip"]["sha256"]
    json.dumps(data.provenance)


def test_ndsb_needs_a_local_copy(tmp_path):
    with pytest.raises(DataError, match=r"train\.zip: not found.*datasciencebowl.*PlanktonSet"):
        fetch("ndsb", {}, tmp_path)


def test_ndsb_planktonset_layout(tmp_path, rng):
    """Wrapping folders and an unlabelled flat test/ folder (PlanktonSet 1.0) are handled."""
    members, _ = image_tree(rng, splits=("train",), classes={"copepod": 2, "diatom": 1}, size=(30, 12))
    members = {f"planktonset/{k}": v for k, v in members.items()}
    members["planktonset/test/99.png"] = image_bytes(random_pixels(rng, (5, 5), 1))
    with pytest.warns(DataWarning) as caught:
        data = load("ndsb", {"archive": str(write_zip(tmp_path / "ps.zip", members)), "image_size": 20}, tmp_path)
    messages = " | ".join(str(w.message) for w in caught)
    assert "ignoring 1 image(s) under test/" in messages and "2 class folders, NDSB has 121" in messages
    assert data.class_names == ["copepod", "diatom"] and data.train.images.shape == (3, 20, 20, 1)
    assert (data.train.images[:, :6] == 255).all() and (data.train.images[:, -6:] == 255).all()  # 30x12 -> 20x8


# ---------------------------------------------------------------------------------------------------
# imagefolder
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("container", ["zip", "folder", "tar"])
@pytest.mark.parametrize("splits", [None, ("train", "test")])
def test_imagefolder_roundtrip(tmp_path, rng, container, splits):
    members, pixels = image_tree(rng, splits=splits, classes={"zebra": 3, "ant": 2, "moth": 2},
                                 channels_by_class={"moth": 1})
    members = dict(reversed(members.items()))  # archive order must not matter: class, then file name
    path = {"zip": lambda: write_zip(tmp_path / "t.zip", members),
            "folder": lambda: write_folder(tmp_path / "t", members),
            "tar": lambda: write_tar(tmp_path / "t.tar.gz", members)}[container]()
    for channels in (3, 1):
        data = load("imagefolder", {"path": str(path), "channels": channels}, tmp_path, progress=False)
        assert data.class_names == ["ant", "moth", "zebra"]
        assert (data.test is None) == (splits is None)
        for split in ("train", "test") if splits else ("train",):
            part = getattr(data, split)
            names = sorted(pixels[split], key=lambda n: (n.split("/")[-2], n))
            assert part.images.shape == (7, 5, 6, channels)
            assert part.labels.tolist() == [0, 0, 1, 1, 2, 2, 2]
            for i, name in enumerate(names):
                rgb = pixels[split][name]
                want = rgb if channels == 3 else np.asarray(Image.fromarray(rgb).convert("L"))[..., None]
                np.testing.assert_array_equal(part.images[i], want)
    record = fetch("imagefolder", {"path": str(path)}, tmp_path)
    assert record["files"][0]["kind"] == {"zip": "zip", "folder": "dir", "tar": "tar"}[container]
    assert len(record["files"][0]["sha256"]) == 64
    json.dumps(record)


def test_imagefolder_folder_digest_covers_every_file(tmp_path, rng):
    members, _ = image_tree(rng, splits=None, classes={"a": 2, "b": 1})
    folder = write_folder(tmp_path / "f", members)
    before = fetch("imagefolder", {"path": str(folder)}, tmp_path)["files"][0]["sha256"]
    (folder / "b" / "000.png").write_bytes(image_bytes(random_pixels(rng, (6, 5), 3)))
    assert fetch("imagefolder", {"path": str(folder)}, tmp_path)["files"][0]["sha256"] != before


def test_imagefolder_resize_and_pad(tmp_path, rng):
    members = {"a/wide.png": image_bytes(np.full((10, 40, 3), 7, np.uint8)),
               "b/tall.png": image_bytes(np.full((40, 20, 3), 9, np.uint8))}
    path = write_zip(tmp_path / "m.zip", members)
    with pytest.raises(DataError, match=r"member 'b/tall\.png'.*20x40.*40x10.*image_size"):
        load("imagefolder", {"path": str(path)}, tmp_path)
    data = load("imagefolder", {"path": str(path), "image_size": 8, "pad_value": 100}, tmp_path)
    wide, tall = data.train.images[..., 0]
    assert (wide[:3] == 100).all() and (wide[3:5] == 7).all() and (wide[5:] == 100).all()  # 40x10 -> 8x2
    assert (tall[:, :2] == 100).all() and (tall[:, 2:6] == 9).all() and (tall[:, 6:] == 100).all()  # 20x40 -> 4x8


def test_imagefolder_skips_non_images_with_a_warning(tmp_path, rng):
    members, _ = image_tree(rng, splits=("train", "test"), classes={"a": 1, "b": 1})
    members["train/README.txt"] = b"hello"
    members["train/a/.DS_Store"] = b"\0\0"
    with pytest.warns(DataWarning, match=r"skipping 2 non-image member\(s\): .*train/README\.txt"):
        data = load("imagefolder", {"path": str(write_zip(tmp_path / "r.zip", members))}, tmp_path)
    assert len(data.train) == 2 and len(data.test) == 2
    assert data.provenance["n_skipped"] == 2


def _bad_tree_cases(rng):
    good, _ = image_tree(rng, splits=("train",), classes={"a": 1, "b": 1})
    png = good["train/a/000.png"]
    return {
        "dotdot": ({**good, "../evil.png": png}, (), r"unsafe member name '\.\./evil\.png'"),
        "nested_dotdot": ({**good, "train/a/../../evil.png": png}, (), r"unsafe member name 'train/a/\.\./\.\./evil"),
        "absolute": ({**good, "/etc/evil.png": png}, (), r"unsafe member name '/etc/evil\.png'"),
        "empty_class": (good, ("train/c/",), r"class folder 'train/c/' holds no images"),
        "only_readme": ({**good, "train/c/README.txt": b"x"}, (), r"class folder 'train/c/' holds no images"),
        "undecodable": ({**good, "train/b/broken.png": b"\x89PNG\r\n\x1a\nnot really"}, (),
                        r"member 'train/b/broken\.png': cannot decode image"),
        "truncated_png": ({**good, "train/b/cut.png": png[: len(png) // 2]}, (),
                          r"member 'train/b/cut\.png': cannot decode image"),
        "val_folder": ({**good, "val/a/000.png": png}, (), r"member 'val/a/000\.png' is outside the split folders"),
        "split_mismatch": ({**good, "test/a/000.png": png}, (), r"test/ differ from train/ \(missing: \['b'\]"),
        "too_deep": ({**good, "train/a/x/000.png": png}, (), r"'train/a/x/000\.png' is nested too deep"),
    }


@pytest.mark.parametrize("case", ["dotdot", "nested_dotdot", "absolute", "empty_class", "only_readme", "undecodable",
                                  "truncated_png", "val_folder", "split_mismatch", "too_deep"])
def test_imagefolder_bad_zip(tmp_path, rng, case):
    members, dirs, message = _bad_tree_cases(rng)[case]
    path = write_zip(tmp_path / f"{case}.zip", members, dirs)
    with pytest.warns(DataWarning) if case == "only_readme" else contextlib.nullcontext():
        with pytest.raises(DataError, match=rf"{case}\.zip: .*{message}"):
            load("imagefolder", {"path": str(path)}, tmp_path)


def test_imagefolder_bad_folder(tmp_path, rng):
    members, _ = image_tree(rng, splits=None, classes={"a": 1, "b": 1})
    folder = write_folder(tmp_path / "f", members, dirs=("c",))
    with pytest.raises(DataError, match=r"f: class folder 'c/' holds no images"):
        fetch("imagefolder", {"path": str(folder)}, tmp_path)
    (folder / "c" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"f/c/x\.png: cannot decode image"):
        load("imagefolder", {"path": str(folder)}, tmp_path)


def test_imagefolder_tar_rejects_links(tmp_path, rng):
    members, _ = image_tree(rng, splits=None, classes={"a": 1})
    path = write_tar(tmp_path / "l.tar.gz", members, symlinks={"a/link.png": "/etc/passwd"})
    with pytest.raises(DataError, match=r"l\.tar\.gz: member 'a/link\.png' is a link"):
        fetch("imagefolder", {"path": str(path)}, tmp_path)


def test_corrupt_and_truncated_zip(tmp_path, rng):
    members, _ = image_tree(rng, splits=("train",), classes={"a": 3, "b": 3})
    blob = write_zip(tmp_path / "ok.zip", members).read_bytes()
    (tmp_path / "truncated.zip").write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(DataError, match=r"truncated\.zip: not a readable ZIP archive"):
        fetch("imagefolder", {"path": str(tmp_path / "truncated.zip")}, tmp_path)
    (tmp_path / "text.zip").write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match=r"text\.zip: not a readable ZIP archive"):
        load("imagefolder", {"path": str(tmp_path / "text.zip")}, tmp_path)
    # flip one byte inside a stored member: the CRC check of fetch names it
    with zipfile.ZipFile(tmp_path / "ok.zip") as zf:
        info = zf.getinfo("train/b/001.png")
    corrupt = bytearray(blob)
    corrupt[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match=r"crc\.zip: member 'train/b/001\.png' fails its CRC-32 check"):
        fetch("imagefolder", {"path": str(tmp_path / "crc.zip")}, tmp_path)
    with pytest.raises(DataError, match=r"crc\.zip: member 'train/b/001\.png': cannot read"):
        load("imagefolder", {"path": str(tmp_path / "crc.zip")}, tmp_path)


def test_missing_option_and_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"data\.options\.path: data source 'imagefolder' needs this option"):
        fetch("imagefolder", {}, tmp_path)
    with pytest.raises(DataError, match=r"nowhere\.zip: no such file or folder"):
        fetch("imagefolder", {"path": str(tmp_path / "nowhere.zip")}, tmp_path)
    with pytest.raises(DataError, match=r"nowhere\.tar\.gz: no such file"):
        fetch("cifar10", {"archive": str(tmp_path / "nowhere.tar.gz")}, tmp_path)
    with pytest.raises(DataError, match=r"nothing: no such folder \(data\.options\.root\)"):
        fetch("cifar10", {"root": str(tmp_path / "nothing")}, tmp_path)


@pytest.mark.parametrize("container", ["zip", "folder"])
def test_pool_decoding_matches_in_process_and_names_bad_member(tmp_path, rng, container):
    n = decode.POOL_MIN_IMAGES + 100
    members = {f"c{i % 3}/{i:05d}.png": image_bytes(random_pixels(rng, (4, 4), 3)) for i in range(n)}
    if container == "folder":
        folder = write_folder(tmp_path / "many", members)
        data = load("imagefolder", {"path": str(folder)}, tmp_path, progress=False, workers=2)
        assert data.train.images.shape == (n, 4, 4, 3)
        (folder / "c1" / "01234.png").write_bytes(b"not a png")
        with pytest.raises(DataError, match=r"many/c1/01234\.png: cannot decode image"):
            load("imagefolder", {"path": str(folder)}, tmp_path, progress=False, workers=2)
        return
    path = write_zip(tmp_path / "many.zip", members)
    pooled = load("imagefolder", {"path": str(path)}, tmp_path, progress=False, workers=2)
    serial = load("imagefolder", {"path": str(path)}, tmp_path, progress=False, workers=1)
    np.testing.assert_array_equal(pooled.train.images, serial.train.images)
    np.testing.assert_array_equal(pooled.train.labels, serial.train.labels)
    members["c1/01234.png"] = b"not a png"
    path = write_zip(tmp_path / "many_bad.zip", members)
    with pytest.raises(DataError, match=r"many_bad\.zip: member 'c1/01234\.png': cannot decode image"):
        load("imagefolder", {"path": str(path)}, tmp_path, progress=False, workers=2)
