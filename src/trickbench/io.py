"""Atomic file writes and content digests: every stage output goes through here."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from trickbench.errors import MissingInputError, UnreadableFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` (`.<name>.<random><suffix>`); rename it onto `path` only if the
    block succeeds.

    Readers (Snakemake, DVC, a later stage) therefore see either no file or the complete one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any] | Sequence[Any]], header: list[str]) -> None:
    """A CSV with `header`; each row a mapping (its values in header order) or a sequence."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([row[key] for key in header] if isinstance(row, Mapping) else row)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file a stage wrote; MissingInputError or UnreadableFileError (bad input) naming it."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise MissingInputError(f"{path}: missing; run the stage that writes it first") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError: truncated or garbled
        raise UnreadableFileError(f"{path}: unreadable ({type(error).__name__}: {error}); rerun the stage "
                                  "that writes it") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_arrays(*arrays: Any) -> str:
    """Digest of array contents, shapes and dtypes (numpy arrays or anything with tobytes)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype}:{tuple(array.shape)}".encode())
        digest.update(memoryview(array.tobytes()))
    return digest.hexdigest()


def digest_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()
