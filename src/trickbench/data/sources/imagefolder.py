"""Any folder, ZIP or tar of `<class>/<image>` or `<split>/<class>/<image>` images."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from trickbench.data.decode import DecodeSpec
from trickbench.data.sources.base import Options, register
from trickbench.data.sources.tree_source import TreeSource, write_example_tree
from trickbench.errors import DataError


@register("imagefolder", "any folder/ZIP/tar of <class>/<image> or <split>/<class>/<image> images")
class ImageFolder(TreeSource):
    """Images in `<class>/<image>` (all train, test=None) or `<split>/<class>/<image>` (split: train, test)
    in a folder, ZIP or tar, in any format Pillow reads (extensions: see class_layout.IMAGE_EXTENSIONS; other
    files are skipped with a warning). Class index = position of the folder name in sorted order.

    Options: path (required); channels 3 (default, Image.convert("RGB")) or 1 (Image.convert("L"));
    image_size: resize keeping the aspect ratio and pad to a square as for ndsb, else every image must
    have the size of the first one (DataError naming the file that differs); pad_value (default 0).
    """

    OPTIONS: ClassVar[dict[str, str]] = {
        "path": "folder, ZIP or tar of <class>/<image> or <split>/<class>/<image> (split: train, test); required",
        "channels": "3 (RGB, default) or 1 (grayscale)",
        "image_size": "side of the square output: longer side resized to it keeping the aspect ratio, centred, "
                      "padded with pad_value; absent: all images must have the same size",
        "pad_value": "padding value 0..255 for image_size (default 0)",
    }

    def path(self, opts: Options, raw_dir: Path) -> Path:
        path = opts.path("path", required=True)
        assert path is not None
        if not path.exists():
            raise DataError(f"{path}: no such file or folder (data.options.path)")
        return path

    def decode_spec(self, opts: Options) -> DecodeSpec:
        channels = opts.choice("channels", (1, 3), 3)
        return DecodeSpec(channels=channels, image_size=opts.integer("image_size", None, 1, 4096),
                          pad_value=opts.integer("pad_value", 0, 0, 255))


    def example_options(self, folder: Path) -> dict[str, Any]:
        write_example_tree(folder, ["a", "b"], side=8, channels=3, splits=("train", "test"))
        return {"path": str(folder)}
