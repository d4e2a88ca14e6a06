"""Data sources: locate and verify raw files (`fetch`, the download stage), decode them to uint8 arrays
(`load`, the prepare stage's first step).

A source is one module of this package holding a class on the abstract `Source` (see `base`), registered
with `@register("name", "one-line description")`: the name is written there only. Every module in this
folder is imported when the package is, so adding a source is adding its file.
Relative paths in options are relative to the working directory (the repository root in a pipeline run).
Class index = position of the class name in sorted order (for CIFAR: the official label order).
Every failure caused by the input is a `DataError` whose message names the file (and member) and what
was expected; `load` returns arrays only, so a failure never leaves partial outputs.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from trickbench.data import DataWarning
from trickbench.data.sources.base import SOURCES, Located, Options, RawDataset, RawSplit, Source, register
from trickbench.errors import DataError
from trickbench.provenance import package_version

__all__ = [
    "RawSplit", "RawDataset", "DataError", "DataWarning", "SOURCES", "Source", "Options", "Located", "register",
    "fetch", "load", "discover",
]


def discover(folders: Iterable[str], package: str) -> list[str]:
    """Import every module of `package` found in `folders` (their sources register themselves)."""
    names = sorted(module.name for module in pkgutil.iter_modules(list(folders)))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


discover(__path__, __name__)


def _source(name: str, options: Mapping[str, Any] | None) -> tuple[Source, Options]:
    cls = SOURCES.get(name)
    return cls(), Options(name, options, cls.OPTIONS)


def fetch(source: str, options: Mapping[str, Any] | None, raw_dir: str | os.PathLike) -> dict:
    """The download stage: locate (or download into raw_dir) and verify the raw files; never decode.

    Returns a JSON-able record {"source", "options", "files": [{"path", "sha256", "bytes", "role",
    "kind", "check"}], ...source-specific layout info} for the stage to write.
    """
    src, opts = _source(source, options)
    located = src.locate(opts, Path(raw_dir), fetching=True)
    try:
        return {"source": source, "options": opts.jsonable(), "files": located.files, **located.info}
    finally:
        located.close()


def load(source: str, options: Mapping[str, Any] | None, raw_dir: str | os.PathLike, *, progress: bool = True,
         workers: int | None = None) -> RawDataset:
    """The prepare stage's decode step: read what `fetch` located (never downloads), return uint8 arrays.

    progress: tqdm bar on stderr. workers: decoding processes (default: the CPUs this process may use).
    """
    src, opts = _source(source, options)
    located = src.locate(opts, Path(raw_dir), fetching=False)
    try:
        dataset = src.decode(located, opts, progress=progress, workers=workers)
    finally:
        located.close()
    provenance = {"source": source, "options": opts.jsonable(), "files": located.files, **located.info}
    provenance.update(dataset.provenance)
    provenance["splits"] = {
        split: {"n_images": len(part), "shape": list(part.images.shape[1:]),
                "per_class": {c: int(n) for c, n in zip(dataset.class_names,
                                                         np.bincount(part.labels, minlength=len(dataset.class_names)))}}
        for split, part in (("train", dataset.train), ("test", dataset.test)) if part is not None
    }
    provenance["versions"] = {pkg: package_version(pkg) for pkg in ("numpy", "pillow", "trickbench")}
    dataset.provenance = provenance
    return dataset
