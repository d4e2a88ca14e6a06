"""The training loop in process, without MLflow: every component by name runs, runs are reproducible
and resumable, and the per-run diagnostics (per-batch loss, activation statistics at initialization,
dead units) say what they claim.

The in-process helpers (`train_config`, `digits`, `digits_stats`, `run`) live in conftest.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import StopTraining, digits, digits_stats, run, stop_after, train_config
from trickbench.data.augment import AUGMENTATIONS
from trickbench.data.prepared import Prepared
from trickbench.data.preprocess import PREPROCESSORS, build_preprocessor
from trickbench.nn.activations import ACTIVATIONS, activation_layers
from trickbench.nn.initializers import INITIALIZERS
from trickbench.train.loop import (
    DeviceData, Status, TrainResult, TrainState, build_network, predict, train,
)
from trickbench.train.diagnostics import dead_unit_fractions
from trickbench.train.optim import OPTIMIZERS, SCHEDULES
from trickbench.train.balance import CLASS_BALANCES, OVERSAMPLE_CAP
from trickbench.train.regularizers import REGULARIZERS, regularization

# --------------------------------------------------------------------------------------------- helpers

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_finite_run(result: TrainResult, epochs: int = 1) -> None:
    assert result.status == "completed"
    assert len(result.history) == epochs
    for key in ("train", "val", "test"):
        assert math.isfinite(result.metrics[f"{key}_loss"]), result.metrics
        assert 0.0 <= result.metrics[f"{key}_error"] <= 1.0
    for row in result.history:
        assert all(math.isfinite(v) for v in row.values()), row
    assert result.batch_losses and all(math.isfinite(loss) for _, _, loss in result.batch_losses)
    probs = result.predictions["test_probs"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert all(torch.isfinite(t).all() for t in result.model_state.values() if t.is_floating_point())


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_run(a: TrainResult, b: TrainResult) -> None:
    assert a.metrics == b.metrics
    assert without_seconds(a.history) == without_seconds(b.history)
    assert a.batch_losses == b.batch_losses
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    for key in a.predictions:
        np.testing.assert_array_equal(a.predictions[key], b.predictions[key])


# ------------------------------------------------------------------ every component by name runs

@pytest.mark.parametrize("initializer", ["he_normal", "xavier_uniform", "orthogonal"])
@pytest.mark.parametrize("activation", ACTIVATIONS.names())
def test_every_activation_with_a_few_initializers(activation: str, initializer: str) -> None:
    assert_finite_run(run(activation=activation, initializer=initializer))


@pytest.mark.parametrize("initializer", INITIALIZERS.names())
def test_every_initializer(initializer: str) -> None:
    assert_finite_run(run(initializer=initializer, activation="leaky_relu_a5.5"))


@pytest.mark.parametrize("regularizer", REGULARIZERS.names())
def test_every_regularizer(regularizer: str) -> None:
    assert_finite_run(run(regularizers=[regularizer]))


def test_regularizers_change_the_run() -> None:
    """Each regularizer that acts within one epoch makes a different run than none (same seed)."""
    baseline = run(regularizers=["none"], l2=1e-2, l1=1e-3)
    for name in ("l2", "l1", "elastic_net", "dropout", "batch_norm", "augmentation"):
        result = run(regularizers=[name], l2=1e-2, l1=1e-3)
        assert result.metrics != baseline.metrics, name
    batch_norm = run(regularizers=["batch_norm"])
    assert any(key.endswith("running_mean") for key in batch_norm.model_state)


def test_all_regularizers_combined() -> None:
    names = [n for n in REGULARIZERS.names() if n != "none"]
    assert_finite_run(run(regularizers=names, epochs=2, max_norm=1.0), epochs=2)


@pytest.mark.parametrize("augmentation", AUGMENTATIONS.names())
def test_every_augmentation(augmentation: str) -> None:
    # fancy_pca reads the colour PCA of the stats dict (here that of one grey channel)
    assert_finite_run(run(augmentations=[augmentation]))


def test_all_augmentations_and_training_crops() -> None:
    result = run(augmentations=AUGMENTATIONS.names(), input_size=6)
    assert_finite_run(result)


@pytest.mark.parametrize("schedule", SCHEDULES.names())
@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_every_optimizer_with_every_schedule(optimizer: str, schedule: str) -> None:
    lr = 0.01 if optimizer in ("adam", "rmsprop") else 0.05
    result = run(optimizer=optimizer, schedule=schedule, lr=lr, epochs=2, step_size=1, gamma=0.5)
    assert_finite_run(result, epochs=2)
    first, second = (row["lr"] for row in result.history)
    assert first == pytest.approx(lr)
    expected = {"constant": lr, "step": lr * 0.5, "cosine": lr * (1 + math.cos(math.pi / 2)) / 2,
                "cosine_restarts": lr}  # cycles of step_size 1 epoch: back to lr at every epoch
    if schedule in expected:
        assert second == pytest.approx(expected[schedule], rel=1e-9)
    else:  # plateau: unchanged, or divided after plateau_patience epochs without improvement
        assert second in (pytest.approx(lr), pytest.approx(lr * 0.5))


def test_a_restarting_schedule_snapshots_the_end_of_each_cycle() -> None:
    """Two cycles of 2 epochs: the snapshots are the models after epochs 2 and 4; the first is the model of a
    run that stops after one cycle (the same seed, rates and batches up to there)."""
    two_cycles = run(schedule="cosine_restarts", step_size=2, epochs=4, snapshots=2, lr=0.05)
    one_cycle = run(schedule="cosine_restarts", step_size=2, epochs=2, snapshots=1, lr=0.05)
    assert [row["lr"] for row in two_cycles.history] == pytest.approx([0.05, 0.025, 0.05, 0.025])
    for split in ("val", "test"):
        snapshots = two_cycles.predictions[f"snapshot_{split}_probs"]
        assert snapshots.shape[0] == 2
        np.testing.assert_array_equal(snapshots[0], one_cycle.predictions[f"{split}_probs"])
        np.testing.assert_array_equal(snapshots[1], two_cycles.predictions[f"{split}_probs"])
        assert not np.array_equal(snapshots[0], snapshots[1])


def test_sgd_nesterov_runs() -> None:
    assert_finite_run(run(optimizer="sgd", nesterov=True))


def imbalanced_digits() -> Prepared:
    """digits with classes 0-4 cut to 10 training images each (the others keep about 130)."""
    base = digits()
    labels = base.labels["train"]
    keep = np.concatenate([np.flatnonzero(labels == c)[:10] if c < 5 else np.flatnonzero(labels == c)
                           for c in range(10)])
    keep.sort()
    return Prepared({**base.images, "train": base.images["train"][keep]},
                    {**base.labels, "train": labels[keep]}, base.class_names)


@pytest.mark.parametrize("balance", CLASS_BALANCES.names())
def test_every_class_balance(balance: str) -> None:
    prepared = imbalanced_digits()
    counts = np.bincount(prepared.labels["train"], minlength=10)
    result = run(prepared, class_balance=balance, batch_size=32)
    assert_finite_run(result)
    epoch_size = {"oversample": 10 * counts.max(), "undersample": 10 * counts.min(),
                  "capped_oversample": np.minimum(counts.max(), OVERSAMPLE_CAP * counts).sum()}.get(balance, counts.sum())
    assert len(result.batch_losses) == math.ceil(epoch_size / 32)


@pytest.mark.parametrize("preprocessing", PREPROCESSORS.names())
def test_every_preprocessing(preprocessing: str) -> None:
    assert_finite_run(run(preprocessing=preprocessing))


@pytest.mark.parametrize("model, width", [("small_cnn", 4), ("nin", 8)])
def test_models_that_fit_the_digits(model: str, width: int) -> None:
    assert_finite_run(run(model=model, width=width))


# --------------------------------------------------------------------------- reproducible, resumable

RANDOM_CONFIG = dict(activation="rrelu", augmentations=["flip", "crop", "fancy_pca"],
                     regularizers=["dropout"], epochs=2)


def test_same_seed_gives_a_bit_identical_run() -> None:
    assert_same_run(run(**RANDOM_CONFIG, seed=3), run(**RANDOM_CONFIG, seed=3))


def test_different_seed_gives_a_different_run() -> None:
    a, b = run(**RANDOM_CONFIG, seed=3), run(**RANDOM_CONFIG, seed=4)
    assert a.metrics["val_loss"] != b.metrics["val_loss"]
    assert a.batch_losses != b.batch_losses
    assert not torch.equal(a.model_state["head.fc.weight"], b.model_state["head.fc.weight"])


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_interrupted_run_resumes_bit_identically(tmp_path, schedule: str) -> None:
    config = train_config(**RANDOM_CONFIG | {"epochs": 4}, schedule=schedule, plateau_patience=1)
    whole = train(config, digits(), digits_stats(), config_digest="resume")

    class Interrupt(Exception):
        pass

    def stop_after_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise Interrupt

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Interrupt):
        train(config, digits(), digits_stats(), config_digest="resume", checkpoint_path=checkpoint,
              on_epoch=stop_after_two)
    state = TrainState.load(checkpoint, {"cpu": "resume"}, "cpu", patience=None)
    assert state is not None and state.epoch == 2 and len(state.history) == 2
    resumed = train(config, digits(), digits_stats(), config_digest="resume", checkpoint_path=checkpoint)
    assert resumed.resumed_from_epoch == 2
    assert_same_run(whole, resumed)
    assert TrainState.load(checkpoint, {"cpu": "another configuration"}, "cpu", patience=None) is None


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "rmsprop"])
def test_at_a_constant_rate_a_longer_run_is_the_shorter_one_continued(optimizer: str) -> None:
    # seed-optimizers-long rests on this: its epoch budgets differ by optimizer, and its first 30 epochs
    # are seed-optimizers' runs; with snapshots, which read predictions at budget-dependent epochs
    config = dict(RANDOM_CONFIG, optimizer=optimizer, lr=0.01, schedule="constant", snapshots=2, seed=5)
    short, longer = run(**config | {"epochs": 2}), run(**config | {"epochs": 4})
    assert without_seconds(longer.history[:2]) == without_seconds(short.history)
    assert longer.batch_losses[:len(short.batch_losses)] == short.batch_losses
    cosine = run(**config | {"epochs": 4, "schedule": "cosine"})  # the counter-case: the budget shapes the rate
    assert without_seconds(cosine.history[:2]) != without_seconds(short.history)


EARLY_STOPPED_CONFIG = dict(regularizers=["early_stopping", "batch_norm"], patience=1, lr=2.0, schedule="constant",
                            epochs=8, batch_size=128)


def test_early_stopping_ends_the_run_with_its_best_epochs_weights() -> None:
    """lr 2 without decay: the validation loss soon stops improving; the run ends after `patience` epochs
    without a new best and is evaluated with the best epoch's weights (its validation loss, exactly)."""
    result = run(**EARLY_STOPPED_CONFIG)
    val_losses = [row["val_loss"] for row in result.history]
    best = val_losses.index(min(val_losses))
    assert result.status == "completed" and len(val_losses) == best + 2 < 8, val_losses
    assert result.metrics["val_loss"] == min(val_losses)


def test_a_run_resumed_after_early_stopping_ended_it_trains_no_further(tmp_path) -> None:
    whole = run(**EARLY_STOPPED_CONFIG)
    checkpoint = tmp_path / "checkpoint.pt"
    stopped_after = len(whole.history)
    with pytest.raises(StopTraining):
        train(train_config(**EARLY_STOPPED_CONFIG), digits(), digits_stats(), config_digest="test",
              checkpoint_path=checkpoint, on_epoch=stop_after(stopped_after))
    state = TrainState.load(checkpoint, {"cpu": "test"}, "cpu", patience=1)
    assert state.early_stopping.stopped and state.status is Status.COMPLETED
    resumed = train(train_config(**EARLY_STOPPED_CONFIG), digits(), digits_stats(), config_digest="test",
                    checkpoint_path=checkpoint)
    assert resumed.resumed_from_epoch == stopped_after
    assert_same_run(whole, resumed)


# ------------------------------------------------------------------------------------------ diagnostics

def test_batch_losses_are_per_batch_and_average_to_the_epoch_loss() -> None:
    result = run(epochs=2, batch_size=100)
    n = len(digits().labels["train"])
    steps = math.ceil(n / 100)
    assert [(e, s) for e, s, _ in result.batch_losses] == [(e, s) for e in range(2) for s in range(steps)]
    sizes = np.array([min(100, n - 100 * s) for s in range(steps)])
    for epoch in range(2):
        losses = np.array([loss for e, _, loss in result.batch_losses if e == epoch])
        assert float(losses @ sizes / n) == pytest.approx(result.history[epoch]["train_loss"], rel=1e-5)


def init_stats(**overrides) -> list[dict]:
    result = run(**overrides)
    records = result.diagnostics["init_activation_stats"]
    config = train_config(**overrides)
    model = build_network(config, regularization(config), digits().image_shape, 10)
    assert [r["layer"] for r in records] == [name for name, _ in activation_layers(model)]
    return records


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_zero_initialization_gives_constant_activations(activation: str) -> None:
    """No symmetry breaking: with all weights and biases 0, every activation layer outputs one constant
    (std 0), the first included, since its pre-activation is already 0 for every input."""
    records = init_stats(initializer="zeros", activation=activation)
    assert len(records) == 4
    assert all(r["std"] == 0.0 for r in records), records


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_small_random_initialization_shrinks_activations_layer_by_layer(activation: str) -> None:
    stds = [r["std"] for r in init_stats(initializer="small_random", activation=activation)]
    assert stds[0] > 0
    assert all(later < earlier for earlier, later in zip(stds, stds[1:])), stds
    assert stds[-1] < 1e-3 * stds[0]  # N(0, 1e-3) weights: each layer scales by about 1e-3 sqrt(fan_in)


def test_he_initialization_keeps_activations_alive() -> None:
    stds = [r["std"] for r in init_stats(initializer="he_normal", activation="relu")]
    assert all(0.1 < s < 10 for s in stds), stds


def test_dead_units_of_a_crafted_network() -> None:
    config = train_config(activation="relu")
    model = build_network(config, regularization(config), digits().image_shape, 10)
    conv1, conv3 = model.blocks.stage1.conv1, model.blocks.stage3.conv1
    assert (conv1.out_channels, conv3.out_channels) == (4, 16)
    with torch.no_grad():
        conv1.bias.copy_(torch.tensor([-1e3, 1e3, -1e3, 1e3]))  # channels 0 and 2 never fire
        conv3.bias.fill_(1e3)
        conv3.bias[[1, 5, 9]] = -1e3  # three of 16 channels never fire
    prepared = digits()
    val = DeviceData(prepared.images["val"], prepared.labels["val"], torch.device("cpu"))
    prepare = build_preprocessor("normalize", digits_stats(), "cpu")
    records = dead_unit_fractions(model, lambda: predict(model, val, prepare, batch_size=50, amp=False))
    by_layer = {r["layer"]: r for r in records}
    assert list(by_layer) == [name for name, _ in activation_layers(model)]
    assert by_layer["blocks.stage1.act1"] == {"layer": "blocks.stage1.act1", "dead_fraction": 0.5, "units": 4}
    assert by_layer["blocks.stage3.act1"]["dead_fraction"] == pytest.approx(3 / 16)
    assert by_layer["blocks.stage3.act1"]["units"] == 16
    assert all(0.0 <= r["dead_fraction"] <= 1.0 for r in records)


def test_dead_units_of_a_zero_initialized_relu_network() -> None:
    """The seed's failure case: nothing ever fires, so every unit of every layer is dead at the end."""
    result = run(initializer="zeros", activation="relu")
    dead = result.diagnostics["dead_units"]
    assert len(dead) == 4 and all(r["dead_fraction"] == 1.0 for r in dead), dead


def test_dead_units_are_reported_per_layer() -> None:
    dead = run().diagnostics["dead_units"]
    assert [r["layer"] for r in dead] == ["blocks.stage1.act1", "blocks.stage1.act2", "blocks.stage2.act1",
                                          "blocks.stage3.act1"]
    assert [r["units"] for r in dead] == [4, 4, 8, 16]
