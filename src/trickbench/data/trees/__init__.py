"""Image trees: `<class>/<image>` or `<split>/<class>/<image>` files in a ZIP, a tar or a folder, read safely.

Limits (`trickbench.data.limits`, checked from the declared sizes before anything is inflated, and again
while reading): entries per tree, bytes per member and per tree, the compression ratio, name depth and
length, tar header blocks. A tree beyond a limit is refused with one `DataError` naming the archive and
the member. Links, FIFOs and devices are refused in ZIPs, tars and folders alike: never followed or read.
"""
from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path

from trickbench.data.trees.base import ImageTree, check_member_name
from trickbench.data.trees.dirtree import DirTree
from trickbench.data.trees.tartree import TAR_READ_ERRORS, BoundedTarInfo, TarTree, read_tar_members
from trickbench.data.trees.ziptree import ZipTree
from trickbench.errors import DataError
from trickbench.io import file_kind

__all__ = ["ImageTree", "ZipTree", "TarTree", "DirTree", "open_tree", "tree_for_worker", "read_tar_members",
           "check_member_name"]


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
        raise DataError(f"{path}: is {file_kind(mode)}, not a folder, a ZIP archive or a tar archive")
    name = path.name.lower()
    if name.endswith(".zip"):
        return ZipTree(path)
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return TarTree(path)
    if zipfile.is_zipfile(path):
        return ZipTree(path)
    try:  # tarfile.is_tarfile, with the bounded header reader
        with tarfile.open(path, "r:*", tarinfo=BoundedTarInfo):
            pass
    except TAR_READ_ERRORS:
        pass
    else:
        return TarTree(path)
    raise DataError(f"{path}: not a folder, a ZIP archive or a tar archive")



def tree_for_worker(handle: tuple[str, str]) -> ImageTree:
    """A tree a decoding process opens itself from `ImageTree.handle()` (never its parent's open file)."""
    kind, path = handle
    return ZipTree(Path(path)) if kind == "zip" else DirTree(Path(path), scan=False)
