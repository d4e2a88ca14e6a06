"""Stage train: one grid point -> metrics, curves, predictions, model, diagnostics, one MLflow run."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trickbench import provenance, tracking
from trickbench.errors import BadInput, MissingInputError, ParamsError
from trickbench.grid import GridPoint, find_point, study_points
from trickbench.io import atomic_path, digest_json, write_csv, write_json
from trickbench.paths import Layout, RunFiles
from trickbench.progress import TrainProgress
from trickbench.run_files import read_manifest, read_metrics

if TYPE_CHECKING:  # the loop imports torch: only once a point trains
    from trickbench.data.prepared import Prepared
    from trickbench.train.checkpoint import Cadence
    from trickbench.train.loop import Trainer, TrainResult

DEVICE_TYPES = ("cpu", "cuda")


def run_digest(point: GridPoint, data_digest: str, device_type: str) -> str:
    """What a checkpoint and a finished run belong to: the full configuration, the data and the device type
    the configuration's `device` resolved to (`auto` is cpu on one machine and cuda on another; their
    results differ and their RNG states cannot stand in for each other)."""
    return digest_json({"config": point.config, "data": data_digest, "device_type": device_type})


def _read_input(path: Path, read: Any) -> Any:
    """A prepared input of the train stage; the readers name an unreadable one themselves."""
    if not Path(path).exists():
        raise MissingInputError(f"{path}: missing; run the prepare and stats stages first")
    return read(path)


def build_point(point: GridPoint, prepared: Prepared, stats: dict[str, Any]) -> Trainer:
    """The loop's trainer for this point; a configuration that cannot train on this data fails here, with
    its key named, before anything is written or logged."""
    from trickbench.train.loop import build

    config = point.config
    height, width = prepared.image_shape[:2]
    if config.get("input_size") and config["input_size"] > min(height, width):
        raise ParamsError(f"{point.origin_of('input_size')}: {config['input_size']} is larger than the prepared "
                          f"images ({height}x{width}) (grid point {point.key})")
    try:
        return build(config, prepared, stats)
    except ParamsError as error:  # a setting this data or model cannot take; any other error is a bug
        raise ParamsError(f"grid point {point.key}: {error}") from None


def checkpoint_cadence(params: dict[str, Any]) -> Cadence:
    """When train jobs checkpoint (params `resources`: not part of a run's digest, as it does not change
    what a run computes); an unset key keeps Cadence's default (every epoch, no time limit)."""
    from trickbench.train.checkpoint import Cadence

    resources = params.get("resources", {})
    keys = {"epochs": "checkpoint_every_epochs", "seconds": "checkpoint_every_seconds"}
    return Cadence(**{field: resources[key] for field, key in keys.items() if key in resources})


def log_missing_epochs(run: Any, history: list[dict[str, Any]]) -> None:
    """A resumed run: log the checkpoint's epochs that the MLflow run lacks (the job died between saving a
    checkpoint and logging that epoch), so its metric history holds every epoch exactly once."""
    if getattr(run, "run_id", None) is None or not history:
        return
    logged = {m.step for m in tracking.retry(lambda: tracking.metric_history(run.uri, run.run_id, "val_loss"))}
    for row in history:
        if row["epoch"] not in logged:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def train_point(params: dict[str, Any], layout: Layout, study: str, point_id: str) -> dict[str, Any]:
    from trickbench.data.prepared import load_prepared
    from trickbench.data.stats import load_stats

    point = find_point(params, study, point_id)
    tracking.check_store(params)  # before anything is written or trained
    manifest = _read_input(layout.manifest, read_manifest)
    prepared = _read_input(layout.prepared, load_prepared)
    # on the CPU: the loop moves them to the device it resolves `train.device` to
    stats = _read_input(layout.stats_json, lambda path: load_stats(path, layout.stats_arrays))
    timeline = {"data_loaded": time.time()}  # the job's fixed costs, in its progress record
    trainer = build_point(point, prepared, stats)
    timeline["built"] = time.time()
    device_type = trainer.device.type
    digests = {device: run_digest(point, manifest["digest"], device) for device in DEVICE_TYPES}
    digest = digests[device_type]
    files = layout.run_files(study, point_id)
    run_dir = files.folder
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".*.tmp"):  # left by a job killed inside an atomic write (one job per point)
        stale.unlink(missing_ok=True)
    checkpoint_path = layout.checkpoint(study, point_id)
    state = trainer.resume(checkpoint_path, digests)  # another device type's checkpoint: refused, kept

    machine = provenance.machine(trainer.device)
    tags = {
        **provenance.tags(machine),
        "trickbench.study": study, "trickbench.grid_point": point_id,
        "trickbench.params_digest": point.config_digest, "trickbench.data_digest": manifest["digest"],
        "trickbench.run_digest": digest, "trickbench.device_type": device_type,
        **{f"axis.{k}": str(v) for k, v in point.axes.items()},
    }
    run = tracking.open_run(params, tracking.experiment_name(params, study), point_id, tags,
                            {**point.config, "data.source": params["data"]["source"]},
                            run_id=state.mlflow_run_id, background=True,
                            identity=digest_json([digest, str(run_dir.resolve())]))
    if state.epoch:  # resumed
        log_missing_epochs(run, state.history)
    else:
        run.log_dataset(params["data"]["source"], manifest["digest"], str(layout.prepared),
                        {"features": prepared.images["train"], "targets": prepared.labels["train"]}, "training")
    progress = TrainProgress(run_dir, point.key, point.config["epochs"], digest, history=state.history or None,
                            timeline=timeline)
    progress.start()
    try:
        result = trainer.fit(state, checkpoint_path, run, on_epoch=progress, on_first_step=progress.first_step,
                             cadence=checkpoint_cadence(params))
    except BaseException as error:
        record_end(progress, error)
        end_quietly(run, "FAILED")
        if tracking.is_store_failure(error):
            raise tracking.TrackingError(f"grid point {study}/{point_id}: the tracking store stopped answering "
                                         f"({type(error).__name__}); the checkpoint {checkpoint_path} is kept: "
                                         "rerun to resume and log what MLflow missed") from error
        raise

    write_run_outputs(files, result)
    metrics = {
        "study": study, "point_id": point_id, "axes": point.axes, "config": point.config,
        "status": result.status.value, "run_digest": digest, "data_digest": manifest["digest"],
        "device_type": device_type, "mlflow_run_id": run.run_id, "resumed_from_epoch": result.resumed_from_epoch,
        **result.metrics, "provenance": machine,
    }
    try:
        log_finished_run(run, result, metrics, files, title=f"{study}: {point_id}")
    except BaseException as error:
        record_end(progress, error)
        if tracking.is_store_failure(error):
            raise tracking.TrackingError(f"grid point {study}/{point_id}: trained, but the tracking store stopped "
                                         f"answering ({type(error).__name__}); the checkpoint {checkpoint_path} is "
                                         "kept: rerun to log the run without training again") from error
        raise
    write_json(files.metrics, metrics)  # last: its presence marks a complete, logged run
    progress.finished(result.status.value)
    # the run is complete: a later rerun (forced, or code changed) must train afresh, not finish the old run
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def write_run_outputs(files: RunFiles, result: TrainResult) -> None:
    """The trained run's curves, per-batch losses, predictions, weights and diagnostics (metrics.json comes
    last, once the run is logged)."""
    import torch

    from trickbench.run_files import BATCH_LOSS_COLUMNS, HISTORY_COLUMNS

    write_csv(files.history, result.history, list(HISTORY_COLUMNS))
    write_csv(files.batch_loss, result.batch_losses, list(BATCH_LOSS_COLUMNS))
    with atomic_path(files.predictions) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **result.predictions)
    with atomic_path(files.model) as tmp:
        # to a file object: saved to a path, torch names the archive's folder after the (random) temporary
        # name, so the same weights gave other bytes each time (and another md5 in dvc.lock)
        with open(tmp, "wb") as handle:
            torch.save(result.model_state, handle)
    write_json(files.diagnostics, result.diagnostics)


def record_end(progress: TrainProgress, error: BaseException) -> None:
    """A job that ends by an error or a signal says so in its progress record (`trickbench status`: failed);
    bad input (the CLI names it in one line) leaves nothing behind."""
    if isinstance(error, BadInput):
        progress.discard()
    else:
        progress.failed(error)


def log_finished_run(run: Any, result: Any, metrics: dict[str, Any], files: RunFiles, title: str) -> None:
    """Everything MLflow gets once a run is trained; metrics.json is logged from a copy, as the real file is
    written only after the run is logged and ended."""
    import tempfile

    from trickbench.train.checkpoint import Status

    run.log_metrics({f"final_{k}": v for k, v in result.metrics.items()}, step=len(result.history))
    run.set_tags({"trickbench.status": result.status.value})
    from trickbench.report.figures import learning_curve_figure  # seaborn: seconds, so only once trained

    figure = learning_curve_figure(result.history, title=title)
    run.log_figure(figure, "learning_curves.png")
    for path in (files.history, files.batch_loss, files.diagnostics):
        run.log_artifact(path)
    with tempfile.TemporaryDirectory(prefix=".metrics-", dir=files.folder) as folder:
        logged = Path(folder) / files.metrics.name  # MLflow names the artifact after the file
        write_json(logged, metrics)
        run.log_artifact(logged)
        run.end("FINISHED" if result.status is Status.COMPLETED else "FAILED")


def end_quietly(run: Any, status: str) -> None:
    """End a run that failed; a store that is down too must not hide the first error."""
    try:
        run.end(status)
    except Exception as error:  # the original error is the one to report
        print(f"warning: could not mark the MLflow run {status}: {type(error).__name__}: {error}", flush=True)


def train_study(params: dict[str, Any], layout: Layout, study: str) -> list[dict[str, Any]]:
    """Every grid point of a study in one process (DVC's grouping); finished points are kept.

    Each point that lets trickbench choose its GPU takes a slot while it trains, as a `trickbench train` job
    does. The first slot fixes CUDA_VISIBLE_DEVICES before torch initialises CUDA; later points find it set
    and take their slots on that same device, the only one this process can still see."""
    from trickbench.slots import slot_held

    manifest = read_manifest(layout.manifest)
    points = study_points(params, study)
    # every finished run read first: a malformed metrics.json is named before anything trains or is removed
    finished = {point.point_id: read_metrics(path, point.point_id) for point in points
                if (path := layout.run_files(study, point.point_id).metrics).exists()}
    results = []
    for point in points:
        done = finished.get(point.point_id)
        if done is not None:
            # the device it finished on, as a Snakemake job keeps its metrics.json; resolving `auto`
            # here would initialise CUDA before the slot below sets CUDA_VISIBLE_DEVICES
            if done["run_digest"] == run_digest(point, manifest["digest"], done.get("device_type", "cpu")):
                results.append(done)
                continue
            layout.run_files(study, point.point_id).metrics.unlink()  # a stale run: trained again
        with slot_held(params, point.config["device"]):
            results.append(train_point(params, layout, study, point.point_id))
    return results
