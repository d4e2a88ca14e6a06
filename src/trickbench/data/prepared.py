"""The prepared data set: uint8 arrays per split, one uncompressed .npz written atomically."""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trickbench.errors import DataError, MissingInputError, UnreadableFileError
from trickbench.io import atomic_path, sha256_arrays

SPLITS = ("train", "val", "test")
ARRAY_NAMES = ("class_names", *(f"{kind}_{split}" for kind in ("images", "labels") for split in SPLITS))
# what numpy and zipfile raise on a truncated, garbled or foreign .npz (pickled data: ValueError)
UNREADABLE_NPZ = (zipfile.BadZipFile, EOFError, ValueError, zlib.error)


@dataclass
class Prepared:
    images: dict[str, np.ndarray]  # split -> uint8 (N, H, W, C)
    labels: dict[str, np.ndarray]  # split -> int64 (N,)
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images["train"].shape[1:])  # type: ignore[return-value]

    def digest(self) -> str:
        arrays = [a for split in SPLITS for a in (self.images[split], self.labels[split])]
        return sha256_arrays(*arrays)

    def class_counts(self) -> dict[str, list[int]]:
        return {split: np.bincount(self.labels[split], minlength=self.num_classes).tolist() for split in SPLITS}


def save_prepared(path: str | Path, prepared: Prepared) -> None:
    arrays = {f"{kind}_{split}": getattr(prepared, kind)[split] for kind in ("images", "labels") for split in SPLITS}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file handle stops numpy from appending ".npz"
            np.savez(handle, class_names=np.array(prepared.class_names), **arrays)


def read_npz(path: str | Path, required: tuple[str, ...], stage: str) -> dict[str, np.ndarray]:
    """Every array of an .npz the `stage` stage wrote; MissingInputError or UnreadableFileError (bad input)
    naming the file, also when one of the `required` arrays is absent."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in required if name not in archive.files]
            if not missing:
                return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise MissingInputError(f"{path}: missing; run the {stage} stage first") from None
    except UNREADABLE_NPZ as error:  # a member is read (and its CRC checked) inside the block
        raise UnreadableFileError(f"{path}: unreadable ({type(error).__name__}: {error}); rerun the {stage} "
                                  "stage") from None
    raise UnreadableFileError(f"{path}: lacks the arrays {missing}; expected {list(required)}; rerun the "
                              f"{stage} stage")


def load_prepared(path: str | Path) -> Prepared:
    """The prepare stage's .npz; MissingInputError or UnreadableFileError (bad input) naming it."""
    arrays = read_npz(path, ARRAY_NAMES, "prepare")
    return Prepared(
        images={split: arrays[f"images_{split}"] for split in SPLITS},
        labels={split: arrays[f"labels_{split}"].astype(np.int64) for split in SPLITS},
        class_names=[str(name) for name in arrays["class_names"]],
    )


def stratified_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `per_class` images of every class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        chosen.append(members[:per_class])
    return np.sort(np.concatenate(chosen))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `fraction` of every class held out (at least one where a class has ≥ 2)."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        n_held = int(round(fraction * len(members)))
        if len(members) >= 2:
            n_held = min(max(n_held, 1), len(members) - 1)
        else:
            n_held = 0
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def class_indices(wanted: list[int | str], class_names: list[str], source: str) -> list[int]:
    """`data.classes` (indices or names of the source's classes) as indices, in the order given; DataError
    (bad input) naming data.classes for an index out of range, an unknown name or a class given twice."""
    indices = []
    for item in wanted:
        if isinstance(item, str):
            if item not in class_names:
                raise DataError(f"data.classes: {item!r} is not a class of data.source {source}; expected an index "
                                f"0-{len(class_names) - 1} or one of: {', '.join(class_names)}")
            index = class_names.index(item)
        elif not 0 <= item < len(class_names):
            raise DataError(f"data.classes: {item} is out of range; data.source {source} has {len(class_names)} "
                            f"classes, expected indices 0-{len(class_names) - 1}")
        else:
            index = item
        if index in indices:
            raise DataError(f"data.classes: class {index} ({class_names[index]}) is given twice; expected each "
                            "class at most once")
        indices.append(index)
    return indices


def keep_classes(images: np.ndarray, labels: np.ndarray, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The images of the classes `indices` in their original order, labels renumbered 0..k-1 in the order
    of `indices`."""
    relabel = np.full(int(max(labels.max(initial=0), *indices)) + 1, -1, dtype=np.int64)
    relabel[indices] = np.arange(len(indices))
    rows = np.flatnonzero(relabel[labels] >= 0)
    return images[rows], relabel[labels[rows]]
