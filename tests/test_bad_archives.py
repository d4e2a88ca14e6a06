"""Hostile and broken data inputs, through the real `trickbench download` / `prepare` CLI: compression
bombs, lying headers, too many or too deep members, traversal names, links, FIFOs and devices (in ZIPs,
tars and folders), truncated and non-archives, wrong layouts and images that are not images.

Each case must exit 2 with one `trickbench <stage>: error:` line naming the archive (and member), print
no traceback, write nothing under artifacts/ (download-stage cases: no file at all; prepare-stage
cases: nothing beyond the download record) and end within TIMEOUT_S: a hang is a failure.
Limits that would take long to reach (MAX_MEMBERS, MAX_TOTAL_BYTES, ...) are lowered for a case by
setting the module constant in the CLI process (`limits`), which tests the check, not the value.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import stat
import struct
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import tiny_params, write_params
from data_fixtures import (
    files_under, image_bytes, image_tree, md5, patch_zip_central, png_header_only, py2_pickle, random_pixels,
    run_stage, tar_header, write_folder, write_tar_entries, write_zip, write_zip_entries,
)

TIMEOUT_S = 60
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
@dataclass
class Case:
    id: str
    build: Callable[[Path, np.random.Generator], dict]  # writes the input under the folder, returns `data`
    message: str  # regex the error line must match (it names the archive, and the member where there is one)
    stage: str = "download"  # "prepare": the download stage passes, decoding fails
    limits: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------
def good(rng: np.random.Generator, splits: tuple[str, ...] | None = ("train",)) -> dict[str, bytes]:
    members, _ = image_tree(rng, splits=splits, classes={"a": 2, "b": 2})
    return members


def png(rng: np.random.Generator, size: tuple[int, int] = (6, 5)) -> bytes:
    return image_bytes(random_pixels(rng, size, 3))


def imagefolder(path: Path, **options) -> dict:
    return {"source": "imagefolder", "options": {"path": str(path), **options}}


def zip_case(name: str, extra: Callable[[np.random.Generator], dict[str, bytes]], *, deflate: bool = False,
             patch: tuple[str, dict] | None = None) -> Callable[[Path, np.random.Generator], dict]:
    def build(root: Path, rng: np.random.Generator) -> dict:
        entries = [(n, d, 0) for n, d in {**good(rng), **extra(rng)}.items()]
        path = write_zip_entries(root / name, entries, deflate=deflate)
        if patch:
            patch_zip_central(path, patch[0], **patch[1])
        return imagefolder(path)
    return build


def zip_modes(name: str, member: str, data: bytes, mode: int) -> Callable[[Path, np.random.Generator], dict]:
    def build(root: Path, rng: np.random.Generator) -> dict:
        entries = [(n, d, stat.S_IFREG | 0o644) for n, d in good(rng).items()] + [(member, data, mode)]
        return imagefolder(write_zip_entries(root / name, entries))
    return build


def zip_raw(name: str, content: Callable[[np.random.Generator], bytes]) -> Callable[[Path, np.random.Generator], dict]:
    def build(root: Path, rng: np.random.Generator) -> dict:
        (root / name).write_bytes(content(rng))
        return imagefolder(root / name)
    return build


def zip_bytes(rng: np.random.Generator, members: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for n, d in (good(rng) if members is None else members).items():
            zf.writestr(n, d)
    return buffer.getvalue()


def eocd_entries(blob: bytes, count: int) -> bytes:
    """Make the end-of-central-directory record claim `count` entries (this disk and in total)."""
    at = blob.rindex(b"PK\x05\x06")
    return blob[:at + 8] + struct.pack("<HH", count, count) + blob[at + 12:]


def crc_corrupt(rng: np.random.Generator) -> bytes:
    blob = bytearray(zip_bytes(rng))
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as zf:
        info = zf.getinfo("train/b/001.png")
    blob[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF
    return bytes(blob)


def tar_case(name: str, extra: Callable[[np.random.Generator], list]) -> Callable[[Path, np.random.Generator], dict]:
    def build(root: Path, rng: np.random.Generator) -> dict:
        return imagefolder(write_tar_entries(root / name, [*good(rng).items(), *extra(rng)]))
    return build


def tar_truncated(root: Path, rng: np.random.Generator) -> dict:
    blob = write_tar_entries(root / "whole.tar.gz", [*good(rng).items()]).read_bytes()
    (root / "cut.tar.gz").write_bytes(blob[: len(blob) // 2])
    return imagefolder(root / "cut.tar.gz")


def folder_case(edit: Callable[[Path, np.random.Generator], None], **options) -> Callable[[Path, np.random.Generator], dict]:
    def build(root: Path, rng: np.random.Generator) -> dict:
        folder = write_folder(root / "images", good(rng))
        edit(folder, rng)
        return imagefolder(folder, **options)
    return build


def mknod_device(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    except PermissionError:
        pytest.skip("creating a device file needs root (CAP_MKNOD) on this machine")


def nested(folder: Path, depth: int) -> None:
    deep = folder / "train" / "a" / Path(*[f"d{i}" for i in range(depth)])
    deep.mkdir(parents=True)
    (deep / "x.png").write_bytes(b"")


def cifar_tarball(edit: Callable[[dict[str, bytes]], None], *, links: dict[str, str] | None = None,
                  first: list | None = None) -> Callable[[Path, np.random.Generator], dict]:
    """A re-packed official-format cifar-10-python.tar.gz (data.options.md5 is its own MD5)."""
    def build(root: Path, rng: np.random.Generator) -> dict:
        files = {"batches.meta": py2_pickle({b"label_names": [c.encode() for c in CIFAR10]})}
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            files[batch] = py2_pickle({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                                       b"labels": rng.integers(0, 10, 4).tolist()})
        edit(files)
        entries: list = (first or []) + [(f"cifar-10-batches-py/{n}", d) for n, d in files.items()]
        entries += [tar_header(f"cifar-10-batches-py/{n}", tarfile.SYMTYPE, linkname=t) for n, t in (links or {}).items()]
        path = write_tar_entries(root / "cifar-10-python.tar.gz", entries)
        return {"source": "cifar10", "options": {"archive": str(path), "md5": md5(path)}}
    return build


def cifar_zip(classes: list[str], size: tuple[int, int] = (32, 32)) -> Callable[[Path, np.random.Generator], dict]:
    def build(root: Path, rng: np.random.Generator) -> dict:
        members, _ = image_tree(rng, splits=("train",), classes={c: 1 for c in classes}, size=size)
        return {"source": "cifar10", "options": {"archive": str(write_zip(root / "c.zip", members))}}
    return build


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def duplicate_zip(root: Path, rng: np.random.Generator) -> dict:
    """Two entries with the same name (zipfile warns but writes them)."""
    import warnings

    entries = [(n, d, 0) for n, d in good(rng).items()] + [("train/a/000.png", png(rng), 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return imagefolder(write_zip_entries(root / "dup.zip", entries))



ZEROS_16M = b"\0" * (16 * 2**20)
UNSAFE = r"unsafe member name {} \(absolute path or '\.\.' component\)"
SPECIAL_TAR = r"member 'train/a/{}' is a link or special file"

CASES = [
    # ------------------------------------------------------------------ ZIP: sizes and compression
    Case("zip-bomb", zip_case("bomb.zip", lambda r: {"train/a/bomb.png": ZEROS_16M}, deflate=True),
         r"bomb\.zip: member 'train/a/bomb\.png': expands \d+x \(\d+ -> 16777216 bytes\), above the limit 200x \(MAX_RATIO\)"),
    Case("zip-huge-declared-size", zip_case("huge.zip", lambda r: {"train/a/huge.png": png(r)},
                                            patch=("train/a/huge.png", {"file_size": 0xFFFFFFF0})),
         r"huge\.zip: member 'train/a/huge\.png': declares 4294967280 bytes expanded, above 256 MiB \(MAX_MEMBER_BYTES\)"),
    Case("zip-declared-size-too-small", zip_case("lie.zip", lambda r: {"train/a/lie.png": ZEROS_16M}, deflate=True,
                                                 patch=("train/a/lie.png", {"file_size": 100})),
         r"lie\.zip: member 'train/a/lie\.png' fails its CRC-32 check"),
    Case("zip-too-many-members", zip_case("many.zip", lambda r: {f"train/a/{i}.png": b"" for i in range(60)}),
         r"many\.zip: declares 64 entries, above 50 \(MAX_MEMBERS\)", limits={"MAX_MEMBERS": 50}),
    Case("zip-end-record-understates-entries",  # zipfile lists the central directory whatever the count says
         zip_raw("few.zip", lambda r: eocd_entries(zip_bytes(r, {f"train/a/{i}.png": b"" for i in range(60)}), 10)),
         r"few\.zip: member 'train/a/\d+\.png': more than 50 entries \(MAX_MEMBERS\)", limits={"MAX_MEMBERS": 50}),
    Case("zip-member-too-large", zip_case("big.zip", lambda r: {"train/a/big.png": bytes(80_000)}),
         r"big\.zip: member 'train/a/big\.png': declares 80000 bytes expanded, above 48\.8281 KiB \(MAX_MEMBER_BYTES\)",
         limits={"MAX_MEMBER_BYTES": 50_000}),
    Case("zip-total-too-large", zip_case("total.zip", lambda r: {f"train/b/{i}.png": bytes(80_000) for i in range(4)}),
         r"total\.zip: member 'train/b/\d\.png': the members so far expand to more than 195\.312 KiB \(MAX_TOTAL_BYTES\)",
         limits={"MAX_TOTAL_BYTES": 200_000}),
    Case("zip-declares-too-many-entries", zip_raw("eocd.zip", lambda r: eocd_entries(zip_bytes(r), 65_535)),
         r"eocd\.zip: declares 65535 entries, above 1000 \(MAX_MEMBERS\)", limits={"MAX_MEMBERS": 1000}),
    Case("zip-encrypted-flag", zip_case("locked.zip", lambda r: {}, patch=("train/b/001.png", {"flags": 1})),
         r"locked\.zip: member 'train/b/001\.png': cannot read \(RuntimeError: .*encrypted"),
    Case("zip-unknown-method", zip_case("method.zip", lambda r: {}, patch=("train/b/001.png", {"method": 99})),
         r"method\.zip: member 'train/b/001\.png': cannot read \(NotImplementedError: .*compression method"),
    # ------------------------------------------------------------------ ZIP: names
    Case("zip-deep-nesting", zip_case("deep.zip", lambda r: {"train/a/" + "d/" * 20 + "x.png": png(r)}),
         r"deep\.zip: member name 'train/a/d/d/d/.*/x\.png' is 23 levels deep, above 16 \(MAX_DEPTH\)"),
    Case("zip-long-name", zip_case("long.zip", lambda r: {"train/a/" + "x" * 1100 + ".png": png(r)}),
         r"long\.zip: member name 'train/a/xxx+\.\.\.' is 1112 characters long, above 1024 \(MAX_NAME_CHARS\)"),
    Case("zip-dotdot", zip_case("dd.zip", lambda r: {"../evil.png": png(r)}), r"dd\.zip: " + UNSAFE.format(r"'\.\./evil\.png'")),
    Case("zip-nested-dotdot", zip_case("ndd.zip", lambda r: {"train/a/../../../evil.png": png(r)}),
         r"ndd\.zip: " + UNSAFE.format(r"'train/a/\.\./\.\./\.\./evil\.png'")),
    Case("zip-absolute", zip_case("abs.zip", lambda r: {"/etc/evil.png": png(r)}), r"abs\.zip: " + UNSAFE.format(r"'/etc/evil\.png'")),
    Case("zip-drive-letter", zip_case("drive.zip", lambda r: {"C:/evil.png": png(r)}), r"drive\.zip: " + UNSAFE.format(r"'C:/evil\.png'")),
    Case("zip-backslash-dotdot", zip_case("bs.zip", lambda r: {"..\\evil.png": png(r)}),
         r"bs\.zip: " + UNSAFE.format(r"'\.\.\\\\evil\.png'")),
    Case("zip-duplicate-member", duplicate_zip, r"dup\.zip: member 'train/a/000\.png' occurs twice"),
    # ------------------------------------------------------------------ ZIP: links and special files
    Case("zip-symlink-member", zip_modes("link.zip", "train/a/zero.png", b"/dev/zero", stat.S_IFLNK | 0o777),
         r"link\.zip: member 'train/a/zero\.png' is a symbolic link; only regular files and folders are allowed"),
    Case("zip-fifo-member", zip_modes("fifo.zip", "train/a/pipe.png", b"", stat.S_IFIFO | 0o644),
         r"fifo\.zip: member 'train/a/pipe\.png' is a FIFO"),
    Case("zip-device-member", zip_modes("dev.zip", "train/a/dev.png", b"", stat.S_IFCHR | 0o644),
         r"dev\.zip: member 'train/a/dev\.png' is a (character )?device"),
    # ------------------------------------------------------------------ ZIP: broken containers
    Case("zip-truncated", zip_raw("cut.zip", lambda r: zip_bytes(r)[: len(zip_bytes(r)) * 2 // 3]),
         r"cut\.zip: not a readable ZIP archive \(corrupt or truncated\?\)"),
    Case("zip-crc-mismatch", zip_raw("crc.zip", crc_corrupt), r"crc\.zip: member 'train/b/001\.png' fails its CRC-32 check"),
    Case("zip-not-an-archive", zip_raw("text.zip", lambda r: b"this is not a zip file\n" * 10),
         r"text\.zip: not a readable ZIP archive"),
    Case("zip-zero-bytes", zip_raw("empty-file.zip", lambda r: b""), r"empty-file\.zip: not a readable ZIP archive"),
    Case("zip-no-members", zip_raw("nothing.zip", lambda r: zip_bytes(r, {})), r"nothing\.zip: no image files found"),
    Case("zip-inside-zip", zip_raw("outer.zip", lambda r: zip_bytes(r, {"train/a/inner.zip": zip_bytes(r)})),
         r"outer\.zip: no image files found"),
    Case("unknown-format", zip_raw("blob", lambda r: r.bytes(4096)), r"blob: not a folder, a ZIP archive or a tar archive"),
    # ------------------------------------------------------------------ tar
    Case("tar-symlink-member", tar_case("sl.tar.gz", lambda r: [tar_header("train/a/zero.png", tarfile.SYMTYPE, linkname="/dev/zero")]),
         r"sl\.tar\.gz: " + SPECIAL_TAR.format(r"zero\.png")),
    Case("tar-hardlink-member", tar_case("hl.tar.gz", lambda r: [tar_header("train/a/hard.png", tarfile.LNKTYPE, linkname="train/a/000.png")]),
         r"hl\.tar\.gz: " + SPECIAL_TAR.format(r"hard\.png")),
    Case("tar-fifo-member", tar_case("ff.tar.gz", lambda r: [tar_header("train/a/pipe.png", tarfile.FIFOTYPE)]),
         r"ff\.tar\.gz: " + SPECIAL_TAR.format(r"pipe\.png")),
    Case("tar-chardev-member", tar_case("cd.tar.gz", lambda r: [tar_header("train/a/zero.png", tarfile.CHRTYPE, devmajor=1, devminor=5)]),
         r"cd\.tar\.gz: " + SPECIAL_TAR.format(r"zero\.png")),
    Case("tar-blockdev-member", tar_case("bd.tar.gz", lambda r: [tar_header("train/a/disk.png", tarfile.BLKTYPE, devmajor=8)]),
         r"bd\.tar\.gz: " + SPECIAL_TAR.format(r"disk\.png")),
    Case("tar-dotdot", tar_case("dd.tar.gz", lambda r: [("../evil.png", png(r))]), r"dd\.tar\.gz: " + UNSAFE.format(r"'\.\./evil\.png'")),
    Case("tar-absolute", tar_case("abs.tar.gz", lambda r: [("/tmp/evil.png", png(r))]),
         r"abs\.tar\.gz: " + UNSAFE.format(r"'/tmp/evil\.png'")),
    Case("tar-bomb", tar_case("bomb.tar.gz", lambda r: [("train/a/bomb.png", ZEROS_16M)]),
         r"bomb\.tar\.gz: member 'train/a/bomb\.png': the archive expands \d+x up to this member, above the limit 200x \(MAX_RATIO\)"),
    Case("tar-huge-declared-size", tar_case("huge.tar.gz", lambda r: [tar_header("train/a/huge.png", size=10 * 2**30)]),
         r"huge\.tar\.gz: member 'train/a/huge\.png': declares 10737418240 bytes expanded, above 256 MiB \(MAX_MEMBER_BYTES\)"),
    Case("tar-too-many-members", tar_case("many.tar.gz", lambda r: [(f"train/b/{i}.png", b"") for i in range(60)]),
         r"many\.tar\.gz: member 'train/b/\d+\.png': more than 50 entries \(MAX_MEMBERS\)", limits={"MAX_MEMBERS": 50}),
    Case("tar-deep-nesting", tar_case("deep.tar.gz", lambda r: [("train/a/" + "d/" * 20 + "x.png", png(r))]),
         r"deep\.tar\.gz: member name 'train/a/d/d/.*' is 23 levels deep, above 16 \(MAX_DEPTH\)"),
    Case("tar-huge-long-name-header", lambda root, rng: imagefolder(write_tar_entries(root / "longname.tar.gz", [
        tar_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, size=8 * 2**20), b"\0" * (8 * 2**20), ("train/a/x.png", png(rng))])),
        r"longname\.tar\.gz: member header at offset 0 declares a 8388608-byte long-name or pax block, above 1 MiB "
        r"\(MAX_HEADER_BYTES\)"),
    Case("tar-huge-long-name-no-suffix", lambda root, rng: imagefolder(write_tar_entries(root / "longname", [
        tar_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, size=8 * 2**20), b"\0" * (8 * 2**20), ("train/a/x.png", png(rng))])),
        r"longname: member header at offset 0 declares a 8388608-byte long-name or pax block"),
    Case("tar-truncated", tar_truncated, r"cut\.tar\.gz: (not a readable|corrupt or truncated) tar archive"),
    Case("tar-no-members", lambda root, rng: imagefolder(write_tar_entries(root / "nothing.tar", [], mode="w")),
         r"nothing\.tar: no image files found"),
    # ------------------------------------------------------------------ folders: links, FIFOs, devices
    Case("dir-symlink-to-dev-zero", folder_case(lambda f, r: (f / "train/a/zero.png").symlink_to("/dev/zero")),
         r"images/train/a/zero\.png: is a symbolic link; only regular files and folders are read"),
    Case("dir-symlink-to-outside-file", folder_case(lambda f, r: (f / "train/a/passwd.png").symlink_to("/etc/passwd")),
         r"images/train/a/passwd\.png: is a symbolic link"),
    Case("dir-symlinked-class-folder", folder_case(lambda f, r: (f / "train/c").symlink_to(f / "train/a")),
         r"images/train/c: is a symbolic link"),
    Case("dir-fifo", folder_case(lambda f, r: fifo(f / "train/a/pipe.png")), r"images/train/a/pipe\.png: is a FIFO"),
    Case("dir-fifo-not-an-image-name", folder_case(lambda f, r: fifo(f / "train/README")), r"images/train/README: is a FIFO"),
    Case("dir-device", folder_case(lambda f, r: mknod_device(f / "train/b/zero.png")), r"images/train/b/zero\.png: is a (character )?device"),
    Case("path-is-a-fifo", lambda root, rng: imagefolder(fifo(root / "pipe.zip")),
         r"pipe\.zip: is a FIFO \(named pipe\), not a folder, a ZIP archive or a tar archive"),
    Case("path-is-a-device", lambda root, rng: imagefolder(Path("/dev/zero")),
         r"/dev/zero: is a (character )?device, not a folder, a ZIP archive or a tar archive"),
    Case("dir-too-many-files", folder_case(lambda f, r: write_folder(f, {f"train/a/{i}.png": b"" for i in range(30)})),
         r"images: member 'train/a/\d+\.png': more than 20 entries \(MAX_MEMBERS\)", limits={"MAX_MEMBERS": 20}),
    Case("dir-file-too-large", folder_case(lambda f, r: (f / "train/a/big.png").write_bytes(bytes(80_000))),
         r"images: member 'train/a/big\.png': declares 80000 bytes expanded, above 48\.8281 KiB \(MAX_MEMBER_BYTES\)",
         limits={"MAX_MEMBER_BYTES": 50_000}),
    Case("dir-deep-nesting", folder_case(lambda f, r: nested(f, 20)),
         r"images: member name 'train/a/d0/d1/.*' is 17 levels deep, above 16 \(MAX_DEPTH\)"),
    Case("dir-empty-class-folder", folder_case(lambda f, r: (f / "train/c").mkdir()), r"images: class folder 'train/c/' holds no images"),
    # ------------------------------------------------------------------ cifar10: local copies
    Case("cifar-archive-is-a-device", lambda root, rng: {"source": "cifar10", "options": {"archive": "/dev/zero"}},
         r"/dev/zero: is a character device, not a regular file \(data\.options\.archive\)"),
    Case("cifar-archive-is-a-fifo", lambda root, rng: {"source": "cifar10", "options": {"archive": str(fifo(root / "c.tar.gz"))}},
         r"c\.tar\.gz: is a FIFO \(named pipe\), not a regular file \(data\.options\.archive\)"),
    Case("cifar-root-holds-a-fifo", lambda root, rng: (fifo(root / "cifar-10-python.tar.gz"),
                                                      {"source": "cifar10", "options": {"root": str(root)}})[1],
         r"holds neither cifar-10-batches-py/ nor cifar-10-python\.tar\.gz \(data\.options\.root\)"),
    Case("cifar-pickle-one-channel", cifar_tarball(lambda f: f.update(data_batch_2=py2_pickle(
        {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}))),
        r"cifar-10-python\.tar\.gz: member 'cifar-10-batches-py/data_batch_2': b'data' must be uint8 \(N, 3072\), "
        r"got uint8 \(4, 1024\)", stage="prepare"),
    Case("cifar-pickle-runs-code", cifar_tarball(lambda f: f.update(test_batch=pickle.dumps({"data": os.system}, protocol=2))),
         r"member 'cifar-10-batches-py/test_batch': not a CIFAR python pickle .*refusing to load global posix\.system",
         stage="prepare"),
    Case("cifar-missing-member", cifar_tarball(lambda f: f.pop("test_batch")),
         r"cifar-10-python\.tar\.gz: missing member\(s\) 'cifar-10-batches-py/test_batch'", stage="prepare"),
    Case("cifar-symlink-member", cifar_tarball(lambda f: f.pop("test_batch"), links={"test_batch": "/dev/zero"}),
         r"cifar-10-python\.tar\.gz: member 'cifar-10-batches-py/test_batch' is a link or special file", stage="prepare"),
    Case("cifar-tar-bomb", cifar_tarball(lambda f: None, first=[("cifar-10-batches-py/padding", b"\0" * 2**25)]),
         r"cifar-10-python\.tar\.gz: member 'cifar-10-batches-py/padding': the archive expands \d+x", stage="prepare"),
    Case("cifar-zip-wrong-classes", cifar_zip(["a", "b"]), r"c\.zip: class folders \['a', 'b'\] are not the CIFAR-10 classes"),
    Case("cifar-zip-wrong-image-size", cifar_zip(CIFAR10, size=(28, 28)),
         r"c\.zip: member 'train/\w+/000\.png': image is 28x28 \(width x height\) but 32x32 was expected", stage="prepare"),
    # ------------------------------------------------------------------ layouts
    Case("wrong-layout", zip_raw("layout.zip", lambda r: zip_bytes(r, {"a/1.png": png(r), "b/c/2.png": png(r)})),
         r"layout\.zip: member 'b/c/2\.png' does not fit the layout \(expected <class>/<image>\)"),
    Case("val-split-folder", zip_case("val.zip", lambda r: {"val/a/000.png": png(r)}),
         r"val\.zip: member 'val/a/000\.png' is outside the split folders train/ and test/"),
    Case("split-classes-differ", zip_case("splits.zip", lambda r: {"test/a/000.png": png(r)}),
         r"splits\.zip: class folders of test/ differ from train/ \(missing: \['b'\]"),
    Case("only-non-images", zip_raw("docs.zip", lambda r: zip_bytes(r, {"a/README.txt": b"x", "b/notes.md": b"y"})),
         r"docs\.zip: no image files found"),
    Case("class-folder-only-non-images", zip_case("readme.zip", lambda r: {"train/c/README.txt": b"x"}),
         r"readme\.zip: class folder 'train/c/' holds no images"),
    Case("ndsb-no-images", lambda root, rng: {"source": "ndsb", "options": {"archive": str(write_zip(root / "train.zip", {"x/a.txt": b"1"}))}},
         r"train\.zip: no image files found"),
    # ------------------------------------------------------------------ images that are not images
    Case("not-an-image", zip_case("garbage.zip", lambda r: {"train/b/bad.png": b"\x89PNG\r\n\x1a\nnot really"}),
         r"garbage\.zip: member 'train/b/bad\.png': cannot decode image", stage="prepare"),
    Case("truncated-image", zip_case("cutimg.zip", lambda r: {"train/b/cut.png": png(r, (64, 64))[:300]}),
         r"cutimg\.zip: member 'train/b/cut\.png': cannot decode image", stage="prepare"),
    Case("text-named-jpg", folder_case(lambda f, r: (f / "train/a/notes.jpg").write_text("hello")),
         r"images/train/a/notes\.jpg: cannot decode image", stage="prepare"),
    Case("image-bomb", zip_case("pixels.zip", lambda r: {"train/b/huge.png": png_header_only(8_000, 8_000)}),
         r"pixels\.zip: member 'train/b/huge\.png': image of 8000x8000 pixels, above 50000000 \(MAX_IMAGE_PIXELS\)",
         stage="prepare"),
    Case("image-bomb-beyond-pillow", zip_case("giga.zip", lambda r: {"train/b/huge.png": png_header_only(100_000, 100_000)}),
         r"giga\.zip: member 'train/b/huge\.png': cannot decode image \(DecompressionBombError", stage="prepare"),
    Case("mixed-image-sizes", zip_case("sizes.zip", lambda r: {"train/b/wide.png": png(r, (9, 5))}),
         r"sizes\.zip: member 'train/b/wide\.png': image is 9x5 \(width x height\) but 6x5 was expected", stage="prepare"),
    Case("mixed-sizes-in-folder", folder_case(lambda f, r: (f / "train/a/tall.png").write_bytes(png(r, (6, 7)))),
         r"images/train/a/tall\.png: image is 6x7 \(width x height\) but 6x5 was expected", stage="prepare"),
]


# ---------------------------------------------------------------------------------------------------
# running them
# ---------------------------------------------------------------------------------------------------
def run_case(case: Case, root: Path) -> dict:
    workdir, inputs = root / "project", root / "inputs"
    workdir.mkdir(parents=True)
    inputs.mkdir()
    data = case.build(inputs, np.random.default_rng(5))
    params = tiny_params(data={**data, "val_fraction": 0.15, "test_fraction": 0.15, "split_seed": 0})
    params["tracking"]["enabled"] = False
    write_params(workdir / "params.yaml", params)
    outcome = {"download": run_stage(workdir, "download", case.limits, TIMEOUT_S)}
    if case.stage == "prepare" and outcome["download"].returncode == 0:
        outcome["prepare"] = run_stage(workdir, "prepare", case.limits, TIMEOUT_S)
    outcome["artifacts"] = files_under(workdir / "artifacts")
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, request) -> dict[str, dict]:
    """Every selected case, run side by side (each is a few subprocesses that mostly wait)."""
    root = tmp_path_factory.mktemp("bad_archives")
    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.module is request.module and "case" in getattr(getattr(item, "callspec", None), "params", {})}

    def one(case: Case) -> tuple[str, dict | BaseException]:
        try:
            return case.id, run_case(case, root / case.id)
        except BaseException as exc:  # a skip (no mknod) or a builder bug: reported by the case's test
            return case.id, exc

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, [case for case in CASES if case.id in selected]))


def test_the_table_is_wide():
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_archive_fails_cleanly(case, outcomes):
    outcome = outcomes[case.id]
    if isinstance(outcome, BaseException):
        raise outcome
    download = outcome["download"]
    if case.stage == "prepare":
        assert download.returncode == 0, f"download should pass, decoding fails later: {download.stderr}"
        done = outcome["prepare"]
    else:
        done = download
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("trickbench")]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr
    prefix = f"trickbench {case.stage}: error: "
    assert errors[0].startswith(prefix), errors[0]
    assert re.search(case.message, errors[0]), f"{case.message!r} not in {errors[0]!r}"
    allowed = ["raw/download.json"] if case.stage == "prepare" else []
    assert outcome["artifacts"] == allowed, outcome["artifacts"]
