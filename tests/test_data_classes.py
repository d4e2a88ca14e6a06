"""data.classes: keep some classes of a source, relabelled 0..k-1 in the order given, in every split, before
train_per_class; absent or null changes nothing (neither the params nor the prepared data's digest)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_params, write_params
from data_fixtures import image_tree, write_zip
from trickbench.cli import main
from trickbench.data.prepared import keep_classes, load_prepared
from trickbench.params import validate
from trickbench.paths import Layout
from trickbench.stages.data import download, prepare

CLASSES = {"ant": 6, "bee": 7, "cow": 8, "dog": 9}  # alphabetical = label order 0..3


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """An image tree with a labelled test split: train/<class>/ and test/<class>/."""
    members, _ = image_tree(np.random.default_rng(0), splits=("train", "test"), classes=CLASSES)
    return write_zip(tmp_path_factory.mktemp("tree") / "tree.zip", members)


def tree_params(tmp_path: Path, archive: Path, name: str, **data) -> dict:
    params = tiny_params()
    params["tracking"]["enabled"] = False
    params["data"] = {"source": "imagefolder", "options": {"path": str(archive)}, "val_fraction": 0.3, **data}
    params["paths"] = {"artifacts": str(tmp_path / name), "results": str(tmp_path / f"{name}-results")}
    return params


def prepared_with(params: dict):
    params = validate(params)
    layout = Layout.from_params(params)
    download(params, layout)
    manifest = prepare(params, layout, progress=False)
    return load_prepared(layout.prepared), manifest


def test_keep_classes_relabels_in_the_given_order_and_keeps_the_image_order() -> None:
    labels = np.array([0, 3, 1, 3, 2, 0, 1])
    images = np.arange(len(labels))
    kept, relabelled = keep_classes(images, labels, [3, 0])
    assert kept.tolist() == [0, 1, 3, 5] and relabelled.tolist() == [1, 0, 0, 1]


def test_selected_classes_are_relabelled_in_every_split(tmp_path, archive) -> None:
    full, _ = prepared_with(tree_params(tmp_path, archive, "full"))
    picked, manifest = prepared_with(tree_params(tmp_path, archive, "picked", classes=[3, 1]))
    assert picked.class_names == ["dog", "bee"] and manifest["classes"] == [3, 1]
    for split in ("train", "val", "test"):
        assert set(picked.labels[split].tolist()) == {0, 1}
        # each kept image is an image of its original class in the full preparation
        originals = {image.tobytes(): label for split_ in ("train", "val", "test")
                     for image, label in zip(full.images[split_], full.labels[split_])}
        assert all(originals[image.tobytes()] == [3, 1][label]
                   for image, label in zip(picked.images[split], picked.labels[split]))
    assert len(picked.labels["test"]) == CLASSES["dog"] + CLASSES["bee"]  # the source's test split, cut
    assert sum(len(picked.labels[s]) for s in ("train", "val")) == CLASSES["dog"] + CLASSES["bee"]


def test_names_and_indices_select_the_same_data(tmp_path, archive) -> None:
    by_index, _ = prepared_with(tree_params(tmp_path, archive, "index", classes=[2, 0]))
    by_name, _ = prepared_with(tree_params(tmp_path, archive, "name", classes=["cow", "ant"]))
    mixed, _ = prepared_with(tree_params(tmp_path, archive, "mixed", classes=["cow", 0]))
    assert by_index.digest() == by_name.digest() == mixed.digest()
    assert by_index.class_names == ["cow", "ant"]


def test_absent_null_and_every_class_in_order_give_the_data_of_before(tmp_path, archive) -> None:
    absent = tree_params(tmp_path, archive, "absent")
    assert "classes" not in validate(absent)["data"]  # no default filled in: the params stay as they were
    before, manifest = prepared_with(absent)
    assert "classes" not in manifest
    for name, classes in (("null", None), ("all", [0, 1, 2, 3])):
        again, _ = prepared_with(tree_params(tmp_path, archive, name, classes=classes))
        assert again.digest() == before.digest() and again.class_names == before.class_names


def test_train_per_class_applies_after_the_selection(tmp_path, archive) -> None:
    picked, manifest = prepared_with(tree_params(tmp_path, archive, "capped", classes=[1, 3], train_per_class=2))
    assert np.bincount(picked.labels["train"]).tolist() == [2, 2] and manifest["sizes"]["train"] == 4


def test_a_source_without_a_test_split_holds_out_its_test_images_from_the_kept_classes(tmp_path) -> None:
    params = tiny_params()
    params["tracking"]["enabled"] = False
    params["data"]["classes"] = [7, 2, 5]
    params["paths"] = {"artifacts": str(tmp_path / "digits"), "results": str(tmp_path / "digits-results")}
    prepared, manifest = prepared_with(params)
    assert prepared.class_names == ["7", "2", "5"]
    for split in ("train", "val", "test"):
        assert np.bincount(prepared.labels[split], minlength=3).min() > 0 and prepared.labels[split].max() == 2
    assert manifest["sizes"]["test"] < 0.2 * sum(manifest["sizes"].values())


@pytest.mark.parametrize("classes, expected", [
    ([1, 1], r"data\.classes: \[1, 1\] has non-unique elements"),
    ([2], r"data\.classes: \[2\] is too short"),
    ([0, 4], r"data\.classes: 4 is out of range; data\.source imagefolder has 4 classes, expected indices 0-3"),
    (["ant", "cat"], r"data\.classes: 'cat' is not a class of data\.source imagefolder"),
    (["bee", 1], r"data\.classes: class 1 \(bee\) is given twice"),
    ([0, -1], r"data\.classes\.1: -1 is less than the minimum of 0"),
])
def test_bad_classes_exit_2_with_one_line_naming_data_classes(tmp_path, archive, capsys, classes, expected) -> None:
    params = tree_params(tmp_path, archive, "bad", classes=classes)
    path = write_params(tmp_path / "params.yaml", params)
    # the schema's rules fail at validation, whatever the command; an index or name the source lacks fails
    # in prepare, which is the first to know the source's classes
    code = main(["--params", str(path), "download"])
    if code == 0:
        capsys.readouterr()
        code = main(["--params", str(path), "prepare", "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert re.search(expected, error), error
    assert not (tmp_path / "bad" / "data" / "prepared.npz").exists()
