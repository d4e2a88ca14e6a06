"""scikit-learn's bundled 8x8 handwritten digits: offline, no options."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trickbench.data.sources.base import Located, Options, RawDataset, RawSplit, Source, file_record, register
from trickbench.errors import DataError
from trickbench.provenance import package_version


def _sklearn_digits_path() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("scikit-learn is not installed: the digits source reads its bundled "
                        "sklearn/datasets/data/digits.csv.gz")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


@register("digits", "scikit-learn's bundled 8x8 handwritten digits: 1,797 grayscale images, offline")
class Digits(Source):
    """scikit-learn's digits (`sklearn.datasets.load_digits`), read from the file scikit-learn ships
    (sklearn/datasets/data/digits.csv.gz: 64 pixel values 0..16 and the label per row).

    Pixels become uint8 by round(v * 255 / 16); images (1797, 8, 8, 1); classes "0".."9"; test=None.
    No options.
    """

    OPTIONS: ClassVar[dict[str, str]] = {}

    def image_side(self, opts: Options) -> int | None:
        return 8

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        path = _sklearn_digits_path()
        if not path.is_file():
            raise DataError(f"{path}: not found (expected inside the installed scikit-learn)")
        check = f"shipped with scikit-learn {package_version('scikit-learn')}"
        return Located([file_record(path, "digits.csv.gz", check)], {}, {"path": path})

    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        path = located.state["path"]
        try:
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: cannot read the digits table ({exc})") from None
        if table.ndim != 2 or table.shape[1] != 65:
            raise DataError(f"{path}: expected 65 columns (64 pixels + label), got shape {table.shape}")
        pixels, labels = table[:, :64], table[:, 64]
        if pixels.min() < 0 or pixels.max() > 16 or not np.array_equal(labels, np.round(labels)):
            raise DataError(f"{path}: expected pixel values 0..16 and integer labels")
        images = np.rint(pixels * 255.0 / 16.0).astype(np.uint8).reshape(-1, 8, 8, 1)
        train = RawSplit(images, labels.astype(np.int64))
        names = [str(i) for i in range(10)]
        if train.labels.min() < 0 or train.labels.max() >= len(names):
            raise DataError(f"{path}: labels outside 0..9")
        return RawDataset(self.name, names, train, None, {"decode": {"scale": "round(v * 255 / 16)"}})


    def example_options(self, folder: Path) -> dict[str, Any]:
        return {}
