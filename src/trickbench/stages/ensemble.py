"""Stage ensemble: average softmax outputs of chosen runs (seed §8) and compare with the best single model.

Members are always chosen by a VALIDATION metric; test metrics are only ever reported.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from trickbench.grid import study_points
from trickbench.io import read_json, write_json
from trickbench.metrics import error_rate, log_loss
from trickbench.paths import Layout


def load_completed(layout: Layout, params: dict[str, Any], study: str) -> list[dict[str, Any]]:
    """Finished, non-diverged runs of the study's current grid, each with its predictions."""
    runs = []
    for point in study_points(params, study):
        run_dir = layout.run_dir(study, point.point_id)
        record = read_json(run_dir / "metrics.json")
        if record["status"] != "completed":
            continue
        with np.load(run_dir / "predictions.npz") as predictions:
            record["predictions"] = {key: predictions[key] for key in predictions.files}
        runs.append(record)
    return runs


def scores(val_probs: np.ndarray, test_probs: np.ndarray, val_labels: np.ndarray,
           test_labels: np.ndarray) -> dict[str, float]:
    return {"val_loss": log_loss(val_probs, val_labels), "val_error": error_rate(val_probs, val_labels),
            "test_loss": log_loss(test_probs, test_labels), "test_error": error_rate(test_probs, test_labels)}


def average(runs: list[dict[str, Any]], kind: str, members_label: str, best: dict[str, Any]) -> dict[str, Any]:
    first = runs[0]["predictions"]
    val = np.mean([r["predictions"]["val_probs"] for r in runs], axis=0)
    test = np.mean([r["predictions"]["test_probs"] for r in runs], axis=0)
    return _row(kind, members_label, [r["point_id"] for r in runs],
                scores(val, test, first["val_labels"], first["test_labels"]), best)


def _row(kind: str, label: str, members: list[str], result: dict[str, float], best: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "label": label, "members": members, "size": len(members), **result,
            "best_single_test_error": best["test_error"], "best_single_test_loss": best["test_loss"],
            "gain_test_error": best["test_error"] - result["test_error"],
            "gain_test_loss": best["test_loss"] - result["test_loss"]}


def ensemble(params: dict[str, Any], layout: Layout, study: str) -> dict[str, Any]:
    settings = params["ensemble"]
    metric = settings["metric"]
    runs = sorted(load_completed(layout, params, study), key=lambda r: (r[metric], r["point_id"]))
    result: dict[str, Any] = {"study": study, "metric": metric, "top_k": settings["top_k"], "rows": []}
    if runs:
        best = runs[0]
        single = {k: best[k] for k in ("val_loss", "val_error", "test_loss", "test_error")}
        result["best_single"] = {"point_id": best["point_id"], **single}
        rows = result["rows"]
        rows.append(_row("best_single", best["point_id"], [best["point_id"]], single, best))
        top = runs[:settings["top_k"]]
        rows.append(average(top, "top_k", f"top {len(top)} by {metric}", best))
        # same configuration, different seeds: group on every axis except the seed
        groups: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            key = "__".join(f"{k}-{v}" for k, v in run["axes"].items() if k != "seed") or "all"
            groups.setdefault(key, []).append(run)
        for key, members in groups.items():
            if len(members) > 1:
                rows.append(average(members, "seeds", key, members[0]))
        predictions = best["predictions"]
        if "snapshot_test_probs" in predictions and len(predictions["snapshot_test_probs"]) > 1:
            snapshot = scores(predictions["snapshot_val_probs"].mean(axis=0),
                              predictions["snapshot_test_probs"].mean(axis=0),
                              predictions["val_labels"], predictions["test_labels"])
            label = f"{len(predictions['snapshot_test_probs'])} last epochs of {best['point_id']}"
            rows.append(_row("snapshot", label, [best["point_id"]], snapshot, best))
    write_json(layout.ensemble_json(study), result)
    return result
