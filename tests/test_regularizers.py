"""Regularizers against their definitions (reproduction.md section 7; the seed's regularisation section).

L2 is ½λ‖w‖² on conv/linear weights only, applied as the optimizer's weight decay; L1 adds λ·sign(w);
max-norm projects every unit onto ‖w‖₂ ≤ c after each step; early stopping stops after `patience`
epochs without a new best validation loss and restores the best weights.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import digits, digits_stats, run, train_config
from trickbench.data.prepared import Prepared
from trickbench.nn.activations import prelu_parameters
from trickbench.train.loop import build_network, parameter_groups, train
from trickbench.train.optim import OPTIMIZERS
from trickbench.train.regularizers import (
    REGULARIZERS, Regularization, apply_max_norm, l1_penalty, penalized_weights, regularization,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def network(image_shape=(8, 8, 1), num_classes=10, **overrides) -> tuple[nn.Module, Regularization, dict]:
    config = train_config(**overrides)
    reg = regularization(config)
    torch.manual_seed(0)
    model = build_network(config, reg, image_shape, num_classes).double()
    with torch.no_grad():  # non-zero biases, so that decaying them would show
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
    return model, reg, config


def batch(image_shape=(8, 8, 1), n=16, num_classes=10, seed=1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    h, w, c = image_shape
    x = torch.randn(n, c, h, w, generator=generator, dtype=torch.float64)
    return x, torch.randint(num_classes, (n,), generator=generator)


def is_weight(name: str, model: nn.Module) -> bool:
    module = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(module, (nn.Conv2d, nn.Linear)) and name.endswith("weight")


# --------------------------------------------------------------------------------------- the registry

@pytest.mark.parametrize("names, expected", [
    ([], Regularization()),
    (["none"], Regularization()),
    (["l2"], Regularization(l2=0.1)),
    (["l1"], Regularization(l1=0.01)),
    (["elastic_net"], Regularization(l1=0.01, l2=0.1)),
    (["max_norm"], Regularization(max_norm=3.5)),
    (["dropout"], Regularization(dropout=0.3)),
    (["batch_norm"], Regularization(batch_norm=True)),
    (["early_stopping"], Regularization(early_stopping_patience=4)),
    (["augmentation"], Regularization(augmentations=["flip", "hsv"])),
    (["l2", "max_norm", "dropout", "batch_norm"], Regularization(l2=0.1, max_norm=3.5, dropout=0.3, batch_norm=True)),
])
def test_each_name_switches_on_its_part(names, expected) -> None:
    config = train_config(regularizers=names, l2=0.1, l1=0.01, max_norm=3.5, dropout=0.3, patience=4,
                          regularizer_augmentations=["flip", "hsv"])
    assert regularization(config) == expected


def test_every_regularizer_has_a_one_line_definition() -> None:
    assert {"none", "l2", "l1", "elastic_net", "max_norm", "dropout", "batch_norm", "early_stopping",
            "augmentation"} <= set(REGULARIZERS.names())
    assert all(entry.description and "\n" not in entry.description for entry in REGULARIZERS)


def test_dropout_and_batch_norm_shape_the_network() -> None:
    plain, _, _ = network(regularizers=[])
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm2d)) for m in plain.modules())
    model, _, _ = network(regularizers=["dropout", "batch_norm"], dropout=0.3)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.3 for m in dropouts)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    assert all(m.bias is None for m in convs)  # the norm layer's shift replaces the bias


# ---------------------------------------------------------------------------------------------------- L2

@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_l2_weight_decay_is_the_gradient_of_half_lambda_w_squared_on_weights_only(optimizer: str) -> None:
    """Two steps with the run's parameter groups (decay λ) equal two steps on loss + ½λ Σ‖w‖² over the
    conv/linear weights without any decay: biases and PReLU slopes get no penalty."""
    lam = 0.05
    decayed, reg, config = network(activation="prelu", regularizers=["l2"], l2=lam, optimizer=optimizer,
                                   lr=0.01, momentum=0.9)
    explicit, plain = copy.deepcopy(decayed), copy.deepcopy(decayed)
    opt_decayed = OPTIMIZERS.get(optimizer)(parameter_groups(decayed, reg, config), config)
    opt_explicit = OPTIMIZERS.get(optimizer)(parameter_groups(explicit, Regularization(), config), config)
    opt_plain = OPTIMIZERS.get(optimizer)(parameter_groups(plain, Regularization(), config), config)
    assert [g["weight_decay"] for g in opt_explicit.param_groups] == [0.0, 0.0]
    x, y = batch()
    for _ in range(2):
        for model, opt, penalty in ((decayed, opt_decayed, False), (explicit, opt_explicit, True),
                                    (plain, opt_plain, False)):
            loss = nn.functional.cross_entropy(model(x), y)
            if penalty:
                loss = loss + 0.5 * lam * sum((w ** 2).sum() for n, w in model.named_parameters()
                                              if is_weight(n, model))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, a), b, c in zip(decayed.named_parameters(), explicit.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
        if is_weight(name, decayed):
            assert not torch.equal(a, c), f"{name}: decay had no effect"


@pytest.mark.parametrize("overrides, decayed_slopes", [
    (dict(activation="prelu"), False),
    (dict(activation="prelu", weight_decay_on_prelu=True), True),
    (dict(activation="relu", regularizers=["l2", "batch_norm"]), False),
])
def test_l2_shrinks_weights_and_nothing_else(overrides, decayed_slopes) -> None:
    """With a zero loss gradient, one SGD step with decay λ and lr η multiplies every conv/linear weight by
    (1 - ηλ) and leaves biases, norm parameters and (unless weight_decay_on_prelu) PReLU slopes as they were."""
    lr, lam = 0.1, 0.5
    model, reg, config = network(**{"regularizers": ["l2"], **overrides}, l2=lam, lr=lr, momentum=0.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    slopes = {id(p) for p in prelu_parameters(model)}
    optimizer = OPTIMIZERS.get("sgd")(parameter_groups(model, reg, config), config)
    decay_group = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert optimizer.param_groups[0]["weight_decay"] == lam and optimizer.param_groups[1]["weight_decay"] == 0
    x, _ = batch()
    (model(x) * 0.0).sum().backward()  # every gradient exists and is 0
    optimizer.step()
    checked = set()
    for name, p in model.named_parameters():
        shrinks = is_weight(name, model) or (decayed_slopes and id(p) in slopes)
        assert (id(p) in decay_group) == shrinks, name
        expected = before[name] * (1 - lr * lam) if shrinks else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=0, msg=name)
        checked.add("slope" if id(p) in slopes else "weight" if is_weight(name, model) else "other")
    assert checked == ({"weight", "slope", "other"} if overrides["activation"] == "prelu" else {"weight", "other"})


# ---------------------------------------------------------------------------------------------------- L1

def test_l1_adds_lambda_sign_w_to_the_gradient_of_weights_only() -> None:
    lam = 0.003
    model, _, _ = network(activation="prelu")
    with torch.no_grad():
        model.blocks.stage1.conv1.weight[0, 0, 0, 0] = 0.0  # sign(0) = 0
    x, y = batch()

    def gradients(with_l1: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if with_l1:
            loss = loss + l1_penalty(penalized_weights(model), lam)
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain, penalized = gradients(False), gradients(True)
    weights = {id(w) for w in penalized_weights(model)}
    assert len(weights) == 5  # 4 convolutions and the classifier of small_cnn
    for name, p in model.named_parameters():
        expected = lam * torch.sign(p.detach()) if id(p) in weights else torch.zeros_like(p)
        torch.testing.assert_close(penalized[name] - plain[name], expected, rtol=0, atol=1e-12, msg=name)
    assert penalized["blocks.stage1.conv1.weight"][0, 0, 0, 0] == plain["blocks.stage1.conv1.weight"][0, 0, 0, 0]


def weight_norms(state: dict[str, torch.Tensor], p: int) -> float:
    return sum(t.abs().pow(p).sum().item() for k, t in state.items()
               if k.endswith("weight") and t.dim() > 1)


@pytest.mark.parametrize("name, p", [("l1", 1), ("l2", 2), ("elastic_net", 1), ("elastic_net", 2)])
def test_the_loop_applies_the_penalty(name: str, p: int) -> None:
    common = dict(epochs=2, l1=3e-3, l2=3e-2, lr=0.05)
    baseline = run(regularizers=[], **common)
    penalized = run(regularizers=[name], **common)
    assert weight_norms(penalized.model_state, p) < 0.9 * weight_norms(baseline.model_state, p)


# ---------------------------------------------------------------------------------------------- max-norm

def unit_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().flatten(1).norm(dim=1)


def test_max_norm_is_a_projection() -> None:
    weight = torch.tensor([[0.6, 0.8], [3.0, 4.0], [0.0, 0.0]])  # norms 1, 5, 0
    assert int(apply_max_norm([weight], 3.0)) == 1  # one unit was outside the ball
    assert torch.equal(weight[0], torch.tensor([0.6, 0.8]))  # inside the ball: untouched
    torch.testing.assert_close(weight[1], torch.tensor([1.8, 2.4]))  # onto the sphere, same direction
    assert torch.equal(weight[2], torch.zeros(2))


@pytest.mark.parametrize("model_name, width, image", [("small_cnn", 4, 8), ("nin", 8, 8), ("ndsb_net", 2, 32)])
def test_max_norm_holds_after_a_step_at_a_huge_learning_rate(model_name: str, width: int, image: int) -> None:
    c = 3.0
    shape = (image, image, 1)
    model, reg, config = network(shape, model=model_name, width=width, regularizers=["max_norm"], max_norm=c,
                                 lr=100.0, momentum=0.9)
    optimizer = OPTIMIZERS.get("sgd")(parameter_groups(model, reg, config), config)
    weights = penalized_weights(model)
    assert len(weights) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    x, y = batch(shape)
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        assert max(unit_norms(w).max().item() for w in weights) > c  # the step alone breaks the bound
        apply_max_norm(weights, reg.max_norm)
        for w in weights:  # every conv filter and every linear unit
            assert torch.all(unit_norms(w) <= c * (1 + 1e-9)), unit_norms(w)


def test_max_norm_holds_in_the_loop() -> None:
    c = 3.0
    result = run(regularizers=["max_norm"], max_norm=c, lr=100.0, momentum=0.9)
    units = [unit_norms(t) for k, t in result.model_state.items() if k.endswith("weight") and t.dim() > 1]
    assert len(units) == 5
    assert all(torch.all(n <= c * (1 + 1e-5)) for n in units)
    assert any(torch.any(n > 0.99 * c) for n in units)  # the bound was active
    assert result.metrics["max_norm_rescalings"] >= 1  # the premise of the max-norm claim: it binds
    assert result.metrics["max_norm_rescalings"] == sum(row["max_norm_rescaled"] for row in result.history)
    loose = run(regularizers=["max_norm"], max_norm=1e6)
    assert loose.metrics["max_norm_rescalings"] == 0  # a constraint that never binds says so
    unbounded = run(regularizers=[], lr=100.0, momentum=0.9)
    assert "max_norm_rescalings" not in unbounded.metrics
    assert unbounded.status == "diverged" or any(
        unit_norms(t).max() > c for k, t in unbounded.model_state.items() if k.endswith("weight") and t.dim() > 1)


# ---------------------------------------------------------------------------------------- early stopping

def partly_mislabelled_digits(fraction: float = 0.4) -> Prepared:
    """digits with the first 40 % of the validation labels shifted by one class: validation loss first
    falls, then rises as the network grows confident on the training labels (best at epoch 3 here)."""
    base = digits()
    labels = base.labels["val"].copy()
    shifted = int(fraction * len(labels))
    labels[:shifted] = (labels[:shifted] + 1) % 10
    return Prepared(base.images, {**base.labels, "val": labels}, base.class_names)


def test_early_stopping_stops_after_patience_epochs_and_restores_the_best_weights() -> None:
    patience, epochs = 3, 12
    common = dict(schedule="constant", lr=0.02, epochs=epochs)
    prepared = partly_mislabelled_digits()
    result = train(train_config(regularizers=["early_stopping"], patience=patience, **common), prepared,
                   digits_stats(), config_digest="early")
    assert result.status == "completed"
    val = [row["val_loss"] for row in result.history]
    best = int(np.argmin(val))
    assert best > 0, val  # a best that is not the first epoch, so restoring it means something
    assert len(val) == best + 1 + patience < epochs, val  # stopped `patience` epochs after the best
    assert all(v >= val[best] for v in val[best + 1:])
    assert result.metrics["epochs_run"] == len(val)
    # the restored weights are those after the best epoch: the same as a run that ends there
    assert result.metrics["val_loss"] == val[best] != val[-1]
    reference = train(train_config(**{**common, "epochs": best + 1}), prepared, digits_stats(), config_digest="ref")
    assert all(torch.equal(result.model_state[k], reference.model_state[k]) for k in reference.model_state)


def test_without_early_stopping_the_run_goes_on() -> None:
    result = train(train_config(schedule="constant", lr=0.02, epochs=7), partly_mislabelled_digits(),
                   digits_stats(), config_digest="no-early")
    assert len(result.history) == 7
