"""The training loop's parts on their own: the class-balance and fine-tune-mode registries, early stopping,
and the checkpoint's TrainState (its file round trip and the refusal of another device type's checkpoint)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_params, write_params
from trickbench.cli import main
from trickbench.errors import DataError
from trickbench.params import ParamsError, load_params
from trickbench.train.backends import rng_state
from trickbench.train.balance import CLASS_BALANCES
from trickbench.train.checkpoint import EARLY_STOPPED, BatchLosses, EarlyStopping, Status, TrainState, save_checkpoint

# counts per class 5, 20, 3, 0 (absent), 12: imbalanced, with a class the split lacks
COUNTS = [5, 20, 3, 0, 12]
LABELS = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(COUNTS)])[
    torch.randperm(sum(COUNTS), generator=torch.Generator().manual_seed(1))]
NUM_CLASSES = len(COUNTS)


def epoch_order(name: str, seed: int = 0) -> torch.Tensor:
    return CLASS_BALANCES.get(name)(LABELS, NUM_CLASSES).epoch_order(torch.Generator().manual_seed(seed))


def drawn_per_class(order: torch.Tensor) -> list[int]:
    return torch.bincount(LABELS[order], minlength=NUM_CLASSES).tolist()


# ------------------------------------------------------------------------------------------ class balance

@pytest.mark.parametrize("name", ["none", "class_weighted_loss"])
def test_an_unbalanced_epoch_is_a_permutation_of_the_training_set(name: str) -> None:
    order = epoch_order(name)
    assert sorted(order.tolist()) == list(range(len(LABELS)))
    assert not torch.equal(order, torch.arange(len(LABELS)))  # shuffled
    assert not torch.equal(order, epoch_order(name, seed=1))  # a fresh order per generator state


def test_oversample_draws_every_present_class_as_often_as_the_largest_and_keeps_every_image() -> None:
    order = epoch_order("oversample")
    assert drawn_per_class(order) == [20, 20, 20, 0, 20]
    assert set(order.tolist()) == set(range(len(LABELS)))  # every image at least once
    assert len(torch.unique(order)) < len(order)  # the small classes repeat
    assert CLASS_BALANCES.get("oversample")(LABELS, NUM_CLASSES).loss_weight is None


def test_undersample_draws_every_present_class_as_often_as_the_smallest_without_repeats() -> None:
    order = epoch_order("undersample")
    assert drawn_per_class(order) == [3, 3, 3, 0, 3]
    assert len(torch.unique(order)) == len(order) == 12
    # a fresh subset of the large classes per epoch
    assert set(epoch_order("undersample", seed=1).tolist()) != set(order.tolist())


def test_class_weighted_loss_weighs_every_class_to_the_same_total() -> None:
    weight = CLASS_BALANCES.get("class_weighted_loss")(LABELS, NUM_CLASSES).loss_weight
    counts = torch.tensor(COUNTS, dtype=torch.float32)
    present = counts > 0
    torch.testing.assert_close(weight[present] * counts[present], torch.full((4,), 40 / 5))
    assert weight[3] == pytest.approx(40 / 5)  # an absent class counts as one image
    # so the weighted cross-entropy is the mean over the present classes of each class's mean loss
    logits = torch.randn(len(LABELS), NUM_CLASSES, generator=torch.Generator().manual_seed(2))
    losses = F.cross_entropy(logits, LABELS, reduction="none")
    per_class = [losses[LABELS == c].mean() for c in range(NUM_CLASSES) if COUNTS[c]]
    torch.testing.assert_close(F.cross_entropy(logits, LABELS, weight=weight), torch.stack(per_class).mean())


def test_the_schema_takes_class_balance_and_finetune_mode_names_from_their_registries(tmp_path: Path) -> None:
    for key, wrong, valid in [("class_balance", "oversampling", CLASS_BALANCES.names()),
                              ("finetune_mode", "head", ["full", "top", "linear"])]:
        params = tiny_params()
        params["train"][key] = wrong
        path = write_params(tmp_path / f"{key}.yaml", params)
        with pytest.raises(ParamsError) as caught:
            load_params(path)
        message = str(caught.value)
        assert f"train.{key}" in message and repr(wrong) in message, message
        assert all(name in message for name in valid), message
        params["train"][key] = valid[-1]
        assert load_params(write_params(path, params))["train"][key] == valid[-1]


@pytest.mark.parametrize("kind", ["class_balances", "finetune_modes"])
def test_trickbench_list_shows_the_new_kinds(kind: str, capsys) -> None:
    assert main(["list", kind]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == {"class_balances": ["none", "oversample", "capped_oversample", "undersample",
                                        "class_weighted_loss", "sqrt_class_weighted_loss"],
                     "finetune_modes": ["full", "top", "linear"]}[kind]


# ------------------------------------------------------------------------------------------ early stopping

def test_early_stopping_stops_after_patience_epochs_without_a_new_best_and_restores_the_best() -> None:
    model = nn.Linear(2, 1)
    stopping = EarlyStopping(patience=2)
    weights_at = {}
    for epoch, val_loss in enumerate([1.0, 0.8, 0.9, 0.8]):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        weights_at[epoch] = model.weight.clone()
        stopped = stopping.update(val_loss, model)
        assert stopped == (epoch == 3), epoch  # 0.8 again is no improvement: the second bad epoch
    assert (stopping.best_val, stopping.bad_epochs) == (0.8, 2)
    stopping.restore_best(model)
    assert torch.equal(model.weight, weights_at[1])


def test_early_stopping_that_has_not_stopped_leaves_the_weights_and_none_never_stops() -> None:
    model = nn.Linear(2, 1)
    running = EarlyStopping(patience=3)
    running.update(1.0, model)
    with torch.no_grad():
        model.weight.fill_(7.0)
    running.update(2.0, model)
    running.restore_best(model)  # not stopped: the last weights stay
    assert torch.all(model.weight == 7.0)
    off = EarlyStopping(patience=None)
    assert not any(off.update(loss, model) for loss in [1.0, 2.0, 3.0, 4.0])
    assert off.best_state is None and off.best_val == math.inf


# ---------------------------------------------------------------------------------------------- TrainState

def a_state(status: Status = Status.COMPLETED, stopped: bool = False) -> TrainState:
    generator = torch.Generator().manual_seed(3)
    return TrainState(
        config_digest="digest", device_type="cpu", init_stats=[{"layer": "act1", "mean": 0.5, "std": 1.0}],
        early_stopping=EarlyStopping(2, 0.25, 1, {"w": torch.ones(3)}, stopped), epoch=3,
        model={"w": torch.arange(3.0)}, optimizer={"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        scheduler={"last_epoch": 3}, rng=rng_state(generator, torch.device("cpu")),
        history=[{"epoch": e, "val_loss": 1.0 / e} for e in (1, 2, 3)], batch_losses=BatchLosses([torch.tensor([2.5]), torch.tensor([]), torch.tensor([0.75, 0.5])]),
        snapshots={"val": [torch.zeros(2, 2)], "test": [torch.ones(2, 2)]}, status=status, mlflow_run_id="run-1")


def assert_same_state(a: TrainState, b: TrainState) -> None:
    for name in ("config_digest", "device_type", "init_stats", "epoch", "optimizer", "scheduler", "history",
                 "status", "mlflow_run_id"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.batch_losses.rows() == b.batch_losses.rows()
    assert torch.equal(a.model["w"], b.model["w"])
    assert torch.equal(a.rng["generator"], b.rng["generator"]) and torch.equal(a.rng["torch_cpu"], b.rng["torch_cpu"])
    assert all(torch.equal(x, y) for split in ("val", "test") for x, y in zip(a.snapshots[split], b.snapshots[split]))
    sa, sb = a.early_stopping, b.early_stopping
    assert (sa.patience, sa.best_val, sa.bad_epochs, sa.stopped) == (sb.patience, sb.best_val, sb.bad_epochs, sb.stopped)
    assert torch.equal(sa.best_state["w"], sb.best_state["w"])


@pytest.mark.parametrize("status, stopped, written", [(Status.COMPLETED, False, "completed"),
                                                      (Status.COMPLETED, True, EARLY_STOPPED),
                                                      (Status.DIVERGED, False, "diverged")])
def test_a_train_state_survives_its_file(tmp_path: Path, status: Status, stopped: bool, written: str) -> None:
    path = tmp_path / "checkpoint.pt"
    state = a_state(status, stopped)
    state.save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["status"] == written and torch.equal(raw["batch_losses"]["steps"], torch.tensor([1, 0, 2]))
    assert (raw["best_val"], raw["bad_epochs"], raw["epoch"]) == (0.25, 1, 3)
    loaded = TrainState.load(path, {"cpu": "digest"}, "cpu", patience=2)
    assert_same_state(state, loaded)
    assert TrainState.load(path, {"cpu": "another configuration"}, "cpu", patience=2) is None
    assert TrainState.load(tmp_path / "none.pt", {"cpu": "digest"}, "cpu", patience=2) is None


def test_a_checkpoint_of_another_device_type_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    a_state().save(path)
    digests = {"cpu": "digest", "cuda": "digest on cuda"}
    assert TrainState.load(path, digests, "cpu", patience=2).epoch == 3  # its own device type: resumed
    before = path.read_bytes()
    with pytest.raises(DataError) as caught:  # a CUDA job meets this CPU checkpoint of its configuration
        TrainState.load(path, digests, "cuda", patience=2)
    message = str(caught.value)
    assert message.startswith(f"{path}: checkpoint written on cpu, this run is on cuda") and "\n" not in message
    assert path.read_bytes() == before
    # the same digest but another device type recorded (a caller whose digest leaves the device out)
    save_checkpoint(path, {**torch.load(path, weights_only=True), "device_type": "cuda"})
    before = path.read_bytes()
    with pytest.raises(DataError, match="checkpoint written on cuda, this run is on cpu"):
        TrainState.load(path, {"cpu": "digest"}, "cpu", patience=2)
    assert path.read_bytes() == before
