"""The training loop never waits on the tracking store: BackgroundRun queues the per-epoch calls on its worker
thread, `flush` waits for them and re-raises the worker's first error (a real SQLite store)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from trickbench import tracking


def sqlite_run(tmp_path: Path, name: str = "queued") -> tracking.Run:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.ensure_experiments(uri, ["queue"])
    return tracking.Run(uri, "queue", name, {"test": name})


def test_metrics_are_queued_then_stored_by_flush(tmp_path: Path) -> None:
    """While the worker is held up (the store is slow), log_metrics and set_tags return at once; flush
    returns once every epoch is stored, in order."""
    release = threading.Event()

    def slow_create() -> tracking.Run:
        release.wait(timeout=60)
        return sqlite_run(tmp_path)

    run = tracking.BackgroundRun(slow_create)
    for epoch in range(1, 6):
        run.log_metrics({"val_loss": 1.0 / epoch}, step=epoch)
    run.set_tags({"state": "training"})
    assert not run._run.done()  # nothing stored yet: the calls above did not wait for the store
    release.set()
    run.flush()
    stored = tracking.metric_history(run.uri, run.run_id, "val_loss")
    assert [(m.step, m.value) for m in stored] == [(e, 1.0 / e) for e in range(1, 6)]
    assert tracking.client(run.uri).get_run(run.run_id).data.tags["state"] == "training"
    run.end()


class StoreDown(ConnectionError):
    pass


def test_a_worker_error_is_raised_by_the_next_flush_not_lost(tmp_path: Path) -> None:
    """A call that failed on the worker (the server went away) surfaces at the loop's next flush, i.e. before
    the next checkpoint: the checkpoint never claims epochs the store lacks."""
    run = tracking.BackgroundRun(lambda: sqlite_run(tmp_path))
    run.flush()
    real = run._run.result()
    calls = []

    def failing(metrics: dict, step: int) -> None:
        calls.append(step)
        raise StoreDown("connection refused")

    real.log_metrics = failing
    run.log_metrics({"val_loss": 0.5}, step=1)  # returns: queued
    run.log_metrics({"val_loss": 0.4}, step=2)
    with pytest.raises(StoreDown):
        run.flush()
    assert calls == [1, 2] and tracking.is_store_failure(StoreDown("connection refused"))
    run.flush()  # reported once
    run.end()


def test_the_loop_flushes_before_each_checkpoint_and_at_the_end(tmp_path: Path) -> None:
    """Trainer.fit: every epoch's metrics are in the store once fit returns, and each checkpoint was written
    after the tracker had been flushed."""
    from conftest import digits, digits_stats, train_config
    from trickbench.train.checkpoint import read_checkpoint
    from trickbench.train.loop import train

    checkpoint = tmp_path / "checkpoint.pt"
    run = tracking.BackgroundRun(lambda: sqlite_run(tmp_path))
    flushes: list[int | None] = []
    flush = run.flush

    def recording_flush() -> None:
        flush()
        epoch = read_checkpoint(checkpoint)["epoch"] if checkpoint.exists() else 0
        flushes.append(epoch)

    run.flush = recording_flush
    train(train_config(epochs=3, batch_size=256), digits(), digits_stats(), config_digest="q",
          checkpoint_path=checkpoint, tracker=run)
    assert flushes == [0, 1, 2, 3]  # before checkpoints 1, 2, 3, then at the end
    stored = tracking.metric_history(run.uri, run.run_id, "val_loss")
    assert sorted(m.step for m in stored) == [1, 2, 3]
    run.end()
