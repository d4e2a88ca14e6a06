"""An image tree: the files and folders of a ZIP, a tar or a folder, addressed by relative POSIX paths,
and the checks every kind applies to what it lists (member names, entry counts, expanded sizes).

Nothing is ever extracted to disk: members are read into memory by name, in bounded chunks. Even so, an
archive holding a member with an absolute path or a `..` component is refused as a whole (`DataError`
naming the member), as are members that are links, devices or FIFOs.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from trickbench.data import limits
from trickbench.errors import DataError
from trickbench.io import sha256_file

_UNSAFE_DRIVE = re.compile(r"^[A-Za-z]:")


class Budget:
    """Counts the entries and expanded bytes of one tree against MAX_MEMBERS, MAX_*_BYTES and MAX_RATIO."""

    def __init__(self, origin: str | os.PathLike):
        self.origin, self.members, self.total = origin, 0, 0

    def admit(self, name: str, size: int, compressed: int | None = None) -> None:
        where = f"{self.origin}: member {name!r}"
        self.members += 1
        if self.members > limits.MAX_MEMBERS:
            raise DataError(f"{where}: more than {limits.MAX_MEMBERS} entries (MAX_MEMBERS); refusing this archive")
        if size < 0 or size > limits.MAX_MEMBER_BYTES:
            raise DataError(f"{where}: declares {size} bytes expanded, above {limits.size_text(limits.MAX_MEMBER_BYTES)} "
                            "(MAX_MEMBER_BYTES); refusing this archive")
        if compressed is not None and size > limits.RATIO_FLOOR and size > limits.MAX_RATIO * max(compressed, 1):
            raise DataError(f"{where}: expands {size / max(compressed, 1):.0f}x ({compressed} -> {size} bytes), "
                            f"above the limit {limits.MAX_RATIO}x (MAX_RATIO): a compression bomb? refusing this archive")
        self.total += size
        if self.total > limits.MAX_TOTAL_BYTES:
            raise DataError(f"{where}: the members so far expand to more than {limits.size_text(limits.MAX_TOTAL_BYTES)} "
                            "(MAX_TOTAL_BYTES); refusing this archive")

    def stream(self, name: str, expanded: int, compressed: int) -> None:
        """The whole compressed stream (a .tar.gz) up to the end of member `name`."""
        if expanded > limits.RATIO_FLOOR and expanded > limits.MAX_RATIO * max(compressed, 1):
            raise DataError(f"{self.origin}: member {name!r}: the archive expands {expanded / max(compressed, 1):.0f}x "
                            f"up to this member, above the limit {limits.MAX_RATIO}x (MAX_RATIO): a compression bomb? "
                            "refusing this archive")


def check_member_name(name: str, origin: str | os.PathLike) -> str:
    """Return the member name with `/` separators; DataError for absolute paths and `..` components."""
    posix = name.replace("\\", "/")
    shown = posix[:80] + "..." if len(posix) > 80 else posix
    depth = len([part for part in posix.split("/") if part])
    if len(posix) > limits.MAX_NAME_CHARS:
        raise DataError(f"{origin}: member name {shown!r} is {len(posix)} characters long, above {limits.MAX_NAME_CHARS} "
                        "(MAX_NAME_CHARS); refusing to read this archive")
    if depth > limits.MAX_DEPTH:
        raise DataError(f"{origin}: member name {shown!r} is {depth} levels deep, above {limits.MAX_DEPTH} (MAX_DEPTH); "
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


def list_for_message(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
