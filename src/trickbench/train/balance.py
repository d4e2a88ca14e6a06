"""Class balance by name (seed: class imbalance): which training images an epoch draws, and how the
cross-entropy weighs each class.

Every registry entry is ``fn(labels, num_classes) -> ClassBalance`` for one training split (labels on the
training device). Its ``epoch_order(generator)`` is called once per epoch and draws from that generator
only, so a run's draws are the same whichever entry comes before it in a process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from trickbench.registry import Registry

CLASS_BALANCES = Registry("class_balance")


@dataclass(frozen=True)
class ClassBalance:
    """`epoch_order(generator)`: the sample indices of one epoch; `loss_weight`: the cross-entropy's weight
    per class (None: unweighted)."""

    epoch_order: Callable[[torch.Generator], torch.Tensor]
    loss_weight: torch.Tensor | None = None


def permutation(labels: torch.Tensor) -> Callable[[torch.Generator], torch.Tensor]:
    """Every image once, in a fresh random order."""
    return lambda generator: torch.randperm(len(labels), generator=generator, device=labels.device)


Draw = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def class_resample(labels: torch.Tensor, num_classes: int, per_class_of: Callable[[torch.Tensor], torch.Tensor],
                   draw: Draw) -> Callable[[torch.Generator], torch.Tensor]:
    """Each present class drawn to the same count, `per_class_of(counts of the present classes)`, by
    `draw(members, per_class, generator)`, class by class in label order; then all shuffled together."""
    def epoch_order(generator: torch.Generator) -> torch.Tensor:
        counts = torch.bincount(labels, minlength=num_classes)
        per_class = int(per_class_of(counts[counts > 0]))
        order = torch.cat([draw(torch.nonzero(labels == cls).flatten(), per_class, generator)
                           for cls in torch.nonzero(counts > 0).flatten().tolist()])
        return order[torch.randperm(len(order), generator=generator, device=labels.device)]

    return epoch_order


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes x count of the class): the weight each class would need to count as much as a balanced
    split's (a class absent from the split counts as one image)."""
    counts = torch.bincount(labels, minlength=num_classes).float().clamp_min(1)
    return len(labels) / (num_classes * counts)


@CLASS_BALANCES.register("none", "every training image once per epoch, in a fresh random order")
def no_balance(labels: torch.Tensor, num_classes: int) -> ClassBalance:
    return ClassBalance(permutation(labels))


def _all_then_with_replacement(members: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    extra = torch.randint(len(members), (per_class - len(members),), generator=generator, device=members.device)
    return torch.cat([members, members[extra]])


@CLASS_BALANCES.register("oversample", "every class as often as the largest one per epoch: each of its images once, "
                         "the rest drawn with replacement (the epoch is longer than the training set)")
def oversample(labels: torch.Tensor, num_classes: int) -> ClassBalance:
    return ClassBalance(class_resample(labels, num_classes, torch.max, _all_then_with_replacement))


def _without_replacement(members: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    return members[torch.randperm(len(members), generator=generator, device=members.device)[:per_class]]


@CLASS_BALANCES.register("undersample", "every class as often as the smallest one per epoch: a fresh random "
                         "subset of each larger class (the epoch is shorter than the training set)")
def undersample(labels: torch.Tensor, num_classes: int) -> ClassBalance:
    return ClassBalance(class_resample(labels, num_classes, torch.min, _without_replacement))


@CLASS_BALANCES.register("class_weighted_loss", "every training image once per epoch; the cross-entropy weighs "
                         "each class by n / (classes x its count)")
def class_weighted_loss(labels: torch.Tensor, num_classes: int) -> ClassBalance:
    return ClassBalance(permutation(labels), class_weights(labels, num_classes))
