"""Stage status: where every grid point of a params file stands, from the files on disk alone.

A point is
- `done`: its metrics.json belongs to the point's current configuration and data (the run digest the train
  stage writes) and the run completed;
- `failed`: its metrics.json says the run diverged, or its progress record (trickbench.progress) says the job
  ended by an error or a signal, or the record says running but its process is gone from this host (killed);
- `running`: the progress record of a live job, with the last epoch it finished;
- `corrupt`: a file of the run that a later stage reads (metrics.json, history.csv) is there but does not hold
  what the train stage writes (trickbench.run_files): shown with the file, never as pending;
- `pending`: nothing of the current configuration on disk (a stale metrics.json counts as nothing).

The time left is the epochs still to train (the rest of each running point, every epoch of each pending one)
times the seconds per epoch measured so far: of the study's finished runs (history.csv), else of its running
or failed jobs, else of any other study's. Failed and corrupt points are not counted: they train only when
rerun (a corrupt one once its folder is deleted).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trickbench.grid import GridPoint, study_points
from trickbench.errors import MissingInputError, UnreadableFileError
from trickbench.paths import Layout
from trickbench.progress import process_alive, read_progress
from trickbench.run_files import read_history, read_manifest, read_metrics

STATES = ("done", "running", "failed", "corrupt", "pending")


@dataclass
class PointStatus:
    point: GridPoint
    state: str  # one of STATES
    epoch: int  # epochs finished (the last one written); 0 if none
    epochs: int  # the configured epochs
    seconds: float  # training seconds spent so far (finished epochs)
    detail: str = ""  # why failed; the host of a job on another machine; the corrupt file


@dataclass
class StudyStatus:
    study: str
    points: list[PointStatus]
    seconds_per_epoch: float | None = None  # None: no epoch measured anywhere yet
    measured_from: str = ""
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {state: sum(p.state == state for p in self.points) for state in STATES}

    @property
    def epochs_left(self) -> int:
        return sum(max(0, p.epochs - p.epoch) for p in self.points if p.state in ("running", "pending"))

    @property
    def seconds_left(self) -> float | None:
        """Training seconds left, one job at a time (None: nothing measured yet)."""
        if self.epochs_left == 0:
            return 0.0
        return None if self.seconds_per_epoch is None else self.epochs_left * self.seconds_per_epoch


def history_seconds(path: Path) -> list[float]:
    """The seconds of every epoch of a finished run's history.csv (empty if missing or malformed: the point
    is then shown as corrupt)."""
    try:
        return [row["seconds"] for row in read_history(path)]
    except (MissingInputError, UnreadableFileError):
        return []


def _corrupt(point: GridPoint, path: Path, epochs: int, error: Exception) -> PointStatus:
    reason = str(error).removeprefix(f"{path}: ").split("; rerun")[0]
    return PointStatus(point, "corrupt", 0, epochs, 0.0, f"{path.name}: {reason}")


def point_status(layout: Layout, point: GridPoint, expected_digests: set[str] | None) -> PointStatus:
    """Where one point stands. `expected_digests`: its run digests with the prepared data, one per device type
    (the job may run on another machine than this command); None when the data are not prepared yet: then
    nothing on disk can be checked against the configuration and it is pending."""
    files = layout.run_files(point.study, point.point_id)
    epochs = int(point.config["epochs"])
    try:
        metrics = read_metrics(files.metrics, point.point_id) if files.metrics.exists() else None
    except UnreadableFileError as error:  # malformed, garbled, or not a regular file
        return _corrupt(point, files.metrics, epochs, error)
    if metrics is not None and expected_digests is not None and metrics["run_digest"] in expected_digests:
        ran = int(metrics["epochs_run"])
        try:
            seconds = sum(row["seconds"] for row in read_history(files.history))
        except (MissingInputError, UnreadableFileError) as error:
            return _corrupt(point, files.history, epochs, error)
        if metrics["status"] == "completed" and not files.predictions.is_file():  # contents: read by ensemble
            return _corrupt(point, files.predictions, epochs, MissingInputError("missing"))
        if metrics.get("status") == "diverged":
            return PointStatus(point, "failed", ran, epochs, seconds, f"diverged in epoch {ran}")
        return PointStatus(point, "done", ran, epochs, seconds)
    record = read_progress(files.folder)
    if record is None or expected_digests is None or record.get("run_digest") not in expected_digests:
        return PointStatus(point, "pending", 0, epochs, 0.0)
    epoch, seconds = int(record.get("epoch", 0)), float(record.get("seconds", 0.0))
    state = record.get("state")
    if state == "failed":
        return PointStatus(point, "failed", epoch, epochs, seconds, str(record.get("error", "failed")))
    if state == "running":
        alive = process_alive(record)
        if alive is False:
            return PointStatus(point, "failed", epoch, epochs, seconds,
                               f"job gone (pid {record.get('pid')} no longer runs: killed?)")
        return PointStatus(point, "running", epoch, epochs, seconds,
                           "" if alive else f"on {record.get('host')}")
    # "finished" without a current metrics.json: its outputs were removed for a rerun that has not started
    return PointStatus(point, "pending", 0, epochs, 0.0)


def _rate(points: list[PointStatus], layout: Layout) -> tuple[float | None, str]:
    """Seconds per epoch: of the finished runs if any, else of the jobs that trained some epochs."""
    finished = [s for p in points if p.state == "done"
                for s in history_seconds(layout.run_files(p.point.study, p.point.point_id).history)]
    if finished:
        return sum(finished) / len(finished), "finished runs"
    started = [p for p in points if p.state in ("running", "failed") and p.epoch > 0]
    epochs = sum(p.epoch for p in started)
    if epochs:
        return sum(p.seconds for p in started) / epochs, "running jobs"
    return None, ""


DEVICE_TYPES = ("cpu", "cuda")


def status(params: dict[str, Any], layout: Layout) -> list[StudyStatus]:
    """Every study of the params file, in order."""
    from trickbench.stages.train import run_digest

    # a malformed manifest is bad input (one line naming it); a missing one: the data are not prepared yet
    data_digest = read_manifest(layout.manifest)["digest"] if layout.manifest.exists() else None
    studies = []
    for study in params["studies"]:
        points = [point_status(layout, point, {run_digest(point, data_digest, device) for device in DEVICE_TYPES}
                               if data_digest else None)
                  for point in study_points(params, study)]
        rate, source = _rate(points, layout)
        studies.append(StudyStatus(study, points, rate, source))
    measured = [s for s in studies if s.seconds_per_epoch is not None]
    for study in studies:  # a study not started yet: the rate of the others (same data, same machine)
        if study.seconds_per_epoch is None and measured:
            study.seconds_per_epoch = measured[0].seconds_per_epoch
            study.measured_from = f"study {measured[0].study}"
    return studies


def duration_text(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def status_text(studies: list[StudyStatus]) -> str:
    """What `trickbench status` prints: per study a count line and the time left, then one line per running
    or failed point (done and pending points are only counted)."""
    lines = []
    for study in studies:
        counts = ", ".join(f"{study.counts[state]} {state}" for state in STATES
                           if state != "corrupt" or study.counts[state])  # shown only when there is one
        left = study.seconds_left
        running = study.counts["running"]
        corrupt = study.counts["corrupt"]
        if left is None:
            eta = "time left: unknown (no epoch measured yet)"
        elif left == 0 and corrupt:
            eta = f"nothing running or pending; {corrupt} corrupt point{'s' if corrupt > 1 else ''} to train again"
        elif left == 0:
            eta = "nothing left to train"
        else:
            eta = f"time left: {duration_text(left)} of training at {study.seconds_per_epoch:.2f} s/epoch " \
                  f"({study.measured_from})"
            if running > 1:
                eta += f", about {duration_text(left / running)} with {running} jobs side by side"
        plural = "s" if len(study.points) != 1 else ""
        lines.append(f"{study.study}: {len(study.points)} grid point{plural}: {counts}; {eta}")
        width = max((len(p.point.point_id) for p in study.points), default=0)
        for point in study.points:
            if point.state == "running":
                where = f" ({point.detail})" if point.detail else ""
                lines.append(f"  running  {point.point.point_id:<{width}}  epoch {point.epoch}/{point.epochs}{where}")
            elif point.state == "failed":
                lines.append(f"  failed   {point.point.point_id:<{width}}  epoch {point.epoch}/{point.epochs}: "
                             f"{point.detail}")
            elif point.state == "corrupt":
                file, reason = point.detail.split(": ", 1)
                lines.append(f"  corrupt  {point.point.point_id:<{width}}  corrupt ({file}): {reason}; delete the "
                             "point's folder to train it again")
    return "\n".join(lines)
