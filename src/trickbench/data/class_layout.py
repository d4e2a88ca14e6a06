"""Class layout of an image tree: which members are images, of which split and class.

`<class>/<image>` (all one split) or `<split>/<class>/<image>` (splits: train, test), possibly below one or
more wrapping folders (`mydata/train/cat/1.png`), which are stripped. Files whose extension is not an
image extension (README.txt, .DS_Store, `__MACOSX/` resource forks, other hidden files) are skipped with
one `DataWarning` naming them. Class index = position of the class folder name in sorted order.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from trickbench.data import DataWarning
from trickbench.data.trees import ImageTree
from trickbench.data.trees.base import list_for_message
from trickbench.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "SPLITS", "TreeLayout", "tree_layout"]

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm",
})
SPLITS = ("train", "test")


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
        warnings.warn(f"{origin}: skipping {len(skipped)} non-image member(s): {list_for_message(skipped)}",
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
                      f"folder: {list_for_message(sorting.unlabelled, 3)}", DataWarning, stacklevel=3)
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

