"""Stage train: one grid point -> metrics, curves, predictions, model, diagnostics, one MLflow run."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from trickbench import provenance, tracking
from trickbench.grid import GridPoint, find_point, study_points
from trickbench.io import atomic_path, digest_json, read_json, write_json
from trickbench.paths import Layout, RunFiles
from trickbench.progress import TrainProgress


DEVICE_TYPES = ("cpu", "cuda")


def run_digest(point: GridPoint, data_digest: str, device_type: str) -> str:
    """What a checkpoint and a finished run belong to: the full configuration, the data and the device type
    the configuration's `device` resolved to (`auto` is cpu on one machine and cuda on another; their
    results differ and their RNG states cannot stand in for each other)."""
    return digest_json({"config": point.config, "data": data_digest, "device_type": device_type})


def point_device_type(point: GridPoint) -> str:
    from trickbench.train.loop import resolve_device

    return resolve_device(point.config["device"]).type


def refuse_other_device_checkpoint(checkpoint_path: Path, point: GridPoint, data_digest: str, device_type: str) -> None:
    """A checkpoint of this very configuration written on another device type is neither loaded (its RNG
    states exist only there) nor overwritten (its epochs would be lost): one line naming both devices."""
    from trickbench.data.sources import DataError
    from trickbench.train.loop import load_checkpoint

    for other in DEVICE_TYPES:
        if other != device_type and load_checkpoint(checkpoint_path, run_digest(point, data_digest, other)) is not None:
            raise DataError(f"{checkpoint_path}: checkpoint written on {other}, this job runs on {device_type}; resume it "
                            f"on {other} (train.device: {other}) or delete the file to retrain from scratch")


def write_csv(path: Path, rows: list[dict[str, Any]] | list[tuple], header: list[str]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([row[key] for key in header] if isinstance(row, dict) else row)


def _read_input(path: Path, read: Any) -> Any:
    """A prepared input of the train stage; a missing or unreadable one is the user's to fix, named."""
    from trickbench.data.sources import DataError

    if not Path(path).exists():
        raise DataError(f"{path}: missing; run the prepare and stats stages first")
    try:
        return read(path)
    except Exception as error:  # truncated npz (BadZipFile), garbage JSON, missing arrays ...
        raise DataError(f"{path}: unreadable ({type(error).__name__}: {error}); rerun the prepare and stats "
                        "stages") from None


def preflight(point: GridPoint, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """Build the point's model, optimizer and schedule once on the CPU, so that a configuration that cannot
    train on this data fails with its key named before anything is written or logged."""
    from trickbench.params import ParamsError
    from trickbench.train.loop import build_network, parameter_groups
    from trickbench.train.optim import OPTIMIZERS, SCHEDULES
    from trickbench.train.regularizers import regularization

    config = point.config
    height, width = image_shape[:2]
    if config.get("input_size") and config["input_size"] > min(height, width):
        raise ParamsError(f"{point.origin_of('input_size')}: {config['input_size']} is larger than the prepared "
                          f"images ({height}x{width}) (grid point {point.key})")
    try:
        reg = regularization(config)
        model = build_network(config, reg, image_shape, num_classes)
        SCHEDULES.get(config["schedule"])(OPTIMIZERS.get(config["optimizer"])(
            parameter_groups(model, reg, config), config), config)
    except ValueError as error:
        raise ParamsError(f"grid point {point.key}: {error}") from None


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
    import torch

    from trickbench.data.prepared import load_prepared
    from trickbench.data.stats import load_stats
    from trickbench.train.loop import finetune_source, load_checkpoint, resolve_device, train

    point = find_point(params, study, point_id)
    tracking.check_store(params)  # before anything is written or trained
    if point.config["finetune_from"]:  # a bad path is the user's input error: fail before opening a run
        finetune_source(point.config["finetune_from"])
    manifest = _read_input(layout.manifest, read_json)
    prepared = _read_input(layout.prepared, load_prepared)
    stats = _read_input(layout.stats_json, lambda path: load_stats(
        path, layout.stats_arrays, device=resolve_device(point.config["device"])))
    preflight(point, prepared.image_shape, prepared.num_classes)
    device_type = point_device_type(point)
    digest = run_digest(point, manifest["digest"], device_type)
    files = layout.run_files(study, point_id)
    run_dir = files.folder
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".*.tmp"):  # left by a job killed inside an atomic write (one job per point)
        stale.unlink(missing_ok=True)
    checkpoint_path = layout.checkpoint(study, point_id)
    previous = load_checkpoint(checkpoint_path, digest)
    if previous is None and checkpoint_path.exists():
        refuse_other_device_checkpoint(checkpoint_path, point, manifest["digest"], device_type)

    machine = provenance.machine(resolve_device(point.config["device"]))
    tags = {
        **provenance.tags(machine),
        "trickbench.study": study, "trickbench.grid_point": point_id,
        "trickbench.params_digest": point.config_digest, "trickbench.data_digest": manifest["digest"],
        "trickbench.run_digest": digest, "trickbench.device_type": device_type,
        **{f"axis.{k}": str(v) for k, v in point.axes.items()},
    }
    run = tracking.open_run(params, tracking.experiment_name(params, study), point_id, tags,
                            {**point.config, "data.source": params["data"]["source"]},
                            run_id=previous.get("mlflow_run_id") if previous else None, background=True,
                            identity=digest_json([digest, str(run_dir.resolve())]))
    if previous is not None:
        log_missing_epochs(run, previous["history"])
    else:
        run.log_dataset(params["data"]["source"], manifest["digest"], str(layout.prepared),
                        {"features": prepared.images["train"], "targets": prepared.labels["train"]}, "training")
    progress = TrainProgress(run_dir, point.key, point.config["epochs"], digest,
                             history=previous["history"] if previous else None)
    progress.start()
    try:
        result = train(point.config, prepared, stats, config_digest=digest, checkpoint_path=checkpoint_path,
                       tracker=run, on_epoch=progress)
    except BaseException as error:
        record_end(progress, error)
        end_quietly(run, "FAILED")
        if tracking.is_store_failure(error):
            raise tracking.TrackingError(f"grid point {study}/{point_id}: the tracking store stopped answering "
                                         f"({type(error).__name__}); the checkpoint {checkpoint_path} is kept: "
                                         "rerun to resume and log what MLflow missed") from error
        raise

    write_csv(files.history, result.history,
              ["epoch", "train_loss", "train_error", "val_loss", "val_error", "lr", "seconds"])
    write_csv(files.batch_loss, result.batch_losses, ["epoch", "batch", "loss"])
    with atomic_path(files.predictions) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **result.predictions)
    with atomic_path(files.model) as tmp:
        # to a file object: saved to a path, torch names the archive's folder after the (random) temporary
        # name, so the same weights gave other bytes each time (and another md5 in dvc.lock)
        with open(tmp, "wb") as handle:
            torch.save(result.model_state, handle)
    write_json(files.diagnostics, result.diagnostics)
    metrics = {
        "study": study, "point_id": point_id, "axes": point.axes, "config": point.config,
        "status": result.status, "run_digest": digest, "data_digest": manifest["digest"], "device_type": device_type,
        "mlflow_run_id": run.run_id, "resumed_from_epoch": result.resumed_from_epoch, **result.metrics,
        "provenance": machine,
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
    progress.finished(result.status)
    # the run is complete: a later rerun (forced, or code changed) must train afresh, not finish the old run
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def record_end(progress: TrainProgress, error: BaseException) -> None:
    """A job that ends by an error or a signal says so in its progress record (`trickbench status`: failed);
    bad input (the CLI names it in one line) leaves nothing behind."""
    from trickbench.data.sources import DataError
    from trickbench.params import ParamsError

    if isinstance(error, (DataError, ParamsError)):
        progress.discard()
    else:
        progress.failed(error)


def log_finished_run(run: Any, result: Any, metrics: dict[str, Any], files: RunFiles, title: str) -> None:
    """Everything MLflow gets once a run is trained; metrics.json is logged from a copy, as the real file is
    written only after the run is logged and ended."""
    import tempfile

    run.log_metrics({f"final_{k}": v for k, v in result.metrics.items()}, step=len(result.history))
    run.set_tags({"trickbench.status": result.status})
    from trickbench.report.figures import learning_curve_figure  # seaborn: seconds, so only once trained

    figure = learning_curve_figure(result.history, title=title)
    run.log_figure(figure, "learning_curves.png")
    for path in (files.history, files.batch_loss, files.diagnostics):
        run.log_artifact(path)
    with tempfile.TemporaryDirectory(prefix=".metrics-", dir=files.folder) as folder:
        logged = Path(folder) / files.metrics.name  # MLflow names the artifact after the file
        write_json(logged, metrics)
        run.log_artifact(logged)
        run.end("FINISHED" if result.status == "completed" else "FAILED")


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
    from trickbench.slots import training_slot

    manifest = read_json(layout.manifest)
    results = []
    for point in study_points(params, study):
        metrics_path = layout.run_files(study, point.point_id).metrics
        if metrics_path.exists():
            try:
                done = read_json(metrics_path)
                # the device it finished on, as a Snakemake job keeps its metrics.json; resolving `auto`
                # here would initialise CUDA before the slot below sets CUDA_VISIBLE_DEVICES
                if done.get("run_digest") == run_digest(point, manifest["digest"], done.get("device_type", "cpu")):
                    results.append(done)
                    continue
            except ValueError:
                pass
            metrics_path.unlink()
        slot = training_slot(params, point.config["device"])
        try:
            results.append(train_point(params, layout, study, point.point_id))
        finally:
            if slot is not None:
                slot.release()
    return results
