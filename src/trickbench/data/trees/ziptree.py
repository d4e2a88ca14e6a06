"""A ZIP archive as an image tree: entries checked from the central directory before anything is inflated."""
from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path

from trickbench.data import limits
from trickbench.data.files import read_bounded, require_regular_file
from trickbench.data.trees.base import Budget, ImageTree, check_member_name
from trickbench.errors import DataError
from trickbench.io import file_kind

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
        if declared is not None and declared > limits.MAX_MEMBERS:  # before zipfile lists them all in memory
            raise DataError(f"{self.path}: declares {declared} entries, above {limits.MAX_MEMBERS} (MAX_MEMBERS); "
                            "refusing this archive")
        try:
            self.zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable ZIP archive (corrupt or truncated?): {exc}") from None
        try:
            self._infos: dict[str, zipfile.ZipInfo] = {}  # posix name -> entry of the ZIP
            budget = Budget(self.path)
            for info in self.zf.infolist():
                name = check_member_name(info.filename, self.path)
                mode = info.external_attr >> 16  # Unix st_mode where the ZIP was made on Unix, else 0
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no file type recorded
                    raise DataError(f"{self.path}: member {info.filename!r} is {file_kind(mode)}; only regular "
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
                return read_bounded(handle, limits.MAX_MEMBER_BYTES, f"{self.path}: member {name!r}",
                                     declared=info.file_size)
        except _ZIP_READ_ERRORS as exc:
            raise DataError(f"{self.path}: member {name!r}: cannot read ({type(exc).__name__}: {exc})") from None

    def verify(self) -> str:
        """Read every member in limits.READ_CHUNK pieces (up to its checked declared size) and check its CRC-32."""
        for name, info in self._infos.items():
            try:
                with self.zf.open(info) as handle:
                    while handle.read(limits.READ_CHUNK):
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

