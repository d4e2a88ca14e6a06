"""Ensembles: identical members change nothing; members are chosen on validation, never on test."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trickbench.metrics import error_rate, log_loss
from trickbench.stages.ensemble import build_ensembles, rank

RNG = np.random.default_rng(0)
N_VAL, N_TEST, CLASSES = 40, 60, 4
VAL_LABELS = RNG.integers(0, CLASSES, N_VAL)
TEST_LABELS = RNG.integers(0, CLASSES, N_TEST)


def probs(labels: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """Softmax outputs that put `skill` extra logit on the true class."""
    logits = np.random.default_rng(seed).normal(size=(len(labels), CLASSES))
    logits[np.arange(len(labels)), labels] += skill
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def run(point: str, val_skill: float, test_skill: float, seed: int, axes: dict | None = None,
        snapshots: int = 0) -> dict:
    val, test = probs(VAL_LABELS, val_skill, seed), probs(TEST_LABELS, test_skill, seed + 100)
    predictions = {"val_probs": val, "val_labels": VAL_LABELS, "test_probs": test, "test_labels": TEST_LABELS}
    if snapshots:
        predictions["snapshot_val_probs"] = np.stack([val] * snapshots)
        predictions["snapshot_test_probs"] = np.stack([test] * snapshots)
    return {"point_id": point, "axes": axes or {"activation": point, "seed": 0}, "status": "completed",
            "val_loss": log_loss(val, VAL_LABELS), "val_error": error_rate(val, VAL_LABELS),
            "test_loss": log_loss(test, TEST_LABELS), "test_error": error_rate(test, TEST_LABELS),
            "predictions": predictions}


def test_ensemble_of_identical_models_equals_the_single_model():
    single = run("a", 2.0, 2.0, seed=1, snapshots=3)
    copies = [dict(single, point_id=f"copy{i}", axes={"activation": "a", "seed": i}) for i in range(3)]
    result = build_ensembles(copies, "val_loss", top_k=3)
    rows = {row["kind"]: row for row in result["rows"]}
    assert set(rows) == {"best_single", "top_k", "seeds", "snapshot", "snapshot_of_run"}
    for row in result["rows"]:
        for metric in ("val_loss", "val_error", "test_loss", "test_error"):
            assert row[metric] == pytest.approx(single[metric], rel=1e-12)
        assert row["gain_test_error"] == pytest.approx(0.0, abs=1e-12)
        assert row["gain_test_loss"] == pytest.approx(0.0, abs=1e-12)


def test_top_k_members_are_chosen_by_validation_never_test():
    # validation ranking: v1 > v2 > v3 > t1 > t2; test ranking: t1 > t2 > v3 > v2 > v1
    runs = [run("v1", 4.0, 0.2, 1), run("v2", 3.5, 0.4, 2), run("v3", 3.0, 0.6, 3),
            run("t1", 0.2, 5.0, 4), run("t2", 0.4, 4.5, 5)]
    by_test = sorted(runs, key=lambda r: r["test_loss"])
    assert [r["point_id"] for r in by_test[:2]] == ["t1", "t2"]  # the rankings really disagree
    for metric in ("val_loss", "val_error"):
        result = build_ensembles(runs, metric, top_k=3)
        rows = {row["kind"]: row for row in result["rows"]}
        assert result["best_single"]["point_id"] == "v1"
        assert set(rows["top_k"]["members"]) == {"v1", "v2", "v3"}
        assert rows["best_single"]["test_error"] == runs[0]["test_error"]
        # every row is compared with the best single model chosen on validation
        assert all(row["best_single"] == "v1" for row in result["rows"])
        assert rows["top_k"]["best_single_test_error"] == runs[0]["test_error"]
        assert rows["top_k"]["gain_test_error"] == pytest.approx(runs[0]["test_error"] - rows["top_k"]["test_error"])


def test_ranking_refuses_a_test_metric_and_puts_nan_last():
    runs = [run("a", 1.0, 1.0, 1), dict(run("b", 1.0, 1.0, 2), val_loss=math.nan)]
    assert [r["point_id"] for r in rank(runs, "val_loss")] == ["a", "b"]
    with pytest.raises(ValueError, match="validation metric"):
        rank(runs, "test_loss")


def test_seed_groups_average_every_seed_of_a_configuration():
    runs = [run(f"relu-{s}", 2.0, 2.0, s, {"activation": "relu", "seed": s}) for s in range(3)]
    runs += [run(f"prelu-{s}", 1.0, 1.0, 10 + s, {"activation": "prelu", "seed": s}) for s in range(2)]
    runs += [run("tanh-0", 1.0, 1.0, 20, {"activation": "tanh", "seed": 0})]
    rows = build_ensembles(runs, "val_loss", top_k=2)["rows"]
    seeds = {row["label"]: row for row in rows if row["kind"] == "seeds"}
    assert set(seeds) == {"3 seeds of activation-relu", "2 seeds of activation-prelu"}  # tanh has one seed
    relu = seeds["3 seeds of activation-relu"]
    mean = np.mean([r["predictions"]["test_probs"] for r in runs[:3]], axis=0)
    assert relu["test_loss"] == pytest.approx(log_loss(mean, TEST_LABELS))
    assert relu["best_member"] in {"relu-0", "relu-1", "relu-2"}


def test_ndsb_style_runs_without_test_labels_still_ensemble_on_validation():
    runs = [run(f"r{s}", 2.0, 2.0, s, {"activation": "relu", "seed": s}) for s in range(2)]
    for r in runs:
        r["predictions"]["test_labels"] = np.zeros(0, dtype=np.int64)
        r["predictions"]["test_probs"] = np.zeros((0, CLASSES))
        r["test_loss"] = r["test_error"] = math.nan
    rows = build_ensembles(runs, "val_loss", top_k=2)["rows"]
    top = next(row for row in rows if row["kind"] == "top_k")
    assert math.isfinite(top["val_loss"]) and math.isnan(top["test_loss"])


def test_members_evaluated_on_different_data_are_refused():
    a, b = run("a", 1.0, 1.0, 1), run("b", 1.0, 1.0, 2)
    b["predictions"]["val_labels"] = (VAL_LABELS + 1) % CLASSES
    with pytest.raises(ValueError, match="different val data"):
        build_ensembles([a, b], "val_loss", top_k=2)


def test_top_k_of_each_seed_compares_a_seeds_top_runs_with_that_seeds_best():
    # seed 0's runs are much better than seed 1's: each seed's row is against its own best, never seed 0's
    runs = [run(f"c{c}-s{s}", 3.0 - s * 2.0 - c * 0.1, 3.0 - s * 2.0, seed=10 * s + c,
                axes={"config": f"c{c}", "seed": s}) for s in (0, 1) for c in range(4)]
    rows = [r for r in build_ensembles(runs, "val_loss", top_k=2)["rows"] if r["kind"] == "top_k_of_seed"]
    assert [r["label"] for r in rows] == ["top 2 of seed 0 by val_loss", "top 2 of seed 1 by val_loss"]
    for row, seed in zip(rows, (0, 1)):
        own = sorted((r for r in runs if r["axes"]["seed"] == seed), key=lambda r: r["val_loss"])
        assert row["members"] == [own[0]["point_id"], own[1]["point_id"]]
        assert row["best_single"] == own[0]["point_id"]
        assert row["gain_test_error"] == pytest.approx(own[0]["test_error"] - row["test_error"])
    # one seed, or no seed with more than k runs: the study-wide top_k row already is that comparison
    assert not [r for r in build_ensembles(runs[:4], "val_loss", top_k=2)["rows"] if r["kind"] == "top_k_of_seed"]
    assert not [r for r in build_ensembles(runs, "val_loss", top_k=4)["rows"] if r["kind"] == "top_k_of_seed"]


def test_snapshot_of_run_compares_every_run_with_itself():
    better = run("b", 2.0, 2.0, seed=5)
    worse = run("w", 0.5, 0.5, seed=6)
    # the worse run's last epochs differ: their mean is a different prediction than its final one
    worse["predictions"]["snapshot_val_probs"] = np.stack([probs(VAL_LABELS, 3.0, 7), worse["predictions"]["val_probs"]])
    worse["predictions"]["snapshot_test_probs"] = np.stack([probs(TEST_LABELS, 3.0, 8), worse["predictions"]["test_probs"]])
    rows = [r for r in build_ensembles([better, worse], "val_loss", top_k=2)["rows"] if r["kind"] == "snapshot_of_run"]
    assert [r["best_single"] for r in rows] == ["w"]  # only a run that kept more than one snapshot
    mean_test = worse["predictions"]["snapshot_test_probs"].mean(axis=0)
    assert rows[0]["test_error"] == pytest.approx(error_rate(mean_test, TEST_LABELS))
    assert rows[0]["gain_test_error"] == pytest.approx(worse["test_error"] - rows[0]["test_error"])
    assert rows[0]["gain_test_error"] > 0  # the sharper snapshot helps the weak run


@pytest.mark.parametrize("damage", ["truncated", "without_val_probs"])
def test_a_damaged_predictions_file_is_bad_input_naming_it(crafted, damage):
    """The ensemble stage reads every finished run's predictions.npz: a damaged one is named, not a traceback."""
    from trickbench.errors import UnreadableFileError
    from trickbench.stages.ensemble import load_completed

    params, layout = crafted
    path = layout.run_files("acts", "activation-relu__initializer-he_normal__seed-0").predictions
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        with np.load(path) as arrays:
            kept = {key: arrays[key] for key in arrays.files if key != "val_probs"}
        np.savez(path, **kept)
    with pytest.raises(UnreadableFileError, match=f"{path}: .*rerun the train stage"):
        load_completed(layout, params, "acts")


@pytest.mark.parametrize("schedule, stopped_after, expected", [
    ("cosine", None, "epochs 28, 29, 30 of r"),
    ("cosine_restarts", None, "epochs 10, 20, 30 of r"),
    ("cosine", 2, "epochs 28, 29 of r"),  # early stopping after two of the three snapshot epochs
])
def test_a_snapshot_row_names_the_epochs_it_averages(schedule, stopped_after, expected):
    from conftest import train_config
    from trickbench.stages.ensemble import snapshot_label

    record = {"point_id": "r", "config": train_config(schedule=schedule, step_size=10, epochs=30, snapshots=3)}
    assert snapshot_label(record, stopped_after or 3) == expected
