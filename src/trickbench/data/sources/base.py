"""The data-source interface: the abstract `Source`, what it hands back (`Located`, `RawDataset`), its
typed options, and `register`, the one place a source's name is written.

A source is one module in this package holding one class::

    @register("name", "one-line description")
    class MySource(Source):
        OPTIONS = {"path": "what it is"}
        def locate(self, opts, raw_dir, *, fetching): ...
        def decode(self, located, opts, *, progress, workers): ...
        def example_options(self, folder): ...

The package imports every module in its folder, so that file is the whole change.
"""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from trickbench.data.trees import ImageTree
from trickbench.errors import DataError
from trickbench.io import sha256_file
from trickbench.registry import Registry

__all__ = ["SOURCES", "register", "file_record", "Source", "Options", "Located", "RawSplit", "RawDataset"]

SOURCES = Registry("data source")


@dataclass
class RawSplit:
    """One split as decoded uint8 arrays."""

    images: np.ndarray  # uint8, (N, H, W, C), C = 1 (grayscale) or 3 (RGB)
    labels: np.ndarray  # int64, (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, H, W, 1|3), got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                             f"{self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class RawDataset:
    name: str
    class_names: list[str]
    train: RawSplit
    test: RawSplit | None  # None where the source has no labelled test split
    provenance: dict = field(default_factory=dict)  # files read (sha256), options, layout, decode settings


@dataclass
class Located:
    """What `Source.locate` found: JSON-able file records and info, plus open handles for `decode`."""

    files: list[dict]
    info: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)

    def close(self) -> None:
        for value in self.state.values():
            if isinstance(value, ImageTree):
                value.close()


class Options:
    """Typed access to `data.options`; every error names the option key."""

    def __init__(self, source: str, given: Mapping[str, Any] | None, allowed: Mapping[str, str]):
        self.source, self.allowed = source, dict(allowed)
        self.given = dict(given or {})
        unknown = sorted(set(self.given) - set(self.allowed))
        if unknown:
            valid = ", ".join(sorted(self.allowed)) or "none"
            raise DataError(f"data.options.{unknown[0]}: unknown option for data source {source!r} "
                            f"(valid options: {valid})")

    def _key(self, key: str) -> str:
        return f"data.options.{key}"

    def has(self, key: str) -> bool:
        return self.given.get(key) is not None

    def path(self, key: str, *, required: bool = False) -> Path | None:
        value = self.given.get(key)
        if value is None:
            if required:
                raise DataError(f"{self._key(key)}: data source {self.source!r} needs this option "
                                f"({self.allowed[key]})")
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise DataError(f"{self._key(key)}: expected a path, got {value!r}")
        return Path(value).expanduser()

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.given.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise DataError(f"{self._key(key)}: expected an integer in [{lo}, {hi}], got {value!r}")
        return int(value)

    def choice(self, key: str, choices: tuple, default: Any) -> Any:
        value = self.given.get(key, default)
        if not any(value == choice and type(value) is type(choice) for choice in choices):  # 3.0 is not 3
            raise DataError(f"{self._key(key)}: expected one of {list(choices)}, got {value!r}")
        return value

    def text(self, key: str) -> str | None:
        value = self.given.get(key)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{self._key(key)}: expected a string, got {value!r}")
        return value

    def jsonable(self) -> dict:
        return {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in sorted(self.given.items())}


class Source(abc.ABC):
    """Base of every data source: set OPTIONS, implement locate, decode and example_options; `register`
    gives the class its `name`."""

    name: ClassVar[str] = ""  # set by `register`
    OPTIONS: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def locate(self, opts: Options, raw_dir: Path, *, fetching: bool) -> Located:
        """Find the raw files and verify them; never decode. `fetching`: the download stage (may download,
        runs the thorough checks); otherwise the prepare stage (never downloads)."""

    @abc.abstractmethod
    def decode(self, located: Located, opts: Options, *, progress: bool, workers: int | None) -> RawDataset:
        """The files `locate` found, decoded to uint8 arrays; DataError naming the file for bad input."""

    @abc.abstractmethod
    def example_options(self, folder: Path) -> dict[str, Any]:
        """Options under which this source works offline on a tiny input it writes below `folder` (or on
        what ships with the environment): what the contract test in tests/test_source_contract.py runs."""

    def image_side(self, opts: Options) -> int | None:
        """Side of the square images `decode` will give when the options alone tell (None: only the files
        tell); raises DataError for a bad value of an option it reads. `trickbench validate` calls it."""
        return None


def register(name: str, description: str) -> Callable[[type[Source]], type[Source]]:
    """Class decorator adding a Source subclass to SOURCES under `name`, which the class then carries."""

    def add(cls: type[Source]) -> type[Source]:
        cls.name = name
        SOURCES.add(name, cls, description)
        return cls

    return add


def file_record(path: Path, role: str, check: str, *, sha256: str | None = None,
                 tree: ImageTree | None = None) -> dict:
    if tree is not None:
        sha256 = sha256 or tree.digest()
        nbytes, kind = tree.nbytes(), tree.kind
    else:
        sha256 = sha256 or sha256_file(path)
        nbytes, kind = path.stat().st_size, "file"
    return {"path": os.fspath(path), "role": role, "kind": kind, "sha256": sha256, "bytes": nbytes, "check": check}
