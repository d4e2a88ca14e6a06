"""A tar archive (any compression tarfile reads) as an image tree, and the one-pass read of named members."""
from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from trickbench.data import limits
from trickbench.data.files import read_bounded, require_regular_file
from trickbench.data.trees.base import Budget, ImageTree, check_member_name, list_for_message
from trickbench.errors import DataError

TAR_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError)


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long-name or a pax header block whole into memory before anyone sees the
    member: refuse a block above limits.MAX_HEADER_BYTES first (a 1 GiB "name" gzips to 1 MiB)."""

    def _check_header(self, tf: tarfile.TarFile) -> None:
        if self.size > limits.MAX_HEADER_BYTES:
            raise DataError(f"{tf.name}: member header at offset {self.offset} declares a {self.size}-byte long-name "
                            f"or pax block, above {limits.size_text(limits.MAX_HEADER_BYTES)} (MAX_HEADER_BYTES); refusing this archive")

    def _proc_gnulong(self, tf: tarfile.TarFile):  # type: ignore[override]
        self._check_header(tf)
        return super()._proc_gnulong(tf)  # type: ignore[misc]

    def _proc_pax(self, tf: tarfile.TarFile):  # type: ignore[override]
        self._check_header(tf)
        return super()._proc_pax(tf)  # type: ignore[misc]


def _tar_entries(tf: tarfile.TarFile, path: Path, budget: Budget) -> Iterator[tarfile.TarInfo]:
    """The members of an open tar, one header at a time, each checked against the limits before the
    stream moves past its data (in a compressed tar, moving past means inflating it)."""
    compressed = path.stat().st_size
    while True:
        try:
            member = tf.next()
        except TAR_READ_ERRORS as exc:
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
            self.tf = tarfile.open(self.path, "r:*", tarinfo=BoundedTarInfo)
        except TAR_READ_ERRORS as exc:
            raise DataError(f"{self.path}: not a readable tar archive (corrupt or truncated?): {exc}") from None
        try:
            self._members: dict[str, tarfile.TarInfo] = {}
            for member in _tar_entries(self.tf, self.path, Budget(self.path)):
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
        return read_bounded(handle, limits.MAX_MEMBER_BYTES, f"{self.path}: member {name!r}", declared=member.size)

    def read_many(self, names: Sequence[str]) -> list[bytes]:
        wanted = {name: i for i, name in enumerate(names)}
        out: list[bytes | None] = [None] * len(names)
        ordered = sorted(wanted, key=lambda n: self._members[n].offset_data)  # sequential in a gzip stream
        for name in ordered:
            try:
                out[wanted[name]] = self._read_member(name)
            except TAR_READ_ERRORS as exc:
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
                while handle.read(limits.READ_CHUNK):
                    pass
        except TAR_READ_ERRORS as exc:
            raise DataError(f"{self.path}: corrupt or truncated tar archive ({type(exc).__name__}: {exc})") from None
        return f"read all {len(self.files)} members (gzip CRC where compressed)"

    def close(self) -> None:
        self.tf.close()



def read_tar_members(path: str | os.PathLike, wanted: Iterable[str]) -> dict[str, bytes]:
    """Read the named members of a (compressed) tar in one sequential pass; DataError if any is missing,
    if a member name is unsafe, if the archive is beyond the limits, or if it is corrupt or truncated."""
    path = Path(path)
    wanted = set(wanted)
    found: dict[str, bytes] = {}
    require_regular_file(path)
    budget = Budget(path)
    compressed = path.stat().st_size
    try:
        with tarfile.open(path, "r|*", tarinfo=BoundedTarInfo) as tf:
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
                    found[name] = read_bounded(handle, limits.MAX_MEMBER_BYTES, f"{path}: member {name!r}",
                                                declared=member.size)
                    if len(found) == len(wanted):  # what follows is never inflated
                        break
    except TAR_READ_ERRORS as exc:
        raise DataError(f"{path}: corrupt or truncated tar archive ({type(exc).__name__}: {exc})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{path}: missing member(s) {list_for_message(missing)}")
    return found
