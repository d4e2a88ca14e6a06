"""data.train_per_class: a seeded, stratified cap on the training split that leaves validation and test
as they are (how a preset is scaled down to what converges on a CPU)."""
from __future__ import annotations

import numpy as np

from conftest import tiny_params
from trickbench.data.prepared import load_prepared, stratified_subset
from trickbench.io import read_json
from trickbench.paths import Layout
from trickbench.stages.data import download, prepare


def prepared_with(tmp_path, name, per_class):
    params = tiny_params()
    params["tracking"]["enabled"] = False
    params["data"]["train_per_class"] = per_class
    params["paths"] = {"artifacts": str(tmp_path / name), "results": str(tmp_path / f"{name}-results")}
    from trickbench.params import validate

    params = validate(params)
    layout = Layout.from_params(params)
    download(params, layout)
    manifest = prepare(params, layout, progress=False)
    return load_prepared(layout.prepared), manifest, layout


def test_train_per_class_caps_training_and_keeps_validation_and_test(tmp_path):
    full, _, _ = prepared_with(tmp_path, "full", None)
    capped, manifest, layout = prepared_with(tmp_path, "capped", 5)
    counts = np.bincount(capped.labels["train"], minlength=10)
    assert counts.tolist() == [5] * 10
    for split in ("val", "test"):
        assert np.array_equal(capped.labels[split], full.labels[split])
        assert np.array_equal(capped.images[split], full.images[split])
    # the kept images are training images of the uncapped split, each once
    full_rows = {image.tobytes() for image in full.images["train"]}
    assert all(image.tobytes() in full_rows for image in capped.images["train"])
    assert len({image.tobytes() for image in capped.images["train"]}) == 50
    assert read_json(layout.manifest)["train_per_class"] == 5 and manifest["sizes"]["train"] == 50
    again, _, _ = prepared_with(tmp_path, "again", 5)
    assert np.array_equal(again.images["train"], capped.images["train"]), "seeded: the same subset every time"


def test_stratified_subset_never_exceeds_a_small_class():
    labels = np.array([0] * 3 + [1] * 10)
    chosen = stratified_subset(labels, 5, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [3, 5]
    assert np.all(np.diff(chosen) > 0)
