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

# capped_oversample: a class is drawn at most this many times its own size per epoch, so a rare class is
# repeated a few times, not hundreds (a module constant, not a train key: a new train key with a default
# would change every grid point's config digest, and with it every committed run's)
OVERSAMPLE_CAP = 4


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
    """Each present class drawn to its count in `per_class_of(counts of the present classes)` (one count
    for all, or one per class), by `draw(members, per_class, generator)`, class by class in label order;
    then all shuffled together."""
    def epoch_order(generator: torch.Generator) -> torch.Tensor:
        counts = torch.bincount(labels, minlength=num_classes)
        present = counts[counts > 0]
        targets = torch.broadcast_to(per_class_of(present), present.shape).tolist()
        order = torch.cat([draw(torch.nonzero(labels == cls).flatten(), int(per_class), generator)
                           for cls, per_class in zip(torch.nonzero(counts > 0).flatten().tolist(), targets)])
        return order[torch.randperm(len(order), generator=generator, device=labels.device)]

    return epoch_order


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes x count of the class): the weight each class would need to count as much as a balanced
    split's (a class absent from the split counts as one image)."""
    counts = torch.bincount(labels, minlength=num_classes).float().clamp_min(1)
    return len(labels) / (num_classes * counts)


def sqrt_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Weights proportional to 1 / sqrt(count of the class), scaled so that their mean over the training
    images is 1 (a class absent from the split counts as one image)."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = counts.clamp_min(1).rsqrt()
    return weights * len(labels) / (counts * weights).sum()


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


def capped_counts(counts: torch.Tensor) -> torch.Tensor:
    """Images of each class per epoch under capped_oversample: min(largest class, OVERSAMPLE_CAP x its own)."""
    return torch.minimum(counts.max(), OVERSAMPLE_CAP * counts)


@CLASS_BALANCES.register("capped_oversample", "oversampling at moderate strength: each class drawn min(largest "
                         f"class, {OVERSAMPLE_CAP} x its size) times per epoch, each of its images once and the "
                         "rest with replacement")
def capped_oversample(labels: torch.Tensor, num_classes: int) -> ClassBalance:
    return ClassBalance(class_resample(labels, num_classes, capped_counts, _all_then_with_replacement))


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


@CLASS_BALANCES.register("sqrt_class_weighted_loss", "class-weighted loss at moderate strength: every training "
                         "image once per epoch; the cross-entropy weighs each class by 1 / sqrt(its count), "
                         "scaled to mean 1 over the training images")
def sqrt_class_weighted_loss(labels: torch.Tensor, num_classes: int) -> ClassBalance:
    return ClassBalance(permutation(labels), sqrt_class_weights(labels, num_classes))
