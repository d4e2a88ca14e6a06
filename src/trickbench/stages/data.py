"""Stages download, prepare and stats: raw files -> verified record -> uint8 splits -> statistics."""
from __future__ import annotations

from typing import Any

import numpy as np

from trickbench.data.prepared import (Prepared, class_indices, keep_classes, save_prepared, stratified_split,
                                      stratified_subset)
from trickbench.errors import DataError, MissingInputError
from trickbench.io import atomic_path, digest_json, read_json, write_json
from trickbench.paths import Layout
from trickbench import tracking


def download(params: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """Locate or fetch the raw data and verify its checksums, so later stages never download."""
    from trickbench.data.sources import fetch

    data = params["data"]
    record = fetch(data["source"], data["options"], layout.raw_dir)
    if "class_names" in record:  # image trees: the class folders are known before decoding
        require_two_classes(record["class_names"], record["files"][0]["path"])
    write_json(layout.download_record, record)
    return record


def require_two_classes(class_names: list[str], where: str) -> None:
    """A single class leaves nothing to learn (every error would be 0): refuse it before any output."""
    if len(class_names) < 2:
        raise DataError(f"{where}: {len(class_names)} class ({', '.join(map(str, class_names)) or 'none'}); "
                        "expected at least 2 classes")


def prepare(params: dict[str, Any], layout: Layout, progress: bool = True) -> dict[str, Any]:
    """Decode once into uint8 arrays; deterministic stratified train/val(/test) split; digest."""
    from trickbench.data.sources import load

    data = params["data"]
    if not layout.download_record.exists():
        raise MissingInputError(f"{layout.download_record}: missing; run the download stage first")
    tracking.check_store(params)  # a store that cannot be used fails before any output is written
    raw = load(data["source"], data["options"], layout.raw_dir, progress=progress)
    require_two_classes(list(raw.class_names), f"data.source {data['source']}")
    class_names = list(raw.class_names)
    images, labels = raw.train.images, raw.train.labels
    test_images, test_labels = (raw.test.images, raw.test.labels) if raw.test is not None else (None, None)
    if data.get("classes") is not None:  # absent or null: every class (and the params digest of before)
        indices = class_indices(data["classes"], class_names, data["source"])
        images, labels = keep_classes(images, labels, indices)
        if raw.test is not None:
            test_images, test_labels = keep_classes(test_images, test_labels, indices)
        class_names = [class_names[i] for i in indices]
    if raw.test is None:  # no labelled test split (digits, NDSB): hold one out of the training data
        kept, held = stratified_split(labels, data["test_fraction"], data["split_seed"])
        test_images, test_labels = images[held], labels[held]
        images, labels = images[kept], labels[kept]
    kept, held = stratified_split(labels, data["val_fraction"], data["split_seed"] + 1)
    if data["train_per_class"] is not None:
        kept = kept[stratified_subset(labels[kept], data["train_per_class"], data["split_seed"] + 2)]
    prepared = Prepared(
        images={"train": images[kept], "val": images[held], "test": test_images},
        labels={"train": labels[kept], "val": labels[held], "test": test_labels},
        class_names=class_names,
    )
    manifest = {
        "source": data["source"],
        "digest": prepared.digest(),
        "class_names": prepared.class_names,
        "class_counts": prepared.class_counts(),
        "sizes": {split: int(len(prepared.labels[split])) for split in prepared.labels},
        "image_shape": list(prepared.image_shape),
        "test_split": "source" if raw.test is not None else f"held out ({data['test_fraction']:g} of train)",
        "val_fraction": data["val_fraction"],
        "split_seed": data["split_seed"],
        "train_per_class": data["train_per_class"],
        **({"classes": data["classes"]} if data.get("classes") is not None else {}),
        "provenance": raw.provenance,
    }
    save_prepared(layout.prepared, prepared)
    write_json(layout.manifest, manifest)
    run = tracking.open_run(params, tracking.experiment_name(params, tracking.DATA_EXPERIMENT),
                            "prepare", {"trickbench.stage": "prepare", "trickbench.data_digest": manifest["digest"]},
                            {"data": data}, identity=digest_json(["prepare", data, manifest["digest"], str(layout.prepared.resolve())]),
                            reuse_finished=True)
    run.log_dataset(data["source"], manifest["digest"], str(layout.prepared),
                    {"features": prepared.images["train"], "targets": prepared.labels["train"]}, "training")
    run.log_artifact(layout.manifest)
    run.end()
    return manifest


def stats(params: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """Channel statistics, RGB PCA (fancy PCA) and whitening matrices of the TRAINING split only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trickbench.data.prepared import load_prepared
    from trickbench.data.stats import compute_stats, plot_spectrum

    tracking.check_store(params)
    prepared = load_prepared(layout.prepared)
    summary, arrays = compute_stats(prepared.images["train"], epsilon=params["stats"]["whitening_epsilon"],
                                   whiten=params["stats"]["whitening"])
    summary["data_digest"] = read_json(layout.manifest)["digest"]
    with atomic_path(layout.stats_arrays) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    write_json(layout.stats_json, summary)
    figure = plot_spectrum(summary, arrays)  # the report stage writes it under results/
    run = tracking.open_run(params, tracking.experiment_name(params, tracking.DATA_EXPERIMENT),
                            "stats", {"trickbench.stage": "stats", "trickbench.data_digest": summary["data_digest"]},
                            {"stats": params["stats"]}, identity=digest_json(["stats", params["stats"], summary["data_digest"],
                                                                       str(layout.stats_json.resolve())]),
                            reuse_finished=True)
    run.log_metrics({f"eigenvalue_{i}": v for i, v in enumerate(summary["eigenvalues"])}, step=0)
    run.log_artifact(layout.stats_json)
    run.log_figure(figure, "pca_spectrum.png")
    run.end()
    plt.close(figure)
    return summary


def init_tracking(params: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """Create the MLflow store and every experiment once, before train jobs fan out."""
    if not params["tracking"]["enabled"]:
        record: dict[str, Any] = {"enabled": False}
    else:
        tracking.check_store(params)
        uri = tracking.tracking_uri(params)
        names = [tracking.experiment_name(params, s) for s in [tracking.DATA_EXPERIMENT, *params["studies"]]]
        record = {"enabled": True, "uri": uri, "experiments": tracking.ensure_experiments(uri, names)}
    write_json(layout.tracking_record, record)
    return record
