"""A folder as an image tree."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from trickbench.data import limits
from trickbench.data.files import open_regular, read_regular_file
from trickbench.data.trees.base import Budget, ImageTree, check_member_name
from trickbench.errors import DataError
from trickbench.io import file_kind

class DirTree(ImageTree):
    """A folder. Only regular files and folders are listed; a symlink, FIFO, device or socket anywhere
    below it is refused (never followed, never opened), so nothing outside the folder is read."""

    kind = "dir"

    def __init__(self, path: Path, *, scan: bool = True):
        super().__init__(path)
        self._sizes: dict[str, int] = {}
        if not scan:  # a worker only reads files by name
            return
        budget = Budget(self.path)
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
                    raise DataError(f"{self.path / name}: is {file_kind(mode)}; only regular files and folders "
                                    "are read from an image folder (copy the file in, or point at the real folder)")
            pending.extend(reversed(subdirs))  # depth first, in name order
        self._add_parents()

    def read(self, name: str) -> bytes:
        return read_regular_file(self.path / name, limits.MAX_MEMBER_BYTES, follow=False)

    def digest(self) -> str:
        """sha256 over the sorted lines `<relative path>\\0<sha256 of the file>\\n` of every file."""
        digest = hashlib.sha256()
        for name in sorted(self.files):
            file_digest = hashlib.sha256()
            with open_regular(self.path / name, follow=False) as handle:
                while block := handle.read(limits.READ_CHUNK):
                    file_digest.update(block)
            digest.update(f"{name}\0{file_digest.hexdigest()}\n".encode())
        return digest.hexdigest()

    def nbytes(self) -> int:
        return sum(self._sizes.values())

    def handle(self) -> tuple[str, str]:
        return ("dir", str(self.path))

