"""Kaggle's National Data Science Bowl 2015 plankton images: an image tree with 121 class folders."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

from trickbench.data import DataWarning
from trickbench.data.decode import DecodeSpec
from trickbench.data.sources.base import Located, Options, register
from trickbench.data.sources.tree_source import TreeSource, write_example_tree
from trickbench.errors import DataError


@register("ndsb", "Kaggle National Data Science Bowl plankton: 121 classes, grayscale, variable size")
class Ndsb(TreeSource):
    """National Data Science Bowl 2015 plankton images (121 classes, 30,336 labelled images), grayscale.

    Obtaining the data (no credentials are stored here): download train.zip of the Kaggle competition
    "datasciencebowl" (needs a Kaggle account), or NOAA NCEI's "PlanktonSet 1.0" (the same images), or
    use the 5,000-image subset ../shared/datasets/ndsb/ndsb_train_subset.zip.
    Layout: `train/<class>/<image>` (Kaggle train.zip; PlanktonSet's unlabelled test/ images are skipped
    with a warning) or `<class>/<image>`, in a ZIP, tar or folder, optionally below wrapping folders.
    Images are converted to one channel (Image.convert("L"); the shared subset is RGB with R = G = B),
    resized keeping the aspect ratio so the longer side is `image_size` (BICUBIC, up or down), centred
    and padded with `pad_value` (white: plankton is dark on white) to image_size x image_size.
    The default 80 leaves room for the paper's 70x70 random crops. test=None (Kaggle never released test
    labels; use a validation split). Options: archive (default raw_dir/train.zip), image_size, pad_value.
    """

    IGNORE_SPLITS = ("test",)
    OPTIONS: ClassVar[dict[str, str]] = {
        "archive": "Kaggle datasciencebowl train.zip, NOAA PlanktonSet 1.0 (ZIP, tar or folder) or "
                   "../shared/datasets/ndsb/ndsb_train_subset.zip; default raw_dir/train.zip",
        "image_size": "side of the square output (default 80): longer side resized to it keeping the aspect "
                      "ratio, centred, padded with pad_value",
        "pad_value": "background grey level for padding, 0..255 (default 255, white)",
    }

    def path(self, opts: Options, raw_dir: Path) -> Path:
        path = opts.path("archive") or raw_dir / "train.zip"
        if not path.exists():
            raise DataError(
                f"{path}: not found. NDSB cannot be downloaded without a Kaggle account: set data.options.archive "
                "to Kaggle's datasciencebowl train.zip, NOAA NCEI PlanktonSet 1.0, or "
                "../shared/datasets/ndsb/ndsb_train_subset.zip"
            )
        return path

    def decode_spec(self, opts: Options) -> DecodeSpec:
        return DecodeSpec(channels=1, image_size=opts.integer("image_size", 80, 8, 4096),
                          pad_value=opts.integer("pad_value", 255, 0, 255))

    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        located = super().locate(opts, raw_dir, fetching=fetching)
        n = len(located.state["layout"].class_names)
        if n != 121:
            warnings.warn(f"{located.files[0]['path']}: {n} class folders, NDSB has 121", DataWarning, stacklevel=3)
        return located


    def example_options(self, folder: Path) -> dict[str, Any]:
        classes = [f"class_{index:03d}" for index in range(121)]
        write_example_tree(folder, classes, side=12, channels=1, per_class=1)
        return {"archive": str(folder), "image_size": 16}
