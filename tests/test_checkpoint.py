"""The checkpoint format (train/checkpoint.py): batch losses as one tensor, format 2 still read, the
checkpoint cadence with a save on stop, and bit-exact resume from an epoch the cadence wrote."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch

from conftest import StopTraining, digits, digits_stats, stop_after, train_config
from trickbench.train.checkpoint import (
    CHECKPOINT_VERSION, BatchLosses, Cadence, EarlyStopping, TrainState, read_checkpoint,
)
from trickbench.io import digest_json
from trickbench.stages.train import checkpoint_cadence
from trickbench.train.loop import train

CONFIG = dict(epochs=4, batch_size=256)


def a_state(epochs: int, per_epoch: int) -> TrainState:
    losses = BatchLosses([torch.rand(per_epoch) for _ in range(epochs)])
    return TrainState("digest", "cpu", [], EarlyStopping(None), epoch=epochs, model={"w": torch.zeros(10)},
                      history=[{"epoch": e + 1, "val_loss": 0.5} for e in range(epochs)], batch_losses=losses)


def test_batch_losses_add_four_bytes_each_to_a_checkpoint(tmp_path: Path) -> None:
    """What made saving grow with the epoch: format 2 pickled every loss as a Python list (about 20 bytes
    and an object each); format 3 stores one float32 tensor."""
    sizes = {}
    for epochs in (1, 101):
        state = a_state(epochs, 350)
        state.history = []  # the history grows too, by one short row per epoch; here: the losses alone
        state.save(tmp_path / f"{epochs}.pt")
        sizes[epochs] = (tmp_path / f"{epochs}.pt").stat().st_size
    per_loss = (sizes[101] - sizes[1]) / (100 * 350)
    assert 4.0 <= per_loss < 4.1


def test_batch_losses_round_trip_as_rows(tmp_path: Path) -> None:
    state = a_state(3, 5)
    state.batch_losses.per_epoch[1] = torch.tensor([0.5, float("nan")])
    state.save(tmp_path / "c.pt")
    loaded = TrainState.load(tmp_path / "c.pt", {"cpu": "digest"}, "cpu", None)
    rows = loaded.batch_losses.rows()
    assert [(e, b) for e, b, _ in rows] == [(0, b) for b in range(5)] + [(1, 0), (1, 1)] + [(2, b) for b in range(5)]
    assert rows[:5] == state.batch_losses.rows()[:5] and rows[5][2] == 0.5 and rows[6][2] != rows[6][2]


def test_a_format_2_checkpoint_resumes(tmp_path: Path) -> None:
    """A job killed before the upgrade: its checkpoint (batch losses as [epoch, batch, loss] lists) loads,
    with the same losses, and the run it resumes ends as the uninterrupted run."""
    config = train_config(**CONFIG)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(StopTraining):
        train(config, digits(), digits_stats(), config_digest="v2", checkpoint_path=checkpoint, on_epoch=stop_after(2))
    raw = torch.load(checkpoint, weights_only=True)
    rows = BatchLosses.from_file(raw["batch_losses"]).rows()
    raw.update(version=2, batch_losses=[list(row) for row in rows])
    torch.save(raw, checkpoint)
    assert read_checkpoint(checkpoint)["version"] == 2 != CHECKPOINT_VERSION
    assert TrainState.load(checkpoint, {"cpu": "v2"}, "cpu", None).batch_losses.rows() == rows
    resumed = train(config, digits(), digits_stats(), config_digest="v2", checkpoint_path=checkpoint)
    whole = train(config, digits(), digits_stats(), config_digest="v2")
    assert resumed.resumed_from_epoch == 2 and resumed.batch_losses == whole.batch_losses
    assert all(torch.equal(v, whole.model_state[k]) for k, v in resumed.model_state.items())


def stop_with(error: BaseException, epoch: int):
    def hook(row: dict) -> None:
        if row["epoch"] == epoch:
            raise error
    return hook


@pytest.mark.parametrize("stop, saved_epoch", [(StopTraining(), 2), (SystemExit(143), 3), (KeyboardInterrupt(), 3)])
def test_resume_from_the_cadence_s_checkpoint_is_bit_exact(tmp_path: Path, stop: BaseException,
                                                           saved_epoch: int) -> None:
    """Every 2 epochs: a job killed outright after epoch 3 resumes from epoch 2; one stopped by SIGTERM (the
    CLI turns it into SystemExit) or Ctrl-C saves epoch 3 on its way out. Both end as the uninterrupted run."""
    config = train_config(**CONFIG)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(type(stop)):
        train(config, digits(), digits_stats(), config_digest="c", checkpoint_path=checkpoint,
              on_epoch=stop_with(stop, 3), cadence=Cadence(epochs=2))
    assert read_checkpoint(checkpoint)["epoch"] == saved_epoch
    resumed = train(config, digits(), digits_stats(), config_digest="c", checkpoint_path=checkpoint,
                    cadence=Cadence(epochs=2))
    whole = train(config, digits(), digits_stats(), config_digest="c")
    assert resumed.resumed_from_epoch == saved_epoch
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in r.history] for r in (resumed, whole)]
    assert untimed[0] == untimed[1]
    assert resumed.batch_losses == whole.batch_losses and resumed.metrics == whole.metrics
    assert all(torch.equal(v, whole.model_state[k]) for k, v in resumed.model_state.items())


def test_the_last_epoch_is_always_saved(tmp_path: Path) -> None:
    """However sparse the cadence: the stage keeps the checkpoint when logging fails after training, and the
    rerun must find the finished epochs there."""
    checkpoint = tmp_path / "checkpoint.pt"
    train(train_config(epochs=3, batch_size=256), digits(), digits_stats(), config_digest="c",
          checkpoint_path=checkpoint, cadence=Cadence(epochs=1000))
    assert read_checkpoint(checkpoint)["epoch"] == 3


def test_cadence_counts_epochs_and_seconds() -> None:
    now = time.monotonic()
    assert [e for e in range(1, 7) if Cadence(epochs=3).due(e, now, final=False)] == [3, 6]
    assert Cadence(epochs=5).due(2, now, final=True)
    assert not Cadence(epochs=5, seconds=60).due(2, now, final=False)
    assert Cadence(epochs=5, seconds=60).due(2, now - 61, final=False)
    assert not Cadence(epochs=5, seconds=0).due(2, now - 1e6, final=False)


def test_the_cadence_changes_no_digest() -> None:
    """The cadence is under `resources`, outside every point's config: setting it retrains nothing (the
    committed runs keep their point ids and digests; Snakemake's rule params and DVC's stage params are
    the point's config and `train` / `studies.*`, which it does not touch)."""
    import copy

    from trickbench.grid import study_points
    from trickbench.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    changed = copy.deepcopy(params)
    changed["resources"].update(checkpoint_every_epochs=10, checkpoint_every_seconds=600)
    for study in params["studies"]:
        before = [(p.point_id, p.config_digest) for p in study_points(params, study)]
        assert before == [(p.point_id, p.config_digest) for p in study_points(changed, study)]
    with open(Path(__file__).parents[1] / "results" / "runs.csv", newline="") as handle:
        committed = {(row["study"], row["point_id"]) for row in csv.DictReader(handle)}
    assert committed and committed <= {(s, p.point_id) for s in params["studies"] for p in study_points(params, s)}
    # unset, the keys add nothing to the validated params: the committed manifest's digests still hold
    manifest = json.loads((Path(__file__).parents[1] / "results" / "manifest.json").read_text())
    assert digest_json(params["resources"]) == manifest["params"]["sections"]["resources"]
    assert checkpoint_cadence(params) == Cadence() == Cadence(epochs=1, seconds=0.0)
    assert checkpoint_cadence(changed) == Cadence(epochs=10, seconds=600)
