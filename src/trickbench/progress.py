"""Progress of a train job, for the researcher watching it and for `trickbench status`.

Each epoch a job prints one fixed-width line to stdout (a header once, then a row per epoch, as airbench
does), flushed so that `tail -f` on the job's log follows it; on a terminal a tqdm bar over the epochs runs
on stderr. It also keeps a small record in the run directory (`progress.json`: state, last epoch, seconds,
process), rewritten atomically each epoch, which is what `trickbench status` reads: cheap JSON, where the
checkpoint would need torch to open.

States of the record: `running` (a job owns the point; pid and host say which), `failed` (the job ended
by an exception or a signal, the error says which), `finished` (metrics.json is written).
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from trickbench.io import read_json, write_json

PROGRESS_FILE = "progress.json"

# (history key, header, width, format): the columns of the per-epoch line
COLUMNS: list[tuple[str, str, int, str]] = [
    ("epoch", "epoch", 9, "{}"),
    ("train_loss", "train loss", 10, "{:.4f}"),
    ("train_error", "train err", 9, "{:.4f}"),
    ("val_loss", "val loss", 9, "{:.4f}"),
    ("val_error", "val err", 8, "{:.4f}"),
    ("lr", "lr", 9, "{:.3e}"),
    ("seconds", "seconds", 8, "{:.2f}"),
    ("images_per_second", "images/s", 9, "{:.0f}"),
]


def progress_path(run_dir: Path) -> Path:
    return Path(run_dir) / PROGRESS_FILE


def header_line() -> str:
    return "| " + " | ".join(f"{title:>{width}}" for _key, title, width, _fmt in COLUMNS) + " |"


def rule_line() -> str:
    return "|" + "|".join("-" * (width + 2) for _key, _title, width, _fmt in COLUMNS) + "|"


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One row of the table; `row` is a history row plus `images` (training images seen that epoch)."""
    values = {**row, "epoch": f"{row['epoch']}/{epochs}",
              "images_per_second": row["images"] / row["seconds"] if row.get("seconds") else float("nan")}
    cells = []
    for key, _title, width, fmt in COLUMNS:
        value = values[key]
        cells.append(f"{fmt.format(value) if isinstance(value, (int, float)) else value:>{width}}")
    return "| " + " | ".join(cells) + " |"


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """The run directory's record; None if there is none or it cannot be read (a job writes it atomically,
    so unreadable means someone else's file: treat the point as having no job)."""
    path = progress_path(run_dir)
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the record's job still runs: True/False on its own host, None on another (cannot tell)."""
    if record.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (KeyError, TypeError, ValueError, OverflowError):
        return False
    return True


class TrainProgress:
    """What the stage passes to the loop as its per-epoch hook (`train(..., on_epoch=progress)`)."""

    def __init__(self, run_dir: Path, label: str, epochs: int, run_digest: str, *,
                 history: list[dict[str, Any]] | None = None, out: TextIO | None = None,
                 bar: bool | None = None, timeline: dict[str, float] | None = None) -> None:
        self.path = progress_path(run_dir)
        self.label, self.epochs, self.run_digest = label, epochs, run_digest
        self.history = list(history or [])  # a resumed job: the checkpoint's epochs
        self.out = out if out is not None else sys.stdout
        self.started = time.time()
        # when the job's fixed costs ended (data loaded, model built, first step), seconds since the epoch
        self.timeline: dict[str, float] = dict(timeline or {})
        show_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = None
        if show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, initial=len(self.history), desc=label, unit="epoch", file=sys.stderr,
                            leave=False, dynamic_ncols=True, mininterval=0)  # one update per epoch: never throttle

    # -- the record on disk
    def _write(self, state: str, **extra: Any) -> None:
        done = self.history[-1]["epoch"] if self.history else 0
        write_json(self.path, {
            "state": state, "epoch": int(done), "epochs": self.epochs, "run_digest": self.run_digest,
            "seconds": float(sum(row["seconds"] for row in self.history)),
            "pid": os.getpid(), "host": socket.gethostname(), "started": self.started, "updated": time.time(),
            "timeline": self.timeline, **extra})

    def mark(self, moment: str) -> None:
        """Record when `moment` of the job's start-up ended (seconds since the epoch, like `started`)."""
        self.timeline[moment] = time.time()

    # -- the console
    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out)
        self.out.flush()

    def start(self) -> None:
        self._write("running")
        resumed = f", resumed after epoch {self.history[-1]['epoch']}" if self.history else ""
        self._print(f"train {self.label}: {self.epochs} epochs{resumed}")
        self._print(header_line())
        self._print(rule_line())

    def first_step(self, loss: float) -> None:
        """The loop's first-step hook: the job's fixed cost ends here (benchmarks/pipeline_overhead.py)."""
        self.mark("first_step")
        self._write("running")

    def __call__(self, row: dict[str, Any]) -> None:
        """The loop's per-epoch hook: `row` is the epoch's history row plus `images`."""
        self.history.append({key: value for key, value in row.items() if key != "images"})
        self._print(epoch_line(row, self.epochs))  # first: the log never lags the record status reads
        self._write("running")
        if self.bar is not None:
            self.bar.update(1)

    def failed(self, error: BaseException) -> None:
        if isinstance(error, SystemExit):  # cli._exit_on_sigterm: SIGTERM (scancel, Snakemake) -> 128 + 15
            reason = f"stopped (exit {error.code})"
        elif isinstance(error, KeyboardInterrupt):
            reason = "interrupted"
        else:
            reason = f"{type(error).__name__}: {error}"
        self._write("failed", error=reason)
        self.close()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.close()

    def finished(self, status: str) -> None:
        self._write("finished", status=status)
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
