"""How long the training loop waits on MLflow per epoch (GitHub issue 25), with a real SQLite store.

The loop's tracking calls per epoch, as `Trainer.fit` makes them: a flush before the checkpoint, then the
epoch's metrics. Between epochs the process computes (matrix products standing in for an epoch of
training, --epoch-ms long). Measured: the time spent inside those calls, the median over the epochs.
  * queued: `tracking.BackgroundRun` (what a train job uses): the metrics go to a worker thread;
  * blocking (the baseline, in the same run and the same store): `tracking.Run`, each call waits for
    SQLite, as the loop did before the queue.

    python benchmarks/tracking_overhead.py            # 40 epochs of 200 ms
    python benchmarks/tracking_overhead.py --quick    # 10 epochs of 100 ms (a test of the script)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import header, ratio_line
from trickbench import tracking

TARGET_MS = 1.0
ROW = {"train_loss": 1.0, "train_error": 0.5, "val_loss": 1.0, "val_error": 0.5, "lr": 0.1, "seconds": 60.0}


def compute_for(seconds: float) -> None:
    """Work that holds the CPU the way a training epoch does (torch releases the GIL inside its kernels)."""
    a = torch.randn(256, 256)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        a = torch.tanh(a @ a)


def epoch_waits(run: Any, epochs: int, epoch_seconds: float) -> list[float]:
    """Seconds spent in the loop's tracking calls, per epoch."""
    waits = []
    for epoch in range(1, epochs + 1):
        compute_for(epoch_seconds)
        started = time.perf_counter()
        run.flush()  # before the checkpoint
        run.log_metrics(ROW, step=epoch)
        waits.append(time.perf_counter() - started)
    run.end()
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 epochs of 100 ms")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per variant (40)")
    parser.add_argument("--epoch-ms", type=float, default=None, help="compute between the calls (200 ms)")
    args = parser.parse_args()
    epochs = args.epochs or (10 if args.quick else 40)
    epoch_seconds = (args.epoch_ms or (100 if args.quick else 200)) / 1000
    header("tracking overhead")
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        tracking.ensure_experiments(uri, ["overhead"])  # the tracking stage makes the store before any job

        def make(name: str) -> tracking.Run:
            return tracking.Run(uri, "overhead", name, {"benchmark": name}, {"model": "nin"})

        blocking = make("blocking")
        queued = tracking.BackgroundRun(lambda: make("queued"))
        queued.run_id  # created before the first epoch, as a real job's run is by the end of its start-up
        median = {
            "queued": statistics.median(epoch_waits(queued, epochs, epoch_seconds)),
            "blocking": statistics.median(epoch_waits(blocking, epochs, epoch_seconds)),
        }
        logged = len(tracking.metric_history(uri, queued.run_id, "val_loss"))
    if logged != epochs:
        raise SystemExit(f"the queued run holds {logged} epochs of val_loss, expected {epochs}")
    for name, seconds in median.items():
        print(f"{name:>8}: {seconds * 1e3:8.3f} ms per epoch (median of {epochs})", flush=True)
    ratio_line("tracking_wait_queued_over_blocking", median["queued"], median["blocking"],
               what="queued", baseline_what="blocking", unit="s per epoch", higher_is_better=False,
               target=f"queued < {TARGET_MS:g} ms", met=median["queued"] * 1e3 < TARGET_MS)


if __name__ == "__main__":
    main()
