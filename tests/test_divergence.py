"""Divergence: a NaN or infinite loss ends that run with status `diverged`. End to end (the rest of the grid
completes, the MLflow tag `trickbench.status`, the ensemble leaves it out, runs.csv lists it) in
test_tracking_server.py, whose pipeline has a diverging grid point: one Snakemake run less for the suite."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_params, write_params


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The tiny study's prepared data and statistics, in this process (tracking off)."""
    from trickbench.data.prepared import load_prepared
    from trickbench.data.stats import load_stats
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare, stats

    workdir = tmp_path_factory.mktemp("digits")
    write_params(workdir / "params.yaml", tiny_params())
    params = load_params(workdir / "params.yaml")
    params["tracking"]["enabled"] = False
    layout = Layout(workdir / "artifacts", workdir / "results")
    download(params, layout), prepare(params, layout, progress=False), stats(params, layout)
    config = {**params["train"], "device": "cpu"}
    return config, load_prepared(layout.prepared), load_stats(layout.stats_json, layout.stats_arrays,
                                                              device=torch.device("cpu"))


def test_nan_loss_ends_the_run_as_diverged(digits):
    from trickbench.train.loop import train

    config, prepared, stats = digits
    result = train({**config, "lr": 1e6, "epochs": 3}, prepared, stats, config_digest="x")
    assert result.status == "diverged"
    assert len(result.history) == 1  # stopped after the epoch that diverged, not trained on
    assert all(math.isnan(result.metrics[f"{split}_{m}"]) for split in ("train", "val", "test") for m in ("loss", "error"))
    assert result.predictions == {}  # nothing an ensemble could pick up


def test_infinite_loss_in_a_later_epoch_ends_the_run(digits, monkeypatch):
    """An inf loss (not NaN) in epoch 2: the run stops there as diverged."""
    from trickbench.train import loop

    config, prepared, stats = digits
    steps_per_epoch = math.ceil(len(prepared.labels["train"]) / config["batch_size"])
    calls = {"n": 0}
    cross_entropy = loop.F.cross_entropy

    class Patched:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def cross_entropy(*args, **kwargs):
            calls["n"] += 1
            loss = cross_entropy(*args, **kwargs)
            return loss * math.inf if calls["n"] == steps_per_epoch + 3 else loss

    monkeypatch.setattr(loop, "F", Patched())
    history = []
    result = loop.train({**config, "epochs": 4}, prepared, stats, config_digest="x",
                        tracker=type("T", (loop.Tracker,), {"log_metrics": lambda self, m, step: history.append(step)})())
    assert result.status == "diverged"
    assert [row["epoch"] for row in result.history] == [1, 2] and history == [1, 2]
    assert math.isfinite(result.history[0]["train_loss"]) and not math.isfinite(result.history[1]["train_loss"])
