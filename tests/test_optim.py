"""Optimizers and learning-rate schedules by name: the right torch classes, the formulas' learning rate
per epoch, the seed's divide-on-plateau rule, and state that survives a checkpoint (resume)."""
from __future__ import annotations

import io
import math

import jsonschema
import pytest
import torch
from torch import nn

from conftest import train_config, train_schema
from trickbench.train.optim import OPTIMIZERS, SCHEDULES, DivideOnPlateau, snapshot_epochs, step_schedule

LR = 0.1


def groups() -> list[dict]:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    return [{"params": [layer.weight], "weight_decay": 1e-3}, {"params": [layer.bias], "weight_decay": 0.0}]


def optimizer(name: str = "sgd", **overrides) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(groups(), train_config(**{"lr": LR, **overrides}))


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("rmsprop", torch.optim.RMSprop), ("adagrad", torch.optim.Adagrad)])
def test_each_name_builds_its_torch_optimizer(name: str, cls: type) -> None:
    built = optimizer(name, lr=0.03, momentum=0.8)
    assert type(built) is cls
    assert [g["lr"] for g in built.param_groups] == [0.03, 0.03]
    assert [g["weight_decay"] for g in built.param_groups] == [1e-3, 0.0]  # the groups' own decay is kept
    if name in ("sgd", "rmsprop"):
        assert all(g["momentum"] == 0.8 for g in built.param_groups)


@pytest.mark.parametrize("momentum, nesterov, expected", [(0.9, True, True), (0.9, False, False), (0.0, True, False)])
def test_sgd_momentum_and_nesterov(momentum: float, nesterov: bool, expected: bool) -> None:
    built = optimizer("sgd", momentum=momentum, nesterov=nesterov)
    assert all(g["momentum"] == momentum and g["nesterov"] is expected for g in built.param_groups)


def test_adam_uses_the_default_betas() -> None:
    assert optimizer("adam").param_groups[0]["betas"] == (0.9, 0.999)


def lrs(name: str, epochs: int, val_losses: list[float] | None = None, **overrides) -> list[float]:
    """The learning rate of each epoch, stepping the schedule as the loop does (after each epoch)."""
    config = train_config(**{"lr": LR, "epochs": epochs, "schedule": name, **overrides})
    opt = OPTIMIZERS.get(config["optimizer"])(groups(), config)
    scheduler = SCHEDULES.get(name)(opt, config)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[1]["lr"] == out[-1]  # every group follows the schedule
        opt.step()  # no gradients: changes nothing, but keeps the order optimizer -> schedule
        step_schedule(scheduler, val_losses[epoch] if val_losses else 1.0)
    return out


def test_constant_schedule() -> None:
    assert lrs("constant", 6) == [LR] * 6


def test_step_schedule_follows_its_formula() -> None:
    got = lrs("step", 12, step_size=3, gamma=0.2)
    assert got == pytest.approx([LR * 0.2 ** (epoch // 3) for epoch in range(12)], rel=1e-12)


def test_cosine_schedule_follows_its_formula() -> None:
    epochs = 10
    got = lrs("cosine", epochs)
    assert got == pytest.approx([LR * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)], rel=1e-9)


def test_cosine_restarts_anneal_each_cycle_then_start_again() -> None:
    got = lrs("cosine_restarts", 12, step_size=4)
    assert got == pytest.approx([LR * (1 + math.cos(math.pi * (e % 4) / 4)) / 2 for e in range(12)], rel=1e-9)
    assert got[4] == got[8] == LR  # the warm restarts


@pytest.mark.parametrize("schedule, step_size, expected", [
    ("cosine", 10, {28, 29, 30}),           # the last epochs: a single annealing, one model three times
    ("step", 10, {28, 29, 30}),
    ("cosine_restarts", 10, {10, 20, 30}),  # the end of each cycle, where the rate is near 0
    ("cosine_restarts", 15, {15, 30}),      # fewer cycles than snapshots: one per cycle
])
def test_snapshot_epochs_follow_the_schedule(schedule: str, step_size: int, expected: set[int]) -> None:
    assert snapshot_epochs(train_config(schedule=schedule, step_size=step_size, epochs=30, snapshots=3)) == expected


# validation loss per epoch: best 1.0 at epoch 0, then 0.9, 0.8; equal is no improvement
VAL = [1.0, 0.9, 0.9, 0.95, 0.8, 0.8, 0.85, 0.9, 0.7, 0.7, 0.7, 0.7, 0.7]


@pytest.mark.parametrize("factor", [0.5, 0.2])  # the seed: divide by 2 or by 5
def test_plateau_divides_after_patience_epochs_without_improvement(factor: float) -> None:
    got = lrs("plateau", len(VAL), VAL, plateau_factor=factor, plateau_patience=2)
    # epochs 2, 3 do not improve on 0.9 -> divided from epoch 4; 5, 6 not on 0.8 -> from epoch 7;
    # 7 no better (count 1) then 8 improves (0.7), 9, 10 do not -> from epoch 11; 11, 12 -> from epoch 13
    expected = [LR] * 4 + [LR * factor] * 3 + [LR * factor ** 2] * 4 + [LR * factor ** 3] * 2
    assert got == pytest.approx(expected, rel=1e-12)


def test_plateau_with_patience_one_divides_at_the_first_epoch_without_improvement() -> None:
    got = lrs("plateau", 5, [1.0, 1.0, 0.5, 0.6, 0.4], plateau_patience=1, plateau_factor=0.5)
    assert got == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4])


def test_plateau_counts_any_decrease_as_improvement() -> None:
    # torch's default threshold (1e-4 relative) would call these tiny gains a plateau
    losses = [1.0 - 1e-7 * epoch for epoch in range(8)]
    assert lrs("plateau", 8, losses, plateau_patience=1) == [LR] * 8


def test_plateau_patience_must_be_positive() -> None:
    with pytest.raises(ValueError, match="plateau_patience"):
        DivideOnPlateau(optimizer(), factor=0.5, patience=0)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(train_schema()).validate({"plateau_patience": 0})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(train_schema()).validate({"plateau_factor": 1.0})


def round_trip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as the loop's checkpoints go."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("optimizer_name", OPTIMIZERS.names())
@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_schedule_and_optimizer_state_survive_a_checkpoint(schedule: str, optimizer_name: str) -> None:
    """Stop after 5 of 12 epochs, save, rebuild from the config, load: the rest of the learning rates and
    parameters are those of the uninterrupted run."""
    config = train_config(lr=LR, epochs=12, schedule=schedule, optimizer=optimizer_name, step_size=2, gamma=0.5,
                          plateau_patience=1)
    val = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.9, 0.7, 0.75, 0.8, 0.8, 0.6]

    def build() -> tuple[nn.Linear, torch.optim.Optimizer, object]:
        torch.manual_seed(0)
        layer = nn.Linear(3, 2)
        opt = OPTIMIZERS.get(optimizer_name)([{"params": list(layer.parameters()), "weight_decay": 0.0}], config)
        return layer, opt, SCHEDULES.get(schedule)(opt, config)

    def epoch(layer: nn.Linear, opt: torch.optim.Optimizer, scheduler: object, e: int) -> float:
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad()
        layer(torch.ones(4, 3) * (e + 1)).square().mean().backward()
        opt.step()
        step_schedule(scheduler, val[e])
        return lr

    layer, opt, scheduler = build()
    whole = [epoch(layer, opt, scheduler, e) for e in range(12)]
    final = [p.detach().clone() for p in layer.parameters()]

    layer, opt, scheduler = build()
    first = [epoch(layer, opt, scheduler, e) for e in range(5)]
    saved = round_trip({"model": layer.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()})
    layer, opt, scheduler = build()
    layer.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rest = [epoch(layer, opt, scheduler, e) for e in range(5, 12)]
    assert first + rest == whole
    assert all(torch.equal(a, b) for a, b in zip(layer.parameters(), final))
    if schedule != "constant":
        assert len(set(whole)) > 1  # the schedule did change the learning rate


def test_registries_have_one_line_definitions() -> None:
    assert set(OPTIMIZERS.names()) == {"sgd", "adam", "rmsprop", "adagrad"}
    assert set(SCHEDULES.names()) == {"constant", "step", "cosine", "cosine_restarts", "plateau"}
    for entry in [*OPTIMIZERS, *SCHEDULES]:
        assert entry.description and "\n" not in entry.description
