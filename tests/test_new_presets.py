"""The presets of the new claims (issues 23 and 24) carry the studies, axes and data the claims registry
reads, test on the full CIFAR-10 test set, and say their pilot in the header."""
from __future__ import annotations

from pathlib import Path

import pytest

from trickbench.grid import expand_grid
from trickbench.params import load_params
from trickbench.paths import Layout

REPO = Path(__file__).resolve().parents[1]
CIFAR = ["seed-augmentations-v2", "seed-regularizers-v2", "seed-learning-rates-v2", "seed-optimizers", "seed-optimizers-long", "seed-batchnorm", "seed-transfer-source",
         "seed-transfer-small", "seed-transfer-large"]
NEW = [*CIFAR, "seed-class-imbalance-v2"]


def params_of(name: str) -> dict:
    return load_params(REPO / "configs" / f"{name}.yaml")


def values(name: str, study: str, key: str) -> list:
    return list(dict.fromkeys(_hashable(p.config[key]) for p in expand_grid(params_of(name)) if p.study == study))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def test_augmentations_v2_adds_noise_rotation_contrast_and_the_colour_augmentations_beside_none_and_flip_crop():
    assert values("seed-augmentations-v2", "augmentations", "augmentations") == [
        (), ("flip", "crop"), ("gaussian_noise",), ("rotation",), ("contrast",), ("color_jitter",), ("hsv",),
        ("fancy_pca",)]


def test_regularizers_v2_is_augmentations_v2s_recipe_without_weight_decay_with_dropout_and_max_norm():
    assert values("seed-regularizers-v2", "regularizers", "regularizers") == [(), ("dropout",), ("max_norm",)]
    recipe, base = params_of("seed-regularizers-v2"), params_of("seed-augmentations-v2")
    assert recipe["data"] == base["data"]
    differs = {k for k in recipe["train"] if recipe["train"][k] != base["train"][k]}
    assert differs == {"regularizers", "l2"}, differs  # augs-v2 trains with [l2] (1e-4); l2 acts only when named


def test_learning_rates_v2_is_augmentations_v2s_recipe_at_a_constant_rate_or_divided_on_plateau():
    assert values("seed-learning-rates-v2", "plateau", "schedule") == ["constant", "plateau"]
    recipe, base = params_of("seed-learning-rates-v2"), params_of("seed-augmentations-v2")
    rule = params_of("seed-learning-rates")["train"]
    assert recipe["data"] == base["data"]
    assert {k for k in recipe["train"] if recipe["train"][k] != base["train"][k]} == {"schedule"}
    assert (recipe["train"]["plateau_factor"], recipe["train"]["plateau_patience"]) == (
        rule["plateau_factor"], rule["plateau_patience"])  # the same rule, another regime


def test_optimizers_each_at_its_usual_rate_and_two_batch_sizes_at_one_rate() -> None:
    points = [p for p in expand_grid(params_of("seed-optimizers")) if p.study == "optimizers"]
    usual = {(p.config["optimizer"], p.config["lr"], p.config["momentum"]) for p in points}
    assert usual == {("sgd", 0.05, 0.9), ("adam", 0.001, 0.0), ("adagrad", 0.01, 0.0), ("rmsprop", 0.001, 0.0)}
    assert {p.config["schedule"] for p in points} == {"constant"}
    assert values("seed-optimizers", "batch_size", "batch_size") == [64, 256]
    assert values("seed-optimizers", "batch_size", "lr") == [0.05]


def test_optimizers_long_continues_seed_optimizers_points_with_an_epoch_budget_per_optimizer() -> None:
    short = {(p.config["optimizer"], p.config["seed"]): p.config for p in expand_grid(params_of("seed-optimizers"))
             if p.study == "optimizers"}
    budgets = {}
    for point in expand_grid(params_of("seed-optimizers-long")):
        config = point.config
        same = short[(config["optimizer"], config["seed"])]
        assert {k for k in config if config[k] != same[k]} == {"epochs"}, point.point_id
        budgets.setdefault(config["optimizer"], set()).add(config["epochs"])
    assert budgets == {"adam": {60}, "rmsprop": {80}, "adagrad": {300}}
    assert params_of("seed-optimizers-long")["data"] == params_of("seed-optimizers")["data"]


def test_batchnorm_crosses_normalisation_learning_rate_and_initialisation() -> None:
    assert values("seed-batchnorm", "batchnorm", "regularizers") == [(), ("batch_norm",)]
    assert values("seed-batchnorm", "batchnorm", "lr") == [0.05, 0.5]
    assert values("seed-batchnorm", "batchnorm", "initializer") == ["he_normal", "small_random"]
    assert len(expand_grid(params_of("seed-batchnorm"))) == 2 * 2 * 2 * 5


def test_the_transfer_presets_fine_tune_the_source_presets_model_on_the_other_classes() -> None:
    source = params_of("seed-transfer-source")
    assert source["data"]["classes"] == [0, 1, 2, 3, 4]
    (point,) = expand_grid(source)
    model = Layout.from_params(source).run_files(point.study, point.point_id).model
    sizes = {}
    for name in ("seed-transfer-small", "seed-transfer-large"):
        params = params_of(name)
        assert params["data"]["classes"] == [5, 6, 7, 8, 9]
        assert all(params["train"][key] == source["train"][key] for key in ("model", "width", "activation"))
        points = expand_grid(params)
        starts = {(p.config["finetune_from"], p.config["finetune_mode"]) for p in points if p.study == "transfer"}
        assert starts == {(None, "full"), *((str(model), mode) for mode in ("linear", "top", "full"))}
        sizes[name] = params["data"]["train_per_class"]
    assert sizes["seed-transfer-small"] * 10 <= sizes["seed-transfer-large"]


def test_class_imbalance_v2_adds_the_moderate_remedies_and_their_metric() -> None:
    params = params_of("seed-class-imbalance-v2")
    assert values("seed-class-imbalance-v2", "class_balance", "class_balance") == [
        "none", "capped_oversample", "class_weighted_loss", "sqrt_class_weighted_loss"]
    assert "test_mean_recall" in params["report"]["metrics"]
    # the extreme samplers left out of v2 are seed-class-imbalance's, on the same data and recipe
    first = params_of("seed-class-imbalance")
    assert params["data"] == first["data"] and params["train"] == first["train"]
    assert {"oversample", "undersample"} <= set(values("seed-class-imbalance", "class_balance", "class_balance"))


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_presets_use_the_full_archives(name: str) -> None:
    options = params_of(name)["data"]["options"]
    assert Path(options["train_archive"]).name == "cifar10_train.zip"
    assert Path(options["test_archive"]).name == "cifar10_test.zip"


@pytest.mark.parametrize("name", NEW)
def test_each_header_gives_its_pilot_and_wall_time(name: str) -> None:
    header = (REPO / "configs" / f"{name}.yaml").read_text().split("\npaths:")[0]
    assert "Pilot" in header and "s an epoch" in header and "min on 2 cores" in header
    assert f"--configfile configs/{name}.yaml" in header
