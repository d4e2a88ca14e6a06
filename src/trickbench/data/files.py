"""Regular files only, read in bounded chunks: a FIFO, a device or a socket is never opened for reading,
so a path the user names (or a link inside a tree) cannot hang a stage or feed it /dev/zero."""
from __future__ import annotations

import hashlib
import io
import os
import stat

from trickbench.data import limits
from trickbench.errors import DataError
from trickbench.io import file_kind

__all__ = ["md5_file", "require_regular_file", "open_regular", "read_regular_file", "read_bounded"]


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open_regular(path, follow=True) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require_regular_file(path: str | os.PathLike, what: str = "") -> None:
    """DataError unless `path` (symlinks followed: the user named it) is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}){what}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is {file_kind(mode)}, not a regular file{what}")


def open_regular(path: str | os.PathLike, *, follow: bool) -> io.BufferedReader:
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
        raise DataError(f"{path}: is {file_kind(mode)}, not a regular file; only regular files are read")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular_file(path: str | os.PathLike, limit: int | None = None, *, follow: bool = True,
                      limit_name: str = "MAX_MEMBER_BYTES") -> bytes:
    """The bytes of a regular file of at most `limit` (default MAX_MEMBER_BYTES) bytes, read in chunks;
    DataError if it is larger or not a regular file. `limit_name`: the bound's name, for the message."""
    with open_regular(path, follow=follow) as handle:
        return read_bounded(handle, limits.MAX_MEMBER_BYTES if limit is None else limit, str(path), declared=None,
                            limit_name=limit_name)


def read_bounded(handle: io.IOBase, limit: int, where: str, *, declared: int | None,
                 limit_name: str = "MAX_MEMBER_BYTES") -> bytes:
    """Read a stream in READ_CHUNK pieces; DataError once it exceeds `limit` (or its declared size)."""
    cap = limit if declared is None else min(limit, declared)
    parts, total = [], 0
    while block := handle.read(min(limits.READ_CHUNK, cap + 1 - total)):
        total += len(block)
        if total > cap:
            what = f"more than its declared {declared} bytes" if declared is not None and declared < limit \
                else f"more than {limits.size_text(limit)} ({limit_name})"
            raise DataError(f"{where}: expands to {what}; refusing to read further")
        parts.append(block)
    return b"".join(parts)
