"""The one reader of each file a stage reads back: a run's metrics.json, history.csv, batch_loss.csv,
predictions.npz and diagnostics.json, the prepared data's manifest.json and a study's ensemble table.

Each reader checks that the file holds what its stage writes (a JSON mapping with its keys and their types; a
CSV with a header, its columns and at least one row of numbers; arrays of the expected shapes and dtypes) and
otherwise raises MalformedFileError naming the file, what is wrong and what was expected: a hand-edited file or
another program's ends in one line (exit 2), never in a KeyError far away. `status` shows such a point as
`corrupt (<file>)`.

Outside stages/ so that any module reading results back (claims, versions) can use `read_csv_rows` and
`check_record` too: one reader per file kind.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable

from trickbench.errors import MalformedFileError
from trickbench.io import read_json, read_text_bounded

MAX_CSV_BYTES = 256 * 1024 * 1024  # history.csv of 100,000 epochs is about 10 MB
RUN_STATUSES = ("completed", "diverged")
SPLIT_METRICS = tuple(f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("loss", "error"))
# one row per epoch: the history in a checkpoint, history.csv's columns, the metrics logged per epoch
HISTORY_COLUMNS = ("epoch", "train_loss", "train_error", "val_loss", "val_error", "lr", "seconds")
BATCH_LOSS_COLUMNS = ("epoch", "batch", "loss")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "number": (_is_number, "a number"),
    "mapping": (lambda v: isinstance(v, dict), "a mapping"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


def malformed(path: Path, problem: str, stage: str) -> MalformedFileError:
    return MalformedFileError(f"{path}: {problem}; rerun the {stage} stage (or delete the file)")


def check_record(record: Any, path: Path, required: dict[str, str], stage: str, what: str = "") -> dict[str, Any]:
    """`record` is a mapping holding each key of `required` with a value of its kind (KINDS)."""
    where = f"{what}: " if what else ""
    if not isinstance(record, dict):
        raise malformed(path, f"{where}a JSON {type(record).__name__}; expected a mapping with the keys "
                        f"{', '.join(required)}", stage)
    for key, kind in required.items():
        test, name = KINDS[kind]
        if key not in record:
            raise malformed(path, f"{where}lacks the key {key!r}; expected {name}", stage)
        if not test(record[key]):
            raise malformed(path, f"{where}{key} is {record[key]!r:.60}; expected {name}", stage)
    return record


# ------------------------------------------------------------------------------------------------ JSON files

def read_metrics(path: Path, point_id: str | None = None) -> dict[str, Any]:
    """A finished run's metrics.json (of grid point `point_id` when given)."""
    record = check_record(read_json(path), path, {"point_id": "string", "axes": "mapping", "status": "string",
                                                  "run_digest": "string", "epochs_run": "number"}, "train")
    if record["status"] not in RUN_STATUSES:
        raise malformed(path, f"status is {record['status']!r:.60}; expected one of {', '.join(RUN_STATUSES)}", "train")
    if point_id is not None and record["point_id"] != point_id:
        raise malformed(path, f"belongs to grid point {record['point_id']!r:.80}; expected {point_id!r}", "train")
    if record["status"] == "completed":
        check_record(record, path, dict.fromkeys(SPLIT_METRICS, "number"), "train")
    return record


def read_diagnostics(path: Path) -> dict[str, Any]:
    """A run's diagnostics.json; {} when there is none (runs made before it existed)."""
    if not path.exists():
        return {}
    record = check_record(read_json(path), path, {}, "train")
    entries = {"init_activation_stats": {"layer": "string", "mean": "number", "std": "number"},
               "dead_units": {"layer": "string", "dead_fraction": "number", "units": "number"}}
    for key, required in entries.items():
        rows = record.get(key, [])
        if not isinstance(rows, list):
            raise malformed(path, f"{key} is {rows!r:.60}; expected a list", "train")
        for index, row in enumerate(rows):
            check_record(row, path, required, "train", f"{key}[{index}]")
    return record


def read_manifest(path: Path) -> dict[str, Any]:
    """The prepare stage's manifest.json: the data digest, the classes and their counts per split."""
    record = check_record(read_json(path), path, {"source": "string", "digest": "string", "class_names": "list",
                                                  "class_counts": "mapping"}, "prepare")
    classes = record["class_names"]
    if not classes or not all(isinstance(name, str) for name in classes):
        raise malformed(path, "class_names is not a non-empty list of strings", "prepare")
    for split, counts in record["class_counts"].items():
        if not isinstance(counts, list) or len(counts) != len(classes) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise malformed(path, f"class_counts.{split} is not a list of {len(classes)} counts (one per class)",
                            "prepare")
    return record


def read_ensemble(path: Path) -> dict[str, Any]:
    """A study's ensemble table (artifacts/ensembles/<study>.json)."""
    record = check_record(read_json(path), path, {"metric": "string", "rows": "list"}, "ensemble")
    for index, row in enumerate(record["rows"]):
        check_record(row, path, {"kind": "string", "label": "string", "members": "list", "size": "number",
                                 "val_loss": "number", "val_error": "number", "test_loss": "number",
                                 "test_error": "number", "best_single": "string"}, "ensemble", f"rows[{index}]")
    if record["rows"]:
        check_record(record, path, {"best_single": "mapping"}, "ensemble")
    return record


# ------------------------------------------------------------------------------------------------ CSV files

def read_csv_rows(path: Path, columns: tuple[str, ...], stage: str, integer: tuple[str, ...] = (),
                  numeric: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The rows of a CSV a stage wrote: a header holding `columns`, at least one row, the same number of fields
    in every row, every value of the `numeric` columns (None: of every column) a number, the `integer` ones
    ints, the others kept as text; MalformedFileError naming the file, the line and the column otherwise."""
    text = read_text_bounded(path, MAX_CSV_BYTES, f"{stage} stage's CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise malformed(path, f"empty; expected a CSV header with the columns {', '.join(columns)}", stage)
        missing = [name for name in columns if name not in header]
        if missing:
            raise malformed(path, f"lacks the column(s) {', '.join(missing)}; expected {', '.join(columns)}", stage)
        numbers = set(header if numeric is None else (*numeric, *integer))
        rows = [_typed_row(path, header, cells, reader.line_num, stage, integer, numbers) for cells in reader]
    except csv.Error as error:
        raise malformed(path, f"not a CSV table ({error})", stage) from None
    if not rows:
        raise malformed(path, "has a header but no rows; expected one row per epoch or batch", stage)
    return rows


def _typed_row(path: Path, header: list[str], cells: list[str], line: int, stage: str,
               integer: tuple[str, ...], numbers: set[str]) -> dict[str, Any]:
    if len(cells) != len(header):
        raise malformed(path, f"line {line} has {len(cells)} fields; expected {len(header)}", stage)
    row: dict[str, Any] = {}
    for name, cell in zip(header, cells):
        if name not in numbers:
            row[name] = cell
            continue
        try:
            row[name] = int(cell) if name in integer else float(cell)
        except ValueError:
            expected = "an integer" if name in integer else "a number"
            raise malformed(path, f"line {line}, column {name}: {cell!r:.40}; expected {expected}", stage) from None
    return row


def read_history(path: Path) -> list[dict[str, Any]]:
    """A run's history.csv: one row per epoch (epoch an int, the rest floats)."""
    return read_csv_rows(path, HISTORY_COLUMNS, "train", integer=("epoch",))


def read_batch_loss(path: Path) -> list[dict[str, Any]]:
    """A run's batch_loss.csv: one row per training batch."""
    return read_csv_rows(path, BATCH_LOSS_COLUMNS, "train", integer=("epoch", "batch"))


# ------------------------------------------------------------------------------------------------ predictions

def read_predictions(path: Path) -> dict[str, Any]:
    """A completed run's predictions.npz: val_probs (N, C) floats with val_labels (N,) integers in [0, C); the
    same for test (both or neither); snapshot_val_probs (S, N, C) and snapshot_test_probs (S, M, C) if kept."""
    import numpy as np

    from trickbench.data.prepared import read_npz

    arrays = read_npz(path, ("val_probs", "val_labels"), "train")
    classes = _check_split(path, arrays, "val", None)
    if ("test_probs" in arrays) != ("test_labels" in arrays):
        raise malformed(path, "holds only one of test_probs and test_labels; expected both or neither", "train")
    if "test_probs" in arrays:
        _check_split(path, arrays, "test", classes)
    for split in ("val", "test"):
        name = f"snapshot_{split}_probs"
        if name in arrays:
            size = arrays[f"{split}_probs"].shape[0] if f"{split}_probs" in arrays else None
            array = arrays[name]
            if array.ndim != 3 or array.shape[1:] != (size, classes) or not np.issubdtype(array.dtype, np.floating):
                raise malformed(path, f"{name} is {array.dtype} of shape {array.shape}; expected floats of shape "
                                f"(snapshots, {size}, {classes})", "train")
    return arrays


def _check_split(path: Path, arrays: dict[str, Any], split: str, classes: int | None) -> int:
    import numpy as np

    probs, labels = arrays[f"{split}_probs"], arrays[f"{split}_labels"]
    if probs.ndim != 2 or probs.shape[1] < 1 or (classes is not None and probs.shape[1] != classes) \
            or not np.issubdtype(probs.dtype, np.floating):
        expected = f"(images, {classes})" if classes is not None else "(images, classes)"
        raise malformed(path, f"{split}_probs is {probs.dtype} of shape {probs.shape}; expected floats of shape "
                        f"{expected}", "train")
    if labels.shape != (probs.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise malformed(path, f"{split}_labels is {labels.dtype} of shape {labels.shape}; expected integers of "
                        f"shape ({probs.shape[0]},)", "train")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise malformed(path, f"{split}_labels has labels outside 0..{probs.shape[1] - 1}", "train")
    if probs.size and not np.isfinite(probs).all():
        raise malformed(path, f"{split}_probs holds NaN or infinite values; expected probabilities", "train")
    return int(probs.shape[1])
