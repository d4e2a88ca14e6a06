"""The moderate class-balance remedies (issue 24): square-root class weights and capped oversampling,
checked against their definitions on an imbalanced split with a class the split lacks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

# the split of the other class-balance tests: counts per class 5, 20, 3, 0 (absent), 12
from test_loop_parts import COUNTS, LABELS, NUM_CLASSES, drawn_per_class, epoch_order
from trickbench.train import balance as B
from trickbench.train.balance import CLASS_BALANCES


def test_capped_oversample_draws_each_class_up_to_the_largest_or_its_cap() -> None:
    assert B.OVERSAMPLE_CAP == 4
    order = epoch_order("capped_oversample")
    # min(20, 4 x count): 5 -> 20, 20 -> 20, 3 -> 12 (the cap binds), absent -> 0, 12 -> 20
    assert drawn_per_class(order) == [20, 20, 12, 0, 20]
    assert set(order.tolist()) == set(range(len(LABELS)))  # every image at least once
    assert CLASS_BALANCES.get("capped_oversample")(LABELS, NUM_CLASSES).loss_weight is None


def test_capped_oversample_is_shuffled_and_fresh_each_epoch() -> None:
    order = epoch_order("capped_oversample")
    assert not torch.equal(order, epoch_order("capped_oversample", seed=1))
    labels_in_order = LABELS[order]
    assert not torch.equal(labels_in_order, labels_in_order.sort().values)  # classes mixed, not in blocks
    assert torch.equal(order, epoch_order("capped_oversample"))  # the generator alone decides


def test_capped_oversample_equals_oversample_when_no_class_is_below_a_quarter_of_the_largest() -> None:
    labels = torch.tensor([0] * 8 + [1] * 3 + [2] * 5)
    for name in ("oversample", "capped_oversample"):
        order = CLASS_BALANCES.get(name)(labels, 3).epoch_order(torch.Generator().manual_seed(4))
        assert torch.bincount(labels[order], minlength=3).tolist() == [8, 8, 8]
    orders = [CLASS_BALANCES.get(name)(labels, 3).epoch_order(torch.Generator().manual_seed(4))
              for name in ("oversample", "capped_oversample")]
    assert torch.equal(*orders)  # the same draws from the same generator


def test_sqrt_class_weights_are_inverse_square_roots_with_mean_one_over_the_images() -> None:
    weight = CLASS_BALANCES.get("sqrt_class_weighted_loss")(LABELS, NUM_CLASSES).loss_weight
    counts = torch.tensor(COUNTS, dtype=torch.float32)
    present = counts > 0
    assert weight[LABELS].mean() == pytest.approx(1.0)
    product = weight[present] * counts[present].sqrt()  # constant: w proportional to 1 / sqrt(n)
    torch.testing.assert_close(product, torch.full_like(product, product[0].item()))
    assert weight[1] < 1 < weight[2]  # the largest class counts less than an image, the rarest more
    # half-way (on a log scale) between no weights and class_weighted_loss
    full = B.class_weights(LABELS, NUM_CLASSES)
    assert weight[2] / weight[1] == pytest.approx((full[2] / full[1]).sqrt().item())
    assert torch.isfinite(weight).all()  # the absent class too


def test_sqrt_class_weighted_loss_keeps_every_image_once_and_weighs_the_cross_entropy() -> None:
    order = epoch_order("sqrt_class_weighted_loss")
    assert sorted(order.tolist()) == list(range(len(LABELS)))
    weight = CLASS_BALANCES.get("sqrt_class_weighted_loss")(LABELS, NUM_CLASSES).loss_weight
    logits = torch.randn(len(LABELS), NUM_CLASSES, generator=torch.Generator().manual_seed(2))
    losses = F.cross_entropy(logits, LABELS, reduction="none")
    expected = (weight[LABELS] * losses).sum() / weight[LABELS].sum()
    torch.testing.assert_close(F.cross_entropy(logits, LABELS, weight=weight), expected)
