"""What one checkpoint costs at epoch 1 and at epoch 240 (GitHub issue 25): the save-time ratio.

The state is a paper-CIFAR-10 run's (NiN at width 192 with its SGD momentum and the early-stopping copy,
351 batch losses per epoch, a history row per epoch), written as the loop writes it (atomically, with
fsync). Baseline, in the same run: checkpoint format 2, which stored the batch losses as one Python list
per batch. Each figure is the best of --repeats saves.

    python benchmarks/checkpoint_cost.py            # NiN 192, epochs 1 and 240
    python benchmarks/checkpoint_cost.py --quick    # NiN 32, epochs 1 and 40 (a test of the script)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from _common import header, ratio_line, train_config
from trickbench.train.checkpoint import BatchLosses, EarlyStopping, TrainState, save_checkpoint
from trickbench.train.loop import build_network
from trickbench.train.regularizers import regularization

STEPS_PER_EPOCH = 351  # 45,000 training images / batch 128, rounded up
TARGET = 1.2


def paper_state(width: int, epochs: int) -> TrainState:
    config = train_config(model="nin", width=width, activation="rrelu")
    model = build_network(config, regularization(config), (32, 32, 3), 10)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    momentum = {i: {"momentum_buffer": p.detach().clone()} for i, p in enumerate(model.parameters())}
    losses = BatchLosses([torch.rand(STEPS_PER_EPOCH) for _ in range(epochs)])
    history = [{"epoch": e + 1, "train_loss": 1.0, "train_error": 0.5, "val_loss": 1.0, "val_error": 0.5,
                "lr": 0.1, "seconds": 60.0} for e in range(epochs)]
    return TrainState("digest", "cpu", [], EarlyStopping(30, 0.5, 0, weights), epoch=epochs, model=weights,
                      optimizer={"state": momentum, "param_groups": [{"lr": 0.1}]}, scheduler={"last_epoch": epochs},
                      rng={"generator": torch.Generator().get_state()}, history=history, batch_losses=losses)


def format_2(state: TrainState) -> dict[str, Any]:
    """The same state as format 2 wrote it: every batch loss as an [epoch, batch, loss] list."""
    return {**state.to_file(), "version": 2, "batch_losses": [list(row) for row in state.batch_losses.rows()]}


def best_save(repeats: int, path: Path, contents: Callable[[], dict[str, Any]]) -> float:
    """Seconds of the fastest save; building the dict is part of it, as in the loop."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        save_checkpoint(path, contents())
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="NiN width 32, epochs 1 and 40, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="best of this many saves (5)")
    args = parser.parse_args()
    width, late, repeats = (32, 40, 2) if args.quick else (192, 240, 5)
    repeats = args.repeats or repeats
    header("checkpoint cost")
    seconds: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        for epochs in (1, late):
            state = paper_state(width, epochs)
            seconds["format 3", epochs] = best_save(repeats, path, state.to_file)
            size = path.stat().st_size
            seconds["format 2", epochs] = best_save(repeats, path, lambda: format_2(state))
            print(f"epoch {epochs:>3}: format 3 {seconds['format 3', epochs] * 1e3:7.1f} ms ({size / 1e6:.1f} MB), "
                  f"format 2 {seconds['format 2', epochs] * 1e3:7.1f} ms ({path.stat().st_size / 1e6:.1f} MB)",
                  flush=True)
    ratio = seconds["format 3", late] / seconds["format 3", 1]
    ratio_line(f"checkpoint_epoch{late}_over_epoch1", seconds["format 3", late], seconds["format 3", 1],
               what=f"save at epoch {late}", baseline_what="at epoch 1", unit="s",
               target=f"<= {TARGET}", met=ratio <= TARGET, higher_is_better=False)
    ratio_line(f"checkpoint_format2_epoch{late}_over_epoch1", seconds["format 2", late], seconds["format 2", 1],
               what=f"format 2 save at epoch {late}", baseline_what="at epoch 1", unit="s", higher_is_better=False)
    ratio_line(f"checkpoint_epoch{late}_format2_over_format3", seconds["format 2", late], seconds["format 3", late],
               what=f"format 2 at epoch {late}", baseline_what="format 3", unit="s")


if __name__ == "__main__":
    main()
