"""The committed presets' grid points keep their ids and configurations.

A new train key with a schema default enters every point's configuration, so every point's config digest
(and with it the run digest that decides whether a finished run is reused) would change, and every committed
run would be redone; a new data key with a default would change the data section that Snakemake's rerun
trigger and the prepare run's identity read. New components therefore come as registry entries and
module constants, and an optional data key without a default. When a preset is redesigned on purpose (and
its runs redone), update its line below.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from trickbench.grid import expand_grid
from trickbench.io import digest_json
from trickbench.params import load_params

REPO = Path(__file__).resolve().parents[1]

# preset -> (digest of its [study, point id, config digest] list, digest of its filled data section),
# first 16 hex digits, computed at 600ed77 (the commit before data.classes and the new components)
COMMITTED = {
    "default": ("19fb089bae3df74b", "56f9ae97b359a378"),
    "scaled-cifar10": ("a3c446356eb000ce", "c7b1c38a3ff161b6"),  # issue 24 item 5, runs at 8435114 (full test set)
    "scaled-ndsb": ("dbb606da425fc002", "c0da1cadac0fc367"),  # issue 24, runs at 908f790 (120 epochs)
    "seed-augmentations": ("21445381e1252756", "07d9bebe8e9857e6"),  # issue 24 item 5, runs at 2e438d0 (full test set)
    "seed-augmentations-v2": ("6da536c4095b8f9d", "53b6223646cce362"),  # issue 24, runs at 226749e, aafbe2f (colour)
    "ladder-1000": ("72eaeae9d6f02b08", "eb5bb3bdd1556238"),  # issue 24, runs at 79ec0a5 (160 epochs)
    "ladder-4000": ("aead1a1a224e1f72", "0769ff697f16f158"),  # issue 24, runs at 79ec0a5
    "ladder-2000": ("72eaeae9d6f02b08", "7b1ae976f9c29615"),  # issue 24, runs at aafbe2f (160 epochs)
    "seed-activation-speed": ("d91326995a1f5e10", "56f9ae97b359a378"),  # issue 24, runs at aafbe2f
    "seed-regularizers-v2": ("2efad28d0c3865fd", "53b6223646cce362"),  # issue 24, runs at aafbe2f
    "seed-learning-rates-v2": ("d7301d7736a71910", "53b6223646cce362"),  # issue 24, runs at aafbe2f
    "seed-transfer-source": ("a08f3f6fd625dbff", "8afee0d2795e16fb"),  # issue 24, runs at 976c74e
    "seed-transfer-small": ("a9c746c79dd01cbb", "61d0d03d3863feaa"),  # issue 24, runs at 7725d0b (fresh head)
    "seed-class-imbalance-v2": ("74b7568a47034e7d", "c0da1cadac0fc367"),  # issue 24, runs at 908f790
    "seed-transfer-large": ("08915f543c23c0d0", "cb1ab5d17b646485"),  # issue 24, runs at 7725d0b
    "seed-batchnorm": ("0f313a963b99328e", "096a7231e8aec0a0"),  # issue 24, runs at 7725d0b
    "seed-optimizers": ("ba3b727d2aa90154", "72e0eed2e1db38be"),  # issue 24, runs at 8435114
    "seed-optimizers-long": ("421cf25b731029e0", "72e0eed2e1db38be"),  # issue 24, runs at e2f22a2
    "seed-class-imbalance": ("cad0ec0bb33bb610", "c0da1cadac0fc367"),
    "seed-initializers": ("09f42a46d255be09", "56f9ae97b359a378"),
    "seed-learning-rates": ("57722cadf1f4e4ef", "07d9bebe8e9857e6"),  # issue 24 item 5, runs at 2e438d0 (full test set)
    "seed-regularizers": ("10b749cb6c8599b2", "07d9bebe8e9857e6"),  # issue 24 item 5, runs at 2e438d0 (full test set)
}


def params_of(preset: str) -> dict:
    return load_params(REPO / ("params.yaml" if preset == "default" else f"configs/{preset}.yaml"))


def results_of(preset: str) -> Path:
    return REPO / "results" / ("" if preset == "default" else preset)


def test_every_preset_with_committed_runs_is_pinned_here() -> None:
    with_runs = {path.parent.name for path in (REPO / "results").glob("*/runs.csv")} | {"default"}
    assert with_runs == set(COMMITTED)


@pytest.mark.parametrize("preset", sorted(COMMITTED))
def test_the_grid_points_are_those_of_the_committed_runs(preset: str) -> None:
    with open(results_of(preset) / "runs.csv", newline="") as handle:
        committed = sorted(f"{row['study']}/{row['point_id']}" for row in csv.DictReader(handle))
    assert sorted(point.key for point in expand_grid(params_of(preset))) == committed


@pytest.mark.parametrize("preset", sorted(COMMITTED))
def test_the_point_configurations_and_data_section_are_unchanged(preset: str) -> None:
    params = params_of(preset)
    points = digest_json([[p.study, p.point_id, p.config_digest] for p in expand_grid(params)])[:16]
    assert (points, digest_json(params["data"])[:16]) == COMMITTED[preset]
