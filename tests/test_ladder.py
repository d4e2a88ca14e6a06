"""The scale ladder (trickbench.claims.ladder): every template claim is tested again on every rung, the rungs'
presets differ only in their training images, and the figure draws each rung's effect and interval at its
training images with Xu et al.'s difference at 50,000."""
from __future__ import annotations

import csv
import math
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from trickbench.claims import COLUMNS, registered
from trickbench.claims.catalogue import FITS
from trickbench.claims.ladder import PAPER_IMAGES, RUNGS, TEMPLATES, ladder_figure, ladder_table
from trickbench.grid import expand_grid
from trickbench.params import load_params

REGISTERED = registered()
BY_ID = {c.claim_id: c for c in REGISTERED}
LADDER = [c for c in REGISTERED if c.rung is not None]


def test_every_template_is_tested_again_on_every_rung_and_nowhere_else():
    assert sorted(c.rung for c in LADDER) == sorted((t, n) for t in TEMPLATES for n in RUNGS.values())
    kept = {f.name for f in fields(LADDER[0])} - {"claim_id", "statement", "preset", "study", "where", "rung"}
    for copy in LADDER:
        template = BY_ID[copy.rung[0]]
        assert template.rung is None and copy.preset in RUNGS and RUNGS[copy.preset] == copy.rung[1]
        assert {k: getattr(copy, k) for k in kept} == {k: getattr(template, k) for k in kept}, copy.claim_id
        assert copy.axis not in copy.where  # the other axis is held at the control's level


BASE_EPOCHS = 80
# The rung rule: 80 epochs, doubled until the ReLU control fits (the claims' FITS premise: mean training
# error <= 0.05). The tries that missed, in git: (epochs, the ReLU control's mean training error).
MISSED = {"ladder-1000": [(80, 0.17)], "ladder-2000": [(80, 0.054)], "ladder-4000": []}


def _comparable(params):
    """A rung's params without what names the rung (paths, tracking, descriptions) or is the rung (its
    images, and its epochs, which follow from them)."""
    params = {**params, "paths": None, "tracking": None, "data": {**params["data"], "train_per_class": None},
              "train": {**params["train"], "epochs": None}}
    params["studies"] = {name: {**study, "description": None} for name, study in params["studies"].items()}
    return params


def test_the_rungs_differ_only_in_their_training_images_and_the_epochs_these_need():
    loaded = {preset: load_params(REPO / "configs" / f"{preset}.yaml") for preset in RUNGS}
    first = next(iter(loaded.values()))
    for preset, params in loaded.items():
        assert params["data"]["train_per_class"] * 10 == RUNGS[preset], preset
        tries = [epochs for epochs, train_error in MISSED[preset] if not FITS.holds(train_error)]
        assert tries == [BASE_EPOCHS * 2**k for k in range(len(MISSED[preset]))], preset
        assert params["train"]["epochs"] == BASE_EPOCHS * 2 ** len(tries), preset
        assert params["data"]["options"]["test_archive"].endswith("cifar10_test.zip")  # the full test set
        assert _comparable(params) == _comparable(first), preset
        points = [p.point_id for p in expand_grid(params)]
        assert points == [p.point_id for p in expand_grid(first)] and len(points) == 15


def test_each_committed_rung_trained_until_its_relu_control_fits():
    """The rule's stop: the committed rung's ReLU control, at the epochs of its preset, fits (mean <= 0.05)."""
    for preset in RUNGS:
        with open(REPO / "results" / preset / "runs.csv", newline="") as handle:
            control = [row for row in csv.DictReader(handle)
                       if row["activation"] == "relu" and row["augmentations"] == "none"]
        epochs = load_params(REPO / "configs" / f"{preset}.yaml")["train"]["epochs"]
        assert len(control) == 3 and {float(row["epochs_run"]) for row in control} == {epochs}, preset
        assert FITS.holds(sum(float(row["train_error"]) for row in control) / 3), preset


def _table(effects):
    """A claims table of the ladder's claims: effects[images] for each rung, an interval of ±0.01, one rung not run."""
    rows = []
    for c in LADDER:
        images = c.rung[1]
        effect = effects.get(images, math.nan)
        rows.append({**{k: math.nan for k in COLUMNS}, "claim_id": c.claim_id, "preset": c.preset, "metric": c.metric,
                     "n": 0 if math.isnan(effect) else 3, "effect": effect, "ci_low": effect - 0.01,
                     "ci_high": effect + 0.01, "sesoi": 0.0125, "premises": "",
                     "verdict": "not run" if math.isnan(effect) else "underpowered",
                     "paper_effect": -0.02 if c.paper else math.nan, "orientation": c.orientation})
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_figure_draws_each_rung_at_its_training_images_with_its_interval():
    ladder = ladder_table(_table({1000: 0.03, 4000: -0.01}), REGISTERED)
    assert list(ladder["template"].drop_duplicates()) == list(TEMPLATES)
    assert (ladder.groupby("template")["images"].apply(list) == [sorted(RUNGS.values())] * len(TEMPLATES)).all()
    figure = ladder_figure(ladder)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == len(TEMPLATES)
    lines = {line.get_gid(): line for ax in panels for line in ax.lines if line.get_gid()}
    for template in TEMPLATES:
        low = lines[f"effect:ladder-1000-{template}"]
        assert (low.get_xdata()[0], low.get_ydata()[0]) == (1000, pytest.approx(0.03))
        assert np.allclose(lines[f"ci:ladder-4000-{template}"].get_ydata(), [-0.02, 0.0])
        assert f"effect:ladder-2000-{template}" not in lines  # not run: nothing drawn
        has_paper = BY_ID[template].paper is not None
        assert (f"paper:{template}" in lines) == has_paper
        if has_paper:
            assert lines[f"paper:{template}"].get_xdata()[0] == PAPER_IMAGES
    assert "paper:aug-flip-crop-reduces-test-error" not in lines


def test_the_committed_ladder_table_is_the_claims_tables_rows():
    committed = pd.read_csv(REPO / "results" / "ladder.csv")
    claims = pd.read_csv(REPO / "results" / "claims.csv").set_index("claim_id")
    assert len(committed) == len(LADDER)
    for row in committed.itertuples(index=False):
        assert row.verdict == claims.loc[row.claim_id, "verdict"]
        assert row.effect == pytest.approx(claims.loc[row.claim_id, "effect"], nan_ok=True)
