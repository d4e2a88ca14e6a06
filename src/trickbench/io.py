"""Atomic file writes, bounded reads and content digests: every stage output goes through here, and every
file a user names is read through `read_bytes_bounded` (a regular file of at most a given size, so
/dev/zero, a FIFO or a huge file is refused in one line before anything is read)."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from trickbench.errors import BadInput, MissingInputError, UnreadableFileError

MAX_STAGE_JSON_BYTES = 256 * 1024 * 1024  # a stage's JSON (the largest, an ensemble table, is under 1 MB)


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


def read_bytes_bounded(path: str | os.PathLike, limit: int, what: str,
                       error: type[BadInput] = UnreadableFileError) -> bytes:
    """The bytes of the regular file `path` (symlinks followed), at most `limit` of them; else `error` (a
    BadInput: one line naming the path and what was expected). `what` names the file's role ("README").
    The kind is checked before opening (opening a FIFO blocks), the size before and while reading (a file
    can grow in between; /proc files report size 0)."""
    missing = MissingInputError if error is UnreadableFileError else error
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise missing(f"{path}: {what} not found") from None
    except OSError as failure:
        raise error(f"{path}: cannot read the {what} ({failure.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is {file_kind(info.st_mode)}; expected a regular file ({what})")
    if info.st_size > limit:
        raise error(f"{path}: {info.st_size:,} bytes; a {what} may have at most {limit:,} bytes")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as failure:
        raise error(f"{path}: cannot read the {what} ({failure.strerror})") from None
    if len(data) > limit:
        raise error(f"{path}: more than {limit:,} bytes; a {what} may have at most {limit:,} bytes")
    return data


def read_text_bounded(path: str | os.PathLike, limit: int, what: str,
                      error: type[BadInput] = UnreadableFileError) -> str:
    """`read_bytes_bounded`, decoded as UTF-8 (else `error` naming the path and the byte)."""
    data = read_bytes_bounded(path, limit, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise error(f"{path}: not UTF-8 text (byte {failure.start}); expected a {what}") from None


def read_json(path: str | os.PathLike, limit: int = MAX_STAGE_JSON_BYTES) -> Any:
    """A JSON file a stage wrote; MissingInputError or UnreadableFileError (bad input) naming it."""
    try:
        data = read_bytes_bounded(path, limit, "stage file (JSON)")
    except MissingInputError:
        raise MissingInputError(f"{path}: missing; run the stage that writes it first") from None
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError: truncated or garbled
        raise UnreadableFileError(f"{path}: unreadable ({type(error).__name__}: {error}); rerun the stage "
                                  "that writes it") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def file_kind(mode: int) -> str:
    """What an `st_mode` is, for an error line: `is a FIFO, not a regular file`."""
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return kind
    return "a special file"


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
