"""Safe reading of image trees (ZIP, tar, folder) and fast parallel decoding to uint8 arrays.

An *image tree* holds `<class>/<image>` or `<split>/<class>/<image>` files (splits: `train`, `test`),
possibly below one or more wrapping folders (`mydata/train/cat/1.png`), which are stripped.

Nothing is ever extracted to disk: members are read into memory by name, in bounded chunks. Even so, an
archive holding a member with an absolute path or a `..` component is rejected as a whole (`DataError`
naming the member), as are members that are links, devices or FIFOs (tar, ZIP and folders alike: they
are never followed or read, so a link to /dev/zero cannot hang a stage).

Limits (module constants below, checked from the declared sizes before anything is inflated, and again
while reading): MAX_MEMBERS entries per tree, MAX_MEMBER_BYTES per member, MAX_TOTAL_BYTES expanded per
tree, MAX_RATIO expanded/compressed (per ZIP member, per compressed tar stream) above RATIO_FLOOR,
MAX_DEPTH path components and MAX_NAME_CHARS per name, MAX_IMAGE_PIXELS per image (read from the image
header, before decoding). A tree beyond a limit is refused with one `DataError` naming the archive and
the member. Files whose extension is not an image extension (README.txt,
.DS_Store, `__MACOSX/` resource forks, other hidden files) are skipped with one `DataWarning` naming them;
a file with an image extension that Pillow cannot decode is a `DataError` naming the archive and member.

Decoding: `decode_members` splits the member list into chunks and decodes them in a process pool
(fork start method on Linux, so stage scripts without a `__main__` guard are safe; spawn elsewhere).
Every worker opens its own handle on the archive (an open file must not be shared across processes).
Small jobs (< `POOL_MIN_IMAGES`) or `workers=1` decode in-process. A tqdm bar on stderr counts images.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import multiprocessing
import os
import re
import stat
import sys
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from trickbench.errors import DataError
from trickbench.io import sha256_file

__all__ = [
    "DataError", "DataWarning", "IMAGE_EXTENSIONS", "SPLITS", "DecodeSpec", "ImageTree", "TreeLayout",
    "open_tree", "tree_layout", "decode_image", "decode_members", "fit_and_pad", "md5_file",
    "check_member_name", "read_tar_members", "read_regular_file", "require_regular_file",
    "MAX_MEMBERS", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_RATIO", "RATIO_FLOOR", "MAX_DEPTH",
    "MAX_NAME_CHARS", "MAX_IMAGE_PIXELS", "MAX_HEADER_BYTES",
]


class DataWarning(UserWarning):
    """Input that is tolerated but worth knowing about (skipped non-image members, unlabelled files)."""


IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm",
})
SPLITS = ("train", "test")
RESAMPLE = Image.Resampling.BICUBIC  # used by fit_and_pad; antialiased when shrinking
POOL_MIN_IMAGES = 2048  # below this, decoding in-process beats starting a pool
CHUNK_IMAGES = 1024  # images per pool task (a chunk of 32x32 RGB is 3 MiB)

_UNSAFE_DRIVE = re.compile(r"^[A-Za-z]:")

# Limits on one image tree (ZIP, tar or folder). Every real data set here fits with room to spare:
# CIFAR-10's training ZIP holds 50,000 images, NOAA PlanktonSet 1.0 (NDSB) about 161,000 with its
# unlabelled test/ folder, the largest official file (CIFAR-100's `train` pickle) is 148 MiB, and
# image files compress by 1-3x. A hostile tree stops at these bounds, whatever its headers claim.
MAX_MEMBERS = 250_000  # entries (files and folders)
MAX_MEMBER_BYTES = 256 * 2**20  # expanded size of one member
MAX_TOTAL_BYTES = 8 * 2**30  # expanded size of all members of one tree
MAX_RATIO = 200  # expanded / compressed size, of a ZIP member or of a compressed tar stream ...
RATIO_FLOOR = 2**20  # ... once the expanded size passes 1 MiB (tiny members legitimately compress well)
MAX_DEPTH = 16  # path components of a member name
MAX_NAME_CHARS = 1024  # characters of a member name
MAX_IMAGE_PIXELS = 50_000_000  # width x height of one image (a 50-megapixel photo), read from its header
MAX_HEADER_BYTES = 2**20  # a tar's GNU long-name or pax header block, which tarfile reads whole
READ_CHUNK = 1 << 20  # bytes per read() call


# ---------------------------------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------------------------------
def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with _open_regular(path, follow=True) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# regular files only: a FIFO, a device or a socket is never opened for reading
# ---------------------------------------------------------------------------------------------------
def _file_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def require_regular_file(path: str | os.PathLike, what: str = "") -> None:
    """DataError unless `path` (symlinks followed: the user named it) is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}){what}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is {_file_kind(mode)}, not a regular file{what}")


def _open_regular(path: str | os.PathLike, *, follow: bool) -> io.BufferedReader:
    """Open a regular file for reading without ever blocking: O_NONBLOCK so a FIFO cannot hang the
    open, fstat so nothing but a regular file is read; follow=False also refuses a symlink."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow and os.path.islink(path):
            raise DataError(f"{path}: is a symbolic link; only regular files are read") from None
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DataError(f"{path}: is {_file_kind(mode)}, not a regular file; only regular files are read")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular_file(path: str | os.PathLike, limit: int | None = None, *, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` (default MAX_MEMBER_BYTES) bytes, read in chunks;
    DataError if it is larger or not a regular file."""
    with _open_regular(path, follow=follow) as handle:
        return _read_bounded(handle, MAX_MEMBER_BYTES if limit is None else limit, str(path), declared=None)


def _read_bounded(handle: io.IOBase, limit: int, where: str, *, declared: int | None) -> bytes:
    """Read a stream in READ_CHUNK pieces; DataError once it exceeds `limit` (or its declared size)."""
    cap = limit if declared is None else min(limit, declared)
    parts, total = [], 0
    while block := handle.read(min(READ_CHUNK, cap + 1 - total)):
        total += len(block)
        if total > cap:
            what = f"more than its declared {declared} bytes" if declared is not None and declared < limit \
                else f"more than {_size(limit)} (MAX_MEMBER_BYTES)"
            raise DataError(f"{where}: expands to {what}; refusing to read further")
        parts.append(block)
    return b"".join(parts)


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} bytes"


class _Budget:
    """Counts the entries and expanded bytes of one tree against MAX_MEMBERS / MAX_*_BYTES / MAX_RATIO."""

    def __init__(self, origin: str | os.PathLike):
        self.origin, self.members, self.total = origin, 0, 0

    def admit(self, name: str, size: int, compressed: int | None = None) -> None:
        where = f"{self.origin}: member {name!r}"
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise DataError(f"{where}: more than {MAX_MEMBERS} entries (MAX_MEMBERS); refusing this archive")
        if size < 0 or size > MAX_MEMBER_BYTES:
            raise DataError(f"{where}: declares {size} bytes expanded, above {_size(MAX_MEMBER_BYTES)} "
                            "(MAX_MEMBER_BYTES); refusing this archive")
        if compressed is not None and size > RATIO_FLOOR and size > MAX_RATIO * max(compressed, 1):
            raise DataError(f"{where}: expands {size / max(compressed, 1):.0f}x ({compressed} -> {size} bytes), "
                            f"above the limit {MAX_RATIO}x (MAX_RATIO): a compression bomb? refusing this archive")
        self.total += size
        if self.total > MAX_TOTAL_BYTES:
            raise DataError(f"{where}: the members so far expand to more than {_size(MAX_TOTAL_BYTES)} "
                            "(MAX_TOTAL_BYTES); refusing this archive")

    def stream(self, name: str, expanded: int, compressed: int) -> None:
        """The whole compressed stream (a .tar.gz) up to the end of member `name`."""
        if expanded > RATIO_FLOOR and expanded > MAX_RATIO * max(compressed, 1):
            raise DataError(f"{self.origin}: member {name!r}: the archive expands {expanded / max(compressed, 1):.0f}x "
                            f"up to this member, above the limit {MAX_RATIO}x (MAX_RATIO): a compression bomb? "
                            "refusing this archive")


# ---------------------------------------------------------------------------------------------------
# trees: ZIP, tar, folder
# ---------------------------------------------------------------------------------------------------
def check_member_name(name: str, origin: str | os.PathLike) -> str:
    """Return the member name with `/` separators; DataError for absolute paths and `..` components."""
    posix = name.replace("\\", "/")
    shown = posix[:80] + "..." if len(posix) > 80 else posix
    depth = len([part for part in posix.split("/") if part])
    if len(posix) > MAX_NAME_CHARS:
        raise DataError(f"{origin}: member name {shown!r} is {len(posix)} characters long, above {MAX_NAME_CHARS} "
                        "(MAX_NAME_CHARS); refusing to read this archive")
    if depth > MAX_DEPTH:
        raise DataError(f"{origin}: member name {shown!r} is {depth} levels deep, above {MAX_DEPTH} (MAX_DEPTH); "
                        "refusing to read this archive")
    if "\0" in posix:
        raise DataError(f"{origin}: member name {shown!r} holds a NUL character; refusing to read this archive")
    if posix.startswith("/") or _UNSAFE_DRIVE.match(posix) or ".." in posix.split("/"):
        raise DataError(
            f"{origin}: unsafe member name {name!r} (absolute path or '..' component); "
            "refusing to read this archive"
        )
    while posix.startswith("./"):
        posix = posix[2:]
    return posix


class ImageTree:
    """Files and folders of an archive or directory, addressed by relative POSIX paths."""

    kind: str = ""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.files: list[str] = []  # regular files, in the tree's own order
        self.dirs: set[str] = set()  # folders (explicit entries and parents of files), no trailing '/'

    def _add_parents(self) -> None:
        for name in self.files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                self.dirs.add("/".join(parts[:i]))

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def read_many(self, names: Sequence[str]) -> list[bytes]:
        return [self.read(name) for name in names]

    def verify(self) -> str:
        """Check whatever integrity data the container carries; return a one-line description."""
        return "none"

    def digest(self) -> str:
        return sha256_file(self.path)

    def nbytes(self) -> int:
        return self.path.stat().st_size

    def handle(self) -> tuple[str, str] | None:
        """A picklable description a worker process uses to open its own copy (None: send bytes)."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> "ImageTree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
                    NotImplementedError, ValueError, KeyError)


def _declared_zip_entries(path: Path) -> int | None:
    """The entry count in a ZIP's end-of-central-directory record (zip64 aware), None if unreadable
    (zipfile then reports the damage). zipfile._EndRecData is private but unchanged since Python 2.6."""
    try:
        with open(path, "rb") as handle:
            end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
        return None if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]
    except (AttributeError, IndexError, OSError, TypeError, ValueError, EOFError, zipfile.BadZipFile):
        return None


class ZipTree(ImageTree):
    kind = "zip"

    def __init__(self, path: Path):
        super().__init__(path)
        require_regular_file(self.path)
        declared = _declared_zip_entries(self.path)
        if declared is not None and declared > MAX_MEMBERS:  # before zipfile lists them all in memory
            raise DataError(f"{self.path}: declares {declared} entries, above {MAX_MEMBERS} (MAX_MEMBERS); "
                            "refusing this archive")
        try:
            self.zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable ZIP archive (corrupt or truncated?): {exc}") from None
        try:
            self._infos: dict[str, zipfile.ZipInfo] = {}  # posix name -> entry of the ZIP
            budget = _Budget(self.path)
            for info in self.zf.infolist():
                name = check_member_name(info.filename, self.path)
                mode = info.external_attr >> 16  # Unix st_mode where the ZIP was made on Unix, else 0
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no file type recorded
                    raise DataError(f"{self.path}: member {info.filename!r} is {_file_kind(mode)}; only regular "
                                    "files and folders are allowed")
                budget.admit(info.filename, 0 if info.is_dir() else info.file_size,
                             None if info.is_dir() else info.compress_size)
                if info.is_dir():
                    self.dirs.add(name.rstrip("/"))
                    continue
                if name in self._infos:
                    raise DataError(f"{self.path}: member {name!r} occurs twice; refusing an ambiguous archive")
                self._infos[name] = info
                self.files.append(name)
            self._add_parents()
        except BaseException:
            self.zf.close()
            raise

    def read(self, name: str) -> bytes:
        info = self._infos[name]
        try:
            with self.zf.open(info) as handle:  # inflated chunk by chunk, never past the declared size
                return _read_bounded(handle, MAX_MEMBER_BYTES, f"{self.path}: member {name!r}",
                                     declared=info.file_size)
        except _ZIP_READ_ERRORS as exc:
            raise DataError(f"{self.path}: member {name!r}: cannot read ({type(exc).__name__}: {exc})") from None

    def verify(self) -> str:
        """Read every member in READ_CHUNK pieces (up to its checked declared size) and check its CRC-32."""
        for name, info in self._infos.items():
            try:
                with self.zf.open(info) as handle:
                    while handle.read(READ_CHUNK):
                        pass
            except zipfile.BadZipFile as exc:
                if "CRC" in str(exc):
                    raise DataError(f"{self.path}: member {name!r} fails its CRC-32 check (corrupt archive)") from None
                raise DataError(f"{self.path}: member {name!r}: corrupt or truncated ZIP ({exc})") from None
            except _ZIP_READ_ERRORS as exc:
                raise DataError(f"{self.path}: member {name!r}: cannot read ({type(exc).__name__}: {exc})") from None
        return f"CRC-32 of {len(self.files)} members"

    def handle(self) -> tuple[str, str]:
        return ("zip", str(self.path))

    def close(self) -> None:
        self.zf.close()


_TAR_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long-name or a pax header block whole into memory before anyone sees the
    member: refuse a block above MAX_HEADER_BYTES first (a 1 GiB "name" gzips to 1 MiB)."""

    def _check_header(self, tf: tarfile.TarFile) -> None:
        if self.size > MAX_HEADER_BYTES:
            raise DataError(f"{tf.name}: member header at offset {self.offset} declares a {self.size}-byte long-name "
                            f"or pax block, above {_size(MAX_HEADER_BYTES)} (MAX_HEADER_BYTES); refusing this archive")

    def _proc_gnulong(self, tf: tarfile.TarFile):  # type: ignore[override]
        self._check_header(tf)
        return super()._proc_gnulong(tf)  # type: ignore[misc]

    def _proc_pax(self, tf: tarfile.TarFile):  # type: ignore[override]
        self._check_header(tf)
        return super()._proc_pax(tf)  # type: ignore[misc]


def _tar_entries(tf: tarfile.TarFile, path: Path, budget: _Budget) -> Iterator[tarfile.TarInfo]:
    """The members of an open tar, one header at a time, each checked against the limits before the
    stream moves past its data (in a compressed tar, moving past means inflating it)."""
    compressed = path.stat().st_size
    while True:
        try:
            member = tf.next()
        except _TAR_READ_ERRORS as exc:
            raise DataError(f"{path}: not a readable tar archive (corrupt or truncated?): "
                            f"{type(exc).__name__}: {exc}") from None
        if member is None:
            return
        budget.admit(member.name, member.size if member.isreg() else 0)
        budget.stream(member.name, member.offset_data + member.size, compressed)
        yield member


class TarTree(ImageTree):
    """A tar archive (any compression tarfile reads); members are read in archive order, in memory."""

    kind = "tar"

    def __init__(self, path: Path):
        super().__init__(path)
        require_regular_file(self.path)
        try:
            self.tf = tarfile.open(self.path, "r:*", tarinfo=_BoundedTarInfo)
        except _TAR_READ_ERRORS as exc:
            raise DataError(f"{self.path}: not a readable tar archive (corrupt or truncated?): {exc}") from None
        try:
            self._members: dict[str, tarfile.TarInfo] = {}
            for member in _tar_entries(self.tf, self.path, _Budget(self.path)):
                name = check_member_name(member.name, self.path)
                if member.isdir():
                    self.dirs.add(name.rstrip("/"))
                elif member.isreg():
                    if name in self._members:
                        raise DataError(f"{self.path}: member {name!r} occurs twice; refusing an ambiguous archive")
                    self._members[name] = member
                    self.files.append(name)
                else:
                    raise DataError(
                        f"{self.path}: member {member.name!r} is a link or special file; "
                        "only regular files and folders are allowed"
                    )
            self._add_parents()
        except BaseException:
            self.tf.close()
            raise

    def _read_member(self, name: str) -> bytes:
        member = self._members[name]
        handle = self.tf.extractfile(member)
        assert handle is not None  # a regular member
        return _read_bounded(handle, MAX_MEMBER_BYTES, f"{self.path}: member {name!r}", declared=member.size)

    def read_many(self, names: Sequence[str]) -> list[bytes]:
        wanted = {name: i for i, name in enumerate(names)}
        out: list[bytes | None] = [None] * len(names)
        ordered = sorted(wanted, key=lambda n: self._members[n].offset_data)  # sequential in a gzip stream
        for name in ordered:
            try:
                out[wanted[name]] = self._read_member(name)
            except _TAR_READ_ERRORS as exc:
                raise DataError(f"{self.path}: member {name!r}: cannot read ({type(exc).__name__}: {exc})") from None
        return out  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise DataError(f"{self.path}: member {name!r} not found")
        return self.read_many([name])[0]

    def verify(self) -> str:
        # tar carries no checksum of the data; reading the whole stream catches truncation and gzip CRC errors
        try:
            for member in self._members.values():
                handle = self.tf.extractfile(member)
                assert handle is not None
                while handle.read(READ_CHUNK):
                    pass
        except _TAR_READ_ERRORS as exc:
            raise DataError(f"{self.path}: corrupt or truncated tar archive ({type(exc).__name__}: {exc})") from None
        return f"read all {len(self.files)} members (gzip CRC where compressed)"

    def close(self) -> None:
        self.tf.close()


class DirTree(ImageTree):
    """A folder. Only regular files and folders are listed; a symlink, FIFO, device or socket anywhere
    below it is refused (never followed, never opened), so nothing outside the folder is read."""

    kind = "dir"

    def __init__(self, path: Path, *, scan: bool = True):
        super().__init__(path)
        self._sizes: dict[str, int] = {}
        if not scan:  # a worker only reads files by name
            return
        budget = _Budget(self.path)
        pending = [""]
        while pending:
            prefix = pending.pop()
            try:
                entries = sorted(os.scandir(self.path / prefix), key=lambda e: e.name)
            except OSError as exc:
                raise DataError(f"{self.path / prefix}: cannot list ({exc.strerror})") from None
            subdirs = []
            for entry in entries:
                name = check_member_name(prefix + entry.name, self.path)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    budget.admit(name, 0)
                    self.dirs.add(name)
                    subdirs.append(name + "/")
                elif stat.S_ISREG(mode):
                    size = entry.stat(follow_symlinks=False).st_size
                    budget.admit(name, size)
                    self.files.append(name)
                    self._sizes[name] = size
                else:
                    raise DataError(f"{self.path / name}: is {_file_kind(mode)}; only regular files and folders "
                                    "are read from an image folder (copy the file in, or point at the real folder)")
            pending.extend(reversed(subdirs))  # depth first, in name order
        self._add_parents()

    def read(self, name: str) -> bytes:
        return read_regular_file(self.path / name, MAX_MEMBER_BYTES, follow=False)

    def digest(self) -> str:
        """sha256 over the sorted lines `<relative path>\\0<sha256 of the file>\\n` of every file."""
        digest = hashlib.sha256()
        for name in sorted(self.files):
            file_digest = hashlib.sha256()
            with _open_regular(self.path / name, follow=False) as handle:
                while block := handle.read(READ_CHUNK):
                    file_digest.update(block)
            digest.update(f"{name}\0{file_digest.hexdigest()}\n".encode())
        return digest.hexdigest()

    def nbytes(self) -> int:
        return sum(self._sizes.values())

    def handle(self) -> tuple[str, str]:
        return ("dir", str(self.path))


def read_tar_members(path: str | os.PathLike, wanted: Iterable[str]) -> dict[str, bytes]:
    """Read the named members of a (compressed) tar in one sequential pass; DataError if any is missing,
    if a member name is unsafe, if the archive is beyond the limits, or if it is corrupt or truncated."""
    path = Path(path)
    wanted = set(wanted)
    found: dict[str, bytes] = {}
    require_regular_file(path)
    budget = _Budget(path)
    compressed = path.stat().st_size
    try:
        with tarfile.open(path, "r|*", tarinfo=_BoundedTarInfo) as tf:
            for member in tf:
                name = check_member_name(member.name, path)
                budget.admit(member.name, member.size if member.isreg() else 0)
                budget.stream(member.name, member.offset_data + member.size, compressed)
                if name in wanted and not member.isreg():
                    raise DataError(f"{path}: member {member.name!r} is a link or special file; "
                                    "only regular files are read")
                if name in wanted:
                    handle = tf.extractfile(member)
                    assert handle is not None
                    found[name] = _read_bounded(handle, MAX_MEMBER_BYTES, f"{path}: member {name!r}",
                                                declared=member.size)
                    if len(found) == len(wanted):  # what follows is never inflated
                        break
    except _TAR_READ_ERRORS as exc:
        raise DataError(f"{path}: corrupt or truncated tar archive ({type(exc).__name__}: {exc})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{path}: missing member(s) {_list_for_message(missing)}")
    return found


def open_tree(path: str | os.PathLike) -> ImageTree:
    """Open a folder, a ZIP or a tar archive (chosen by suffix, else by content)."""
    path = Path(path).expanduser()
    try:
        mode = os.stat(path).st_mode  # the path the user named may be a symlink; what is inside may not
    except FileNotFoundError:
        raise DataError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        return DirTree(path)
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is {_file_kind(mode)}, not a folder, a ZIP archive or a tar archive")
    name = path.name.lower()
    if name.endswith(".zip"):
        return ZipTree(path)
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return TarTree(path)
    if zipfile.is_zipfile(path):
        return ZipTree(path)
    try:  # tarfile.is_tarfile, with the bounded header reader
        with tarfile.open(path, "r:*", tarinfo=_BoundedTarInfo):
            pass
    except _TAR_READ_ERRORS:
        pass
    else:
        return TarTree(path)
    raise DataError(f"{path}: not a folder, a ZIP archive or a tar archive")


# ---------------------------------------------------------------------------------------------------
# layout: <class>/<image> or <split>/<class>/<image>
# ---------------------------------------------------------------------------------------------------
@dataclass
class TreeLayout:
    splits: dict[str, dict[str, list[str]]]  # split -> class -> member names (sorted)
    class_names: list[str]
    prefix: str = ""  # wrapping folders stripped, with trailing '/'
    split_folders: bool = False  # True: <split>/<class>/<image>
    skipped: list[str] = field(default_factory=list)  # non-image members
    unlabelled: list[str] = field(default_factory=list)  # images directly under a split folder

    def members(self, split: str) -> tuple[list[str], np.ndarray]:
        names: list[str] = []
        labels: list[int] = []
        for index, cls in enumerate(self.class_names):
            files = self.splits[split].get(cls, [])
            names.extend(files)
            labels.extend([index] * len(files))
        return names, np.asarray(labels, dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        return {split: {cls: len(files) for cls, files in classes.items()} for split, classes in self.splits.items()}


def _is_image(name: str) -> bool:
    parts = name.split("/")
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return False
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS


def _list_for_message(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def tree_layout(tree: ImageTree, *, main_split: str = "train", ignore_splits: Iterable[str] = ()) -> TreeLayout:
    """Find the classes (and splits) of an image tree; DataError on any layout it cannot trust.

    main_split: the split that must be present; a tree without split folders is all `main_split`.
    ignore_splits: split folders to leave out (with a warning) instead of reading, e.g. ndsb's `test`.
    Class names are the sorted folder names of `main_split`; every other split must have the same set.
    """
    origin = tree.path
    skipped = [name for name in tree.files if not _is_image(name)]
    images = [name for name in tree.files if _is_image(name)]
    if skipped:
        warnings.warn(f"{origin}: skipping {len(skipped)} non-image member(s): {_list_for_message(skipped)}",
                      DataWarning, stacklevel=3)
    if not images:
        raise DataError(
            f"{origin}: no image files found (expected <class>/<image> or <split>/<class>/<image> "
            f"with an extension among {' '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    prefix, rel = _strip_wrapping_folders(images)
    split_folders = any(name.split("/", 1)[0] in SPLITS and name.count("/") >= 1 for name in rel)
    sorting = _MemberSorting(origin, prefix, split_folders, main_split, set(ignore_splits))
    for name in rel:
        sorting.add(name)
    if sorting.unlabelled:
        warnings.warn(f"{origin}: skipping {len(sorting.unlabelled)} unlabelled image(s) directly under a split "
                      f"folder: {_list_for_message(sorting.unlabelled, 3)}", DataWarning, stacklevel=3)
    if sorting.ignored:
        warnings.warn(f"{origin}: ignoring {len(sorting.ignored)} image(s) under "
                      f"{'/, '.join(sorted(sorting.ignore))}/", DataWarning, stacklevel=3)
    sorting.check_folders({d[len(prefix):] for d in tree.dirs if d.startswith(prefix) and len(d) > len(prefix)})
    class_names = sorting.class_names()
    return TreeLayout(splits=sorting.splits, class_names=class_names, prefix=prefix, split_folders=split_folders,
                      skipped=skipped, unlabelled=sorting.unlabelled)


def _strip_wrapping_folders(images: list[str]) -> tuple[str, list[str]]:
    """(prefix, names below it): the folders that wrap every image, none of them a split folder."""
    prefix = ""
    rel = images
    while True:
        firsts = {name.split("/", 1)[0] for name in rel}
        if len(firsts) != 1 or next(iter(firsts)) in SPLITS or any(name.count("/") < 2 for name in rel):
            return prefix, rel
        top = next(iter(firsts)) + "/"
        prefix += top
        rel = [name[len(top):] for name in rel]


@dataclass
class _MemberSorting:
    """The image members of one tree sorted into split -> class -> names, refusing what does not fit."""

    origin: Path
    prefix: str
    split_folders: bool
    main_split: str
    ignore: set[str]
    splits: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def expected(self) -> str:
        return "<split>/<class>/<image> (split: train or test)" if self.split_folders else "<class>/<image>"

    def add(self, name: str) -> None:
        """One image member, `name` below the prefix."""
        parts = name.split("/")
        full = self.prefix + name
        if not self.split_folders:
            if len(parts) != 2:
                raise DataError(f"{self.origin}: member {full!r} does not fit the layout (expected {self.expected})")
            self.splits.setdefault(self.main_split, {}).setdefault(parts[0], []).append(full)
            return
        if parts[0] not in SPLITS or len(parts) < 2:
            raise DataError(
                f"{self.origin}: member {full!r} is outside the split folders train/ and test/ "
                f"(expected {self.expected}; merge validation images into train/, the pipeline makes its own "
                "validation split)"
            )
        if parts[0] in self.ignore:
            self.ignored.append(full)
        elif len(parts) == 2:
            self.unlabelled.append(full)
        elif len(parts) != 3:
            raise DataError(f"{self.origin}: member {full!r} is nested too deep (expected {self.expected})")
        else:
            self.splits.setdefault(parts[0], {}).setdefault(parts[1], []).append(full)

    def check_folders(self, dirs: set[str]) -> None:
        """Class folders without any image (empty, or holding only skipped files); `dirs` below the prefix."""
        prefix, splits = self.prefix, self.splits
        for d in sorted(dirs):
            parts = d.split("/")
            if self.split_folders:
                if len(parts) == 1 and parts[0] in SPLITS and parts[0] not in self.ignore and parts[0] not in splits:
                    if not any(u.startswith(prefix + parts[0] + "/") for u in self.unlabelled):
                        raise DataError(f"{self.origin}: split folder {prefix + d + '/'!r} holds no class folders "
                                        "with images")
                if len(parts) == 2 and parts[0] in SPLITS and parts[0] not in self.ignore:
                    if parts[1] not in splits.get(parts[0], {}):
                        raise DataError(f"{self.origin}: class folder {prefix + d + '/'!r} holds no images")
            elif len(parts) == 1 and parts[0] not in splits.get(self.main_split, {}):
                raise DataError(f"{self.origin}: class folder {prefix + d + '/'!r} holds no images")

    def class_names(self) -> list[str]:
        """The sorted classes of the main split, once every split is checked to have the same (and the member
        lists are sorted)."""
        main_split, splits = self.main_split, self.splits
        if main_split not in splits:
            ignored_splits = {name[len(self.prefix):].split("/", 1)[0] for name in self.ignored}
            found = ", ".join([f"{s}/" for s in sorted(splits)]
                              + [f"{s}/ (not used here)" for s in sorted(ignored_splits)]) or "nothing"
            raise DataError(f"{self.origin}: no labelled {main_split}/ split (found {found}; expected {self.expected})")
        class_names = sorted(splits[main_split])
        for split, classes in splits.items():
            if set(classes) != set(class_names):
                missing = sorted(set(class_names) - set(classes))
                extra = sorted(set(classes) - set(class_names))
                raise DataError(
                    f"{self.origin}: class folders of {self.prefix}{split}/ differ from {self.prefix}{main_split}/ "
                    f"(missing: {missing or 'none'}; extra: {extra or 'none'})"
                )
            for files in classes.values():
                files.sort()
        return class_names


# ---------------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------------
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


class _TooLarge(Exception):
    pass


def decode_image(data: bytes, spec: DecodeSpec, where: str) -> np.ndarray:
    """Decode one encoded image to (H, W, C) uint8; DataError naming `where` if it cannot be done."""
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:  # from the header: nothing decoded yet
                raise _TooLarge(f"{image.width}x{image.height} pixels, above {MAX_IMAGE_PIXELS} (MAX_IMAGE_PIXELS)")
            image.load()
            converted = image if image.mode == mode else image.convert(mode)
            if spec.image_size is not None:
                converted = fit_and_pad(converted, spec.image_size, spec.pad_value)
            array = np.asarray(converted, dtype=np.uint8)
    except _TooLarge as exc:
        raise DataError(f"{where}: image of {exc}; refusing to decode it") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None
    if spec.expected_hw is not None and array.shape[:2] != tuple(spec.expected_hw):
        h, w = spec.expected_hw
        raise DataError(
            f"{where}: image is {array.shape[1]}x{array.shape[0]} (width x height) but {w}x{h} was expected "
            "(set the image_size option to resize and pad every image)"
        )
    return array[:, :, None] if array.ndim == 2 else array


_WORKER_TREES: dict[tuple[int, str, str], ImageTree] = {}


def _worker_tree(handle: tuple[str, str]) -> ImageTree:
    # keyed by pid: a forked child must never use its parent's open file (shared file offset)
    key = (os.getpid(), *handle)
    tree = _WORKER_TREES.get(key)
    if tree is None:
        kind, path = handle
        tree = ZipTree(Path(path)) if kind == "zip" else DirTree(Path(path), scan=False)
        _WORKER_TREES[key] = tree
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
    if spec.image_size is not None:
        shape = (spec.image_size, spec.image_size, spec.channels)
    else:
        if spec.expected_hw is None:
            first = decode_image(tree.read(names[0]), spec, f"{origin}: member {names[0]!r}")
            spec = DecodeSpec(spec.channels, None, spec.pad_value, (first.shape[0], first.shape[1]))
        shape = (*spec.expected_hw, spec.channels)  # type: ignore[misc]
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
