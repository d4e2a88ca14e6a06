"""Sources whose files are an image tree (a ZIP, tar or folder of `<class>/<image>` or
`<split>/<class>/<image>`): opening and checking the tree, decoding its splits, and `TreeSource`, the base
of ndsb and imagefolder."""
from __future__ import annotations

import abc
import json
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from trickbench.data import DataWarning
from trickbench.data.class_layout import TreeLayout, tree_layout
from trickbench.data.decode import DecodeSpec, check_decoded_size, decode_members, decoded_shape
from trickbench.data.files import read_regular_file
from trickbench.data.sources.base import Located, Options, RawDataset, RawSplit, Source, file_record
from trickbench.data.trees import ImageTree, open_tree
from trickbench.errors import DataError

MANIFEST_MAX_BYTES = 2**20  # a MANIFEST.json beside an archive (../shared/datasets: 10 KiB)


def manifest_sha256(path: Path) -> tuple[Path, str] | None:
    """sha256 listed for `path` in a MANIFEST.json beside it (the ../shared/datasets format), if any."""
    manifest = path.parent / "MANIFEST.json"
    if not manifest.is_file():
        return None
    try:
        entry = json.loads(read_regular_file(manifest, MANIFEST_MAX_BYTES))["archives"][path.name]["sha256"]
    except (KeyError, TypeError):
        return None
    except (OSError, ValueError, DataError) as exc:
        warnings.warn(f"{manifest}: unreadable ({exc}); not using it to verify {path.name}", DataWarning,
                      stacklevel=3)
        return None
    return manifest, str(entry)


def locate_tree(path: Path, role: str, *, fetching: bool, main_split: str = "train",
                 ignore_splits: tuple[str, ...] = ()) -> tuple[dict, ImageTree, TreeLayout]:
    """Open a ZIP/tar/folder image tree, check it against a MANIFEST.json beside it, (when fetching)
    check member CRCs, and read its layout (names only; nothing is decoded)."""
    tree = open_tree(path)
    try:
        checks = []
        sha = tree.digest()
        listed = manifest_sha256(tree.path) if tree.kind != "dir" else None
        if listed is not None:
            manifest, expected = listed
            if expected != sha:
                raise DataError(f"{tree.path}: sha256 {sha} does not match {expected} listed in {manifest} "
                                "(corrupt, truncated or replaced archive)")
            checks.append(f"sha256 matches {manifest.name}")
        if fetching:
            checks.append(tree.verify())
        layout = tree_layout(tree, main_split=main_split, ignore_splits=ignore_splits)
    except BaseException:
        tree.close()
        raise
    record = file_record(tree.path, role, "; ".join(checks) or "exists", sha256=sha, tree=tree)
    return record, tree, layout


def layout_info(layout: TreeLayout) -> dict:
    return {
        "layout": "<split>/<class>/<image>" if layout.split_folders else "<class>/<image>",
        "prefix": layout.prefix,
        "class_names": layout.class_names,
        "counts": layout.counts(),
        "n_skipped": len(layout.skipped),
        "skipped": layout.skipped[:20],
        "n_unlabelled": len(layout.unlabelled),
    }


def decode_split(tree: ImageTree, layout: TreeLayout, split: str, spec: DecodeSpec, *, progress: bool,
                  workers: int | None, desc: str) -> RawSplit:
    names, labels = layout.members(split)
    images = decode_members(tree, names, spec, workers=workers, progress=progress, desc=desc)
    return RawSplit(images, labels)



def check_decoded_total(parts: list[tuple[ImageTree, TreeLayout, str]], spec: DecodeSpec) -> None:
    """Refuse, before anything is decoded, splits that together exceed MAX_DECODED_BYTES (the size from
    `spec`, else from the header of the first image)."""
    named = [(tree, layout.members(split)[0]) for tree, layout, split in parts]
    named = [(tree, names) for tree, names in named if names]
    if named:
        tree, names = named[0]
        check_decoded_size(sum(len(names) for _, names in named), decoded_shape(tree, names[0], spec), tree.path)


def write_example_tree(folder: Path, classes: list[str], *, side: int, channels: int,
                       splits: tuple[str, ...] = ("train",), per_class: int = 2) -> Path:
    """A tiny `<split>/<class>/<n>.png` folder of random pixels (seeded), for `Source.example_options`."""
    rng = np.random.default_rng(0)
    shape = (side, side) if channels == 1 else (side, side, channels)
    for split in splits:
        for name in classes:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / name / f"{index}.png")
    return folder


class TreeSource(Source):
    """A ZIP, tar or folder of `<class>/<image>` or `<split>/<class>/<image>`."""

    IGNORE_SPLITS: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def path(self, opts: Options, raw_dir: Path) -> Path:
        """The tree the options name (DataError naming the option where it is missing)."""

    @abc.abstractmethod
    def decode_spec(self, opts: Options) -> DecodeSpec:
        """How each image is decoded under these options."""

    def image_side(self, opts: Options) -> int | None:
        return self.decode_spec(opts).image_size

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        self.decode_spec(opts)  # option errors before any file work
        record, tree, layout = locate_tree(self.path(opts, raw_dir), "archive", fetching=fetching,
                                           ignore_splits=self.IGNORE_SPLITS)
        return Located([record], layout_info(layout), {"tree": tree, "layout": layout})

    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        tree, layout = located.state["tree"], located.state["layout"]
        spec = self.decode_spec(opts)
        splits = ["train"] + [s for s in ("test",) if s in layout.splits and s not in self.IGNORE_SPLITS]
        check_decoded_total([(tree, layout, split) for split in splits], spec)
        train = decode_split(tree, layout, "train", spec, progress=progress, workers=workers,
                             desc=f"{self.name} train")
        if spec.image_size is None and spec.expected_hw is None:  # the test split must match the train size
            spec = DecodeSpec(spec.channels, None, spec.pad_value, train.images.shape[1:3])
        test = None
        if "test" in splits:
            test = decode_split(tree, layout, "test", spec, progress=progress, workers=workers,
                                desc=f"{self.name} test")
        return RawDataset(self.name, layout.class_names, train, test, {"decode": spec.describe()})
