"""Every preset in configs/ validates (schema, registries, grid), through the CLI as a user would call it;
the paper presets carry what the issue asks of them."""
from __future__ import annotations

import subprocess

import pytest

from conftest import BIN, REPO
from trickbench.grid import expand_grid
from trickbench.params import load_params

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_there_are_presets():
    names = {path.stem for path in CONFIGS}
    assert {"paper-cifar10", "paper-cifar100", "paper-ndsb", "scaled-cifar10", "seed-initializers",
            "seed-regularizers", "seed-learning-rates", "seed-augmentations", "seed-class-imbalance"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_validates(path):
    params = load_params(path)
    assert expand_grid(params)
    # each preset writes to its own folders, so presets never overwrite each other or the default run
    if path.stem.startswith(("paper-", "seed-", "scaled-")):
        assert params["paths"]["artifacts"] == f"artifacts/{path.stem}"
        assert params["paths"]["results"] == f"results/{path.stem}"


def test_the_cli_validates_every_config():
    for path in CONFIGS:
        done = subprocess.run([str(BIN / "trickbench"), "--params", str(path), "validate"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "valid" in done.stdout, (path, done.stderr)


@pytest.mark.parametrize("name, reference, metrics", [
    ("paper-cifar10", "cifar10", ["train_error", "test_error"]),
    ("paper-cifar100", "cifar100", ["train_error", "test_error"]),
    ("paper-ndsb", "ndsb", ["train_loss_running", "test_loss"]),
])
def test_paper_presets(name, reference, metrics):
    params = load_params(REPO / "configs" / f"{name}.yaml")
    points = expand_grid(params)
    activations = {p.axes["activation"] for p in points}
    assert activations == {"relu", "leaky_relu_a100", "leaky_relu_a5.5", "prelu", "rrelu"}
    assert len({p.axes["seed"] for p in points}) >= 3
    assert params["report"]["paper_table"]["reference"] == reference
    assert params["report"]["paper_table"]["metrics"] == metrics
    train = params["train"]
    assert (train["optimizer"], train["momentum"], train["batch_size"]) == ("sgd", 0.9, 128)
    assert "l2" in train["regularizers"] and train["l2"] == 1.0e-4 and not train["weight_decay_on_prelu"]
    if name.startswith("paper-cifar"):
        assert (train["model"], train["width"], train["augmentations"], train["input_size"]) == ("nin", 192, [], None)
    else:
        assert (train["model"], train["input_size"], params["data"]["options"]["image_size"]) == ("ndsb_net", 70, 80)
    text = (REPO / "configs" / f"{name}.yaml").read_text()
    assert text.count("[paper]") >= 5 and text.count("[reconstructed]") >= 5


def test_seed_studies_cover_the_issue():
    def axis(name, key):
        return [p.axes[key] for p in expand_grid(load_params(REPO / "configs" / f"{name}.yaml")) if key in p.axes]

    inits = axis("seed-initializers", "initializer")
    assert set(inits) == {"zeros", "small_random", "lecun_normal", "xavier_uniform", "he_normal"}
    assert set(axis("seed-initializers", "activation")) == {"sigmoid", "tanh", "relu"}
    assert {tuple(v) for v in axis("seed-regularizers", "regularizers")} == {
        (), ("l2",), ("l1",), ("elastic_net",), ("max_norm",), ("dropout",), ("batch_norm",), ("early_stopping",),
        ("augmentation",)}
    assert len(set(axis("seed-learning-rates", "lr"))) >= 4
    assert set(axis("seed-learning-rates", "schedule")) == {"constant", "plateau"}
    assert {tuple(v) for v in axis("seed-augmentations", "augmentations")} == {
        (), ("flip", "crop"), ("color_jitter",), ("hsv",), ("fancy_pca",)}
    assert set(axis("seed-class-imbalance", "class_balance")) == {"none", "oversample", "undersample",
                                                                  "class_weighted_loss"}
