"""Stage ensemble: average softmax outputs of chosen runs (seed §8) and compare with the best single model.

The seed's three recipes, plus the reference row:
- best_single: the run with the best VALIDATION metric (ensemble.metric), the model one would ship;
- top_k: the k best runs of the study by the validation metric ("top models discovered during
  cross-validation");
- seeds: for every configuration with several seeds, all of its seeds ("same model, different
  initialization");
- snapshot: the predictions of the best run at its snapshot epochs ("different checkpoints of a single
  model"): the last train.snapshots epochs, or with a restarting schedule (cosine_restarts) the ends of
  its last train.snapshots cycles (train.optim.snapshot_epochs);
- top_k_of_seed: within each seed (the study's configurations trained from one seed), its top k runs
  against that seed's best single run: one comparison per seed, so the claims have n = seeds paired
  differences instead of the single top_k row;
- snapshot_of_run: every run's snapshots against that run alone: one comparison per run.
Members are always chosen on validation; test metrics are only ever reported. Every row carries the
best single model's test metrics and its gain over them (positive = the ensemble is better), and the
gain over its own best member. Where the test split has no labels (NDSB in the paper; here the
prepare stage always holds out a labelled test part), test metrics are NaN and the table still lists
the validation metrics.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from trickbench.grid import point_id, study_points
from trickbench.io import write_json
from trickbench.metrics import error_rate, log_loss
from trickbench.paths import Layout
from trickbench.run_files import malformed, read_metrics, read_predictions

METRICS = ("val_loss", "val_error", "test_loss", "test_error")


def load_completed(layout: Layout, params: dict[str, Any], study: str) -> list[dict[str, Any]]:
    """Finished, non-diverged runs of the study's current grid, each with its predictions (all evaluated on
    the same images: a predictions.npz of other data is named in one line)."""
    runs, first = [], None
    for point in study_points(params, study):
        files = layout.run_files(study, point.point_id)
        record = read_metrics(files.metrics, point.point_id)
        if record["status"] != "completed":
            continue
        record["predictions"] = read_predictions(files.predictions)
        first = first or (files.predictions, record["predictions"])
        _check_same_data(first, files.predictions, record["predictions"])
        runs.append(record)
    return runs


def _check_same_data(first: tuple[Any, dict[str, np.ndarray]], path: Any, arrays: dict[str, np.ndarray]) -> None:
    """Same labels and the same number of classes as the study's first run (snapshots: read_predictions)."""
    first_path, reference = first
    for name, same in (("val_labels", np.array_equal), ("test_labels", np.array_equal),
                       ("val_probs", lambda a, b: a.shape == b.shape), ("test_probs", lambda a, b: a.shape == b.shape)):
        mine, theirs = arrays.get(name), reference.get(name)
        if (mine is None) != (theirs is None) or (mine is not None and not same(mine, theirs)):
            raise malformed(path, f"{name} differs from {first_path}'s; expected every run of the study evaluated "
                            "on the same prepared data", "train")


def _score(probs: np.ndarray | None, labels: np.ndarray | None) -> tuple[float, float]:
    if probs is None or labels is None or len(labels) == 0:
        return math.nan, math.nan
    return log_loss(probs, labels), error_rate(probs, labels)


def scores(val_probs: np.ndarray, test_probs: np.ndarray | None, val_labels: np.ndarray,
           test_labels: np.ndarray | None) -> dict[str, float]:
    val_loss, val_error = _score(val_probs, val_labels)
    test_loss, test_error = _score(test_probs, test_labels)
    return {"val_loss": val_loss, "val_error": val_error, "test_loss": test_loss, "test_error": test_error}


def _labels(runs: list[dict[str, Any]], split: str) -> np.ndarray | None:
    first = runs[0]["predictions"].get(f"{split}_labels")
    for run in runs[1:]:
        other = run["predictions"].get(f"{split}_labels")
        if (first is None) != (other is None) or (first is not None and not np.array_equal(first, other)):
            raise ValueError(f"runs {runs[0]['point_id']} and {run['point_id']} were evaluated on different "
                             f"{split} data; rerun the study on one prepared data set")
    return first


def average(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Metrics of the mean of the members' softmax outputs."""
    val = np.mean([r["predictions"]["val_probs"] for r in runs], axis=0)
    has_test = all("test_probs" in r["predictions"] for r in runs)
    test = np.mean([r["predictions"]["test_probs"] for r in runs], axis=0) if has_test else None
    return scores(val, test, _labels(runs, "val"), _labels(runs, "test") if has_test else None)


def _row(kind: str, label: str, members: list[dict[str, Any]], result: dict[str, float], best: dict[str, Any],
         metric: str) -> dict[str, Any]:
    own_best = min(members, key=lambda r: (r[metric], r["point_id"]))
    row = {"kind": kind, "label": label, "members": [r["point_id"] for r in members], "size": len(members),
           **result, "best_single": best["point_id"]}
    for name in METRICS:
        row[f"best_single_{name}"] = best[name]
    for name in ("test_error", "test_loss", "val_error", "val_loss"):
        row[f"gain_{name}"] = best[name] - result[name]  # positive: the ensemble is better
    row["best_member"] = own_best["point_id"]
    row["gain_over_best_member_test_error"] = own_best["test_error"] - result["test_error"]
    row["gain_over_best_member_test_loss"] = own_best["test_loss"] - result["test_loss"]
    return row


def rank(runs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Runs best first by a VALIDATION metric (ties: point id); runs without a finite value last."""
    if not metric.startswith("val_"):
        raise ValueError(f"ensemble.metric must be a validation metric, got {metric!r}")
    return sorted(runs, key=lambda r: (not math.isfinite(r[metric]), r[metric], r["point_id"]))


def build_ensembles(runs: list[dict[str, Any]], metric: str, top_k: int) -> dict[str, Any]:
    """The ensemble table of a study from its completed runs (records with `predictions`)."""
    result: dict[str, Any] = {"metric": metric, "top_k": top_k, "rows": []}
    if not runs:
        return result
    ranked = rank(runs, metric)
    best = ranked[0]
    single = {name: best[name] for name in METRICS}
    result["best_single"] = {"point_id": best["point_id"], **single}
    rows = result["rows"]
    rows.append(_row("best_single", best["point_id"], [best], single, best, metric))
    top = ranked[:top_k]
    rows.append(_row("top_k", f"top {len(top)} by {metric}", top, average(top), best, metric))
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in ranked:  # same configuration, different seeds: group on every axis except the seed
        key = point_id({k: v for k, v in run["axes"].items() if k != "seed"}) or "all"
        groups.setdefault(key, []).append(run)
    for key, members in groups.items():
        if len(members) > 1:
            rows.append(_row("seeds", f"{len(members)} seeds of {key}", members, average(members), best, metric))
    snapshots = {run["point_id"]: (run, found) for run in ranked if (found := snapshot_scores(run)) is not None}
    if best["point_id"] in snapshots:
        count, snapshot = snapshots[best["point_id"]][1]
        rows.append(_row("snapshot", snapshot_label(best, count), [best], snapshot, best, metric))
    rows.extend(top_k_of_each_seed(ranked, metric, top_k))
    for run, (count, snapshot) in snapshots.values():
        rows.append(_row("snapshot_of_run", snapshot_label(run, count), [run], snapshot, run, metric))
    return result


def snapshot_label(run: dict[str, Any], count: int) -> str:
    """Which epochs a run's snapshot ensemble averages: the first `count` of its configuration's snapshot
    epochs (early stopping can end a run before the later ones)."""
    config = run.get("config")
    if config is None:
        return f"{count} snapshots of {run['point_id']}"
    from trickbench.train.optim import snapshot_epochs  # torch: only for a study that kept snapshots

    epochs = sorted(snapshot_epochs(config))[:count]
    return f"epochs {', '.join(map(str, epochs))} of {run['point_id']}"


def snapshot_scores(run: dict[str, Any]) -> tuple[int, dict[str, float]] | None:
    """(number of snapshots, metrics of their mean) of a run that kept more than one, else None."""
    predictions = run["predictions"]
    snapshots = predictions.get("snapshot_val_probs")
    if snapshots is None or len(snapshots) < 2:
        return None
    test_snapshots = predictions.get("snapshot_test_probs")
    return len(snapshots), scores(snapshots.mean(axis=0), None if test_snapshots is None else test_snapshots.mean(axis=0),
                                  predictions["val_labels"], predictions.get("test_labels"))


def top_k_of_each_seed(ranked: list[dict[str, Any]], metric: str, top_k: int) -> list[dict[str, Any]]:
    """Per seed, its top k runs against its own best run (rows only where a seed has more than k runs and
    the study has more than one seed: otherwise the study-wide top_k row is the same comparison)."""
    by_seed: dict[Any, list[dict[str, Any]]] = {}
    for run in ranked:  # ranked order is kept within each seed
        if "seed" in run["axes"]:
            by_seed.setdefault(run["axes"]["seed"], []).append(run)
    if len(by_seed) < 2:
        return []
    return [_row("top_k_of_seed", f"top {top_k} of seed {seed} by {metric}", runs[:top_k], average(runs[:top_k]),
                 runs[0], metric)
            for seed, runs in by_seed.items() if len(runs) > top_k]


def ensemble(params: dict[str, Any], layout: Layout, study: str) -> dict[str, Any]:
    settings = params["ensemble"]
    runs = load_completed(layout, params, study)
    result = {"study": study, **build_ensembles(runs, settings["metric"], settings["top_k"])}
    write_json(layout.ensemble_json(study), result)
    return result
