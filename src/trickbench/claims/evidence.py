"""From a preset's committed results to a claim's replicates: one difference per independent seed (or per
configuration for an ensemble over seeds), restricted to the seeds the preset planned, plus the values of
the claim's premises. Reads results/<preset>/ only (the runs table, curves, diagnoses, ensembles, class
counts); never a model or an artifact."""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trickbench.claims.model import CHANCE, Claim, ClaimsError
from trickbench.grid import axis_keys, format_value, study_points
from trickbench.registry import Registry

SEED = "seed"
ENSEMBLE_REFERENCES = {"best_member": "gain_over_best_member_test_error", "best_single": "gain_test_error"}


# ------------------------------------------------------------------------------------------------ data

class PresetData:
    """The committed results of one preset: its runs table and, on demand, its curves, diagnoses and
    ensemble tables. `runs` is None when the preset has not been run (no runs table)."""

    def __init__(self, params: dict[str, Any], root: Path):
        from trickbench.paths import Layout

        self.params, self.root = params, root
        self.layout = Layout.from_params(params)
        self.results = root / params["paths"]["results"]
        self._tables: dict[Path, Any] = {}
        self.runs: Any = None
        if self.runs_path.is_file():
            self.runs = self._read(self.runs_path, ["study", "point_id", "status"])

    def _result(self, path: Path) -> Path:
        """A Layout path (relative to the project) under this data's root."""
        return self.root / path

    @property
    def runs_path(self) -> Path:
        return self._result(self.layout.runs_table)

    def _read(self, path: Path, required: list[str]) -> Any:
        """A committed table, read once per PresetData (claims read the same curves many times)."""
        if path not in self._tables:
            self._tables[path] = self._read_once(path, required)
        return self._tables[path]

    def _read_once(self, path: Path, required: list[str]) -> Any:
        import pandas as pd

        if not path.is_file():
            raise ClaimsError(f"{path}: missing; rerun the report stage of this preset")
        try:
            table = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as error:  # pandas' ParserError / EmptyDataError are ValueErrors
            raise ClaimsError(f"{path}: unreadable as CSV ({error}); rerun the report stage of this preset") from None
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise ClaimsError(f"{path}: no column {', '.join(missing)}; expected the report stage's table")
        return table

    def curves(self) -> Any:
        return self._read(self._result(self.layout.curves_table), ["study", "point_id", "epoch", "train_loss"])

    def diagnosis(self, study: str) -> Any:
        return self._read(self._result(self.layout.study_table(study, "diagnosis")), ["point_id"])

    def has_ensembles(self, study: str) -> bool:
        return self._result(self.layout.study_table(study, "ensembles")).is_file()

    def ensembles(self, study: str) -> Any:
        return self._read(self._result(self.layout.study_table(study, "ensembles")), ["kind", "label", *ENSEMBLE_REFERENCES.values()])

    def class_counts(self) -> Any:
        return self._read(self._result(self.layout.class_counts_table), ["class"])

    def num_classes(self) -> int:
        return len(self.class_counts())

    def planned_seeds(self, study: str) -> int | None:
        """The seeds the preset planned for this study before its runs (`plan.seeds`: one number, or one per
        study); None when the preset records no plan."""
        seeds = (self.params.get("plan") or {}).get("seeds")
        if isinstance(seeds, dict):
            seeds = seeds.get(study)
        return int(seeds) if seeds is not None else None

    def scale(self) -> str:
        """What the preset's committed runs were: model, width, data and training images (class counts), and
        the epochs they ran (from the runs, not the config, which may have changed since)."""
        train = self.params["train"]
        text = f"{train['model']} width {train['width']}, {self.params['data']['source']}"
        counts = self._result(self.layout.class_counts_table)
        if counts.is_file():
            table = self._read(counts, ["class"])
            if "train" in table.columns:
                text += f" ({int(table['train'].sum()):,} training images, {len(table)} classes)"
        if self.runs is None:
            return text + f"; not run (config: {train['epochs']} epochs)"
        epochs = self.runs["epochs_run"].dropna() if "epochs_run" in self.runs.columns else []
        ran = (f"{int(epochs.min())}" if epochs.min() == epochs.max() else f"{int(epochs.min())}–{int(epochs.max())}") \
            if len(epochs) else "?"
        return text + f"; {ran} epochs run, {len(self.runs)} runs" + self.made_on()

    def made_on(self) -> str:
        """Where the runs were made (runs.csv's provenance columns): each machine once, with the commits its
        runs were trained at and how many each; '' without them."""
        from trickbench.provenance import KEYS, describe, short_commit

        present = [key for key in KEYS if key in self.runs.columns]
        if not present:
            return ""
        commits: dict[str, Counter[str]] = {}
        for row in self.runs[present].itertuples(index=False):
            record = dict(zip(present, map(str, row)))
            commits.setdefault(describe(record, commit=False), Counter())[short_commit(record)] += 1

        def git(counts: Counter[str]) -> str:
            if len(counts) == 1:
                return f"git {next(iter(counts))}"
            return "git " + ", ".join(f"{commit} ({n} run{'s' * (n != 1)})" for commit, n in sorted(counts.items()))

        return "; " + "; ".join(f"{machine}, {git(counts)}" for machine, counts in sorted(commits.items()))


# ------------------------------------------------------------------------------------------------ metrics

def _first_epochs_at_loss(runs: Any, threshold: float, data: PresetData) -> list[tuple[float, bool]]:
    """Per run: (the first epoch whose training loss is at most `threshold`, whether it got there); a run
    that never gets there counts as epochs_run + 1 (censored)."""
    curves = data.curves()
    result = []
    for _, run in runs.iterrows():
        part = curves[(curves["study"] == run["study"]) & (curves["point_id"] == run["point_id"])]
        reached = part[part["train_loss"] <= threshold]["epoch"]
        if len(reached):
            result.append((float(reached.min()), True))
        else:
            result.append((float(len(part) + 1) if len(part) else math.nan, False))
    return result


def _epochs_to_train_loss(runs: Any, claim: Claim, data: PresetData) -> list[float]:
    """First epoch whose training loss is at most claim.loss_threshold (curves.csv); a run that never gets
    there counts as epochs_run + 1 (censored: the claim cannot gain from a run that stops early)."""
    return [epoch for epoch, _ in _first_epochs_at_loss(runs, claim.loss_threshold, data)]


def _from_diagnosis(column: str) -> Callable[[Any, Claim, PresetData], list[float]]:
    def read(runs: Any, claim: Claim, data: PresetData) -> list[float]:
        table = data.diagnosis(claim.study).set_index("point_id")[column]
        return [float(table.get(pid, math.nan)) for pid in runs["point_id"]]

    return read


# metrics not in runs.csv, computed from the committed results; any other name is a runs.csv column
DERIVED_METRICS = Registry("claim metric")
DERIVED_METRICS.add("gap", lambda runs, claim, data: list(runs["val_error"] - runs["train_error"]),
                    "val_error − train_error at the end (seed Fig. 3: the train/validation accuracy gap)")
DERIVED_METRICS.add("test_gap", lambda runs, claim, data: list(runs["test_error"] - runs["train_error"]),
                    "test_error − train_error at the end (how much a model overfits; Xu et al.'s two columns)")
DERIVED_METRICS.add("late_over_early", _from_diagnosis("late_over_early"),
                    "per-epoch fall of the training loss in the second half over that in the first half "
                    "(diagnosis.csv): ≈ 1 for a straight line (too low a rate), ≪ 1 for a healthy curve")
DERIVED_METRICS.add("epochs_to_train_loss", _epochs_to_train_loss,
                    "epochs until the training loss first reaches the claim's loss_threshold (curves.csv)")


# A diverged run is an outcome of its arm, not a missing value: where the metric has a chance level it counts
# at that level (the predictions of a net whose weights are NaN carry no information), so a treatment that
# diverges in some seeds is never judged on its survivors alone. Other metrics (losses, curve-derived ones)
# have no value for it and its seed leaves the comparison.
def error_at_chance(classes: int) -> float:
    """The error of a guess among `classes` balanced classes."""
    return 1.0 - 1.0 / classes


CHANCE_LEVEL: dict[str, Callable[[int], float]] = {
    "train_error": error_at_chance, "val_error": error_at_chance, "test_error": error_at_chance,
    "test_mean_recall": lambda classes: 1.0 / classes,
}


def metric_values(runs: Any, metric: str, claim: Claim, data: PresetData) -> np.ndarray:
    """One value of `metric` per run: NaN for a run that did not complete, but a diverged run counts at the
    metric's chance level where it has one (CHANCE_LEVEL)."""
    if metric in DERIVED_METRICS:
        values = np.asarray(DERIVED_METRICS.get(metric)(runs, claim, data), dtype=float)
    elif metric in runs.columns:
        try:
            values = runs[metric].to_numpy(dtype=float)
        except ValueError:
            raise ClaimsError(f"{data.runs_path}: column {metric!r} is not numeric (claim {claim.claim_id})") from None
    else:
        raise ClaimsError(f"{data.runs_path}: no column {metric!r} (claim {claim.claim_id}); "
                          f"derived metrics: {', '.join(DERIVED_METRICS.names())}")
    usable = (runs["status"] == "completed").to_numpy()
    values = np.where(usable & np.isfinite(values), values, np.nan)
    if metric in CHANCE_LEVEL:
        values = np.where((runs["status"] == "diverged").to_numpy(), CHANCE_LEVEL[metric](data.num_classes()), values)
    return values


# ------------------------------------------------------------------------------------------------ runs

def check_claim(claim: Claim, params: dict[str, Any]) -> None:
    """Raise ClaimsError unless the claim's study, axis, values and `where` exist in the preset's grid."""
    where = f"claim {claim.claim_id}: {claim.config_path}"
    if claim.study not in params["studies"]:
        raise ClaimsError(f"{where}: no study {claim.study!r} (studies: {', '.join(params['studies'])})")
    points = study_points(params, claim.study)
    keys = axis_keys(points)
    if claim.is_ensemble:
        if claim.control not in ENSEMBLE_REFERENCES:
            raise ClaimsError(f"{where}: ensemble control must be one of {', '.join(ENSEMBLE_REFERENCES)}")
        if claim.treatment in ("seeds", "top_k_of_seed") and SEED not in keys:
            raise ClaimsError(f"{where}: study {claim.study!r} has no seed axis for a {claim.treatment} ensemble")
        if claim.treatment in ("snapshot", "snapshot_of_run") and params["train"]["snapshots"] < 2:
            raise ClaimsError(f"{where}: train.snapshots < 2, no snapshot ensemble")
        return
    if claim.axis not in keys:
        raise ClaimsError(f"{where}: study {claim.study!r} has no axis {claim.axis!r} (axes: {', '.join(keys)})")
    values = {format_value(p.config[claim.axis]) for p in points}
    for role, value in (("treatment", claim.treatment), ("control", claim.control)):
        if role == "control" and value == CHANCE:
            continue
        if format_value(value) not in values:
            raise ClaimsError(f"{where}: studies.{claim.study}.axes.{claim.axis} has no value "
                              f"{format_value(value)!r} ({role}); values: {', '.join(sorted(values))}")
    for key, allowed in claim.where.items():
        present = {format_value(p.config[key]) for p in points}
        missing = [format_value(v) for v in allowed if format_value(v) not in present]
        if key == claim.axis or missing:
            raise ClaimsError(f"{where}: where {key}={missing or allowed} is not another axis value of the study")
    if claim.metric == "epochs_to_train_loss" and claim.loss_threshold is None:
        raise ClaimsError(f"{where}: metric epochs_to_train_loss needs loss_threshold")


def study_seeds(params: dict[str, Any], study: str) -> list[str]:
    """The study's seeds in the order its config lists them (the planned ones come first)."""
    return list(dict.fromkeys(format_value(p.config[SEED]) for p in study_points(params, study)))


def study_runs(claim: Claim, data: PresetData) -> Any:
    """The study's committed runs of the current grid joined to their points' values (`axis:<key>`, axes a
    block does not vary take the base value, and the seed), `where` applied; None if none is committed."""
    import pandas as pd

    if data.runs is None:
        return None
    points = study_points(data.params, claim.study)
    keys = list(dict.fromkeys([*axis_keys(points), SEED]))
    grid = pd.DataFrame([{"point_id": p.point_id, **{f"axis:{k}": format_value(p.config[k]) for k in keys}}
                         for p in points])
    runs = data.runs[data.runs["study"] == claim.study].drop_duplicates("point_id", keep="last")
    runs = runs.drop(columns=[c for c in runs.columns if c.startswith("axis:")])
    joined = runs.merge(grid, on="point_id", how="inner")
    for key, allowed in claim.where.items():
        joined = joined[joined[f"axis:{key}"].isin([format_value(v) for v in allowed])]
    return joined if len(joined) else None


def arm_runs(claim: Claim, data: PresetData, value: Any, planned_only: bool = True) -> Any:
    """The runs of one side of the claim (its axis at `value`), within `where` and the planned seeds."""
    runs = study_runs(claim, data)
    if runs is None or claim.is_ensemble:
        return None
    runs = runs[runs[f"axis:{claim.axis}"] == format_value(value)]
    if planned_only:
        runs = runs[runs[f"axis:{SEED}"].isin(planned(claim, data))]
    return runs if len(runs) else None


def planned(claim: Claim, data: PresetData) -> list[str]:
    seeds = study_seeds(data.params, claim.study)
    count = data.planned_seeds(claim.study)
    return seeds if count is None else seeds[:count]


# ------------------------------------------------------------------------------------------------ replicates

@dataclass
class Replicates:
    """A claim's differences, one per unit (`unit`: seed or configuration), NaN-free; `beyond_plan`: the
    units the committed runs hold beyond the preset's plan, left out of the verdict."""
    diffs: np.ndarray
    unit: str
    pooling: str
    beyond_plan: int = 0


def replicates(claim: Claim, data: PresetData) -> Replicates | None:
    """The claim's per-seed differences, or None when no run of its points is committed."""
    if claim.is_ensemble:
        return _ensemble_replicates(claim, data)
    runs = study_runs(claim, data)
    if runs is None:
        return None
    runs = runs.assign(value=metric_values(runs, claim.metric, claim, data))
    keep = planned(claim, data)
    beyond = len(set(runs[f"axis:{SEED}"]) - set(keep))
    runs = runs[runs[f"axis:{SEED}"].isin(keep)]
    own = runs[runs[f"axis:{claim.axis}"] == format_value(claim.treatment)]
    if claim.control == CHANCE:
        if not len(own):
            return None
        per_seed = own.assign(d=own["value"] - error_at_chance(data.num_classes())).groupby(f"axis:{SEED}")["d"].mean()
        return Replicates(_finite(per_seed), SEED, _pooling(claim, runs, []), beyond)
    other = runs[runs[f"axis:{claim.axis}"] == format_value(claim.control)]
    if not len(own) and not len(other):
        return None
    matched = [c for c in runs.columns if c.startswith("axis:") and c != f"axis:{claim.axis}"
               and c[len("axis:"):] not in claim.free_axes]
    paired = own.merge(other, on=matched, suffixes=("_t", "_c"))
    paired = paired.assign(d=paired["value_t"] - paired["value_c"]).dropna(subset=["d"])
    per_seed = paired.groupby(f"axis:{SEED}")["d"].mean()
    return Replicates(_finite(per_seed), SEED, _pooling(claim, runs, matched), beyond)


def _finite(series: Any) -> np.ndarray:
    values = series.to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _pooling(claim: Claim, runs: Any, matched: list[str]) -> str:
    """Which other axis levels each seed's difference averages over ('' when one cell per seed)."""
    spans = []
    for column in matched:
        key = column[len("axis:"):]
        if key == SEED:
            continue
        levels = sorted(set(runs[column]))
        if len(levels) > 1:
            spans.append(f"{key} ({', '.join(levels)})")
    return ("mean over " + "; ".join(spans) + " per seed") if spans else ""


_OF_SEED = re.compile(r" of seed (\S+) by ")
_OF_RUN = re.compile(r" of (\S+)$")


def _ensemble_replicates(claim: Claim, data: PresetData) -> Replicates | None:
    """Ensemble rows (ensembles.csv): a per-seed kind gives one difference per seed, a per-run kind one per
    run averaged per seed; an ensemble over the seeds gives one per configuration (its unit)."""
    import pandas as pd

    if data.runs is None or not data.has_ensembles(claim.study):
        return None
    table = data.ensembles(claim.study)
    rows = table[table["kind"] == claim.treatment]
    diffs = -rows[ENSEMBLE_REFERENCES[claim.control]].to_numpy(dtype=float)  # gain = reference − ensemble
    labels = rows["label"].astype(str).tolist()
    seed_of_point = {p.point_id: format_value(p.config[SEED]) for p in study_points(data.params, claim.study)
                     if SEED in p.config}
    seeds = [(_OF_SEED.search(label) or _OF_RUN.search(label)) for label in labels]
    seeds = [None if m is None else seed_of_point.get(m.group(1), m.group(1)) if m.re is _OF_RUN else m.group(1)
             for m in seeds]
    if claim.treatment == "seeds" or any(s is None for s in seeds):
        kept = diffs[np.isfinite(diffs)]
        unit = "configuration" if claim.treatment == "seeds" else "ensemble"
        return Replicates(kept, unit, "each ensemble uses every seed of its configuration" if unit == "configuration" else "")
    frame = pd.DataFrame({"seed": seeds, "d": diffs})
    keep = planned(claim, data)
    beyond = len(set(frame["seed"]) - set(keep))
    per_seed = frame[frame["seed"].isin(keep)].groupby("seed")["d"].mean()
    pooling = "mean over the seed's runs" if claim.treatment == "snapshot_of_run" else ""
    return Replicates(_finite(per_seed), SEED, pooling, beyond)


# ------------------------------------------------------------------------------------------------ premises

def control_mean(metric: str) -> Callable[[Claim, PresetData], float]:
    """The mean of `metric` over the control's runs (planned seeds, within `where`)."""
    def measure(claim: Claim, data: PresetData) -> float:
        runs = arm_runs(claim, data, claim.control)
        if runs is None:
            return math.nan
        values = metric_values(runs, metric, claim, data)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    return measure


def treatment_fraction(test: Callable[[Any, PresetData], np.ndarray]) -> Callable[[Claim, PresetData], float]:
    """The fraction of the treatment's runs for which `test(runs, data)` is true."""
    def measure(claim: Claim, data: PresetData) -> float:
        runs = arm_runs(claim, data, claim.treatment)
        return math.nan if runs is None else float(np.mean(test(runs, data)))

    return measure


def control_reaches_loss(claim: Claim, data: PresetData) -> float:
    """The fraction of the control's runs whose training loss reaches the claim's loss_threshold."""
    runs = arm_runs(claim, data, claim.control)
    if runs is None:
        return math.nan
    return float(np.mean([reached for _, reached in _first_epochs_at_loss(runs, claim.loss_threshold, data)]))


def lr_dropped(runs: Any, data: PresetData) -> np.ndarray:
    """Per run: did the learning rate fall below its first epoch's value (curves.csv epoch_lr)?"""
    curves = data.curves()
    if "epoch_lr" not in curves.columns:
        return np.full(len(runs), np.nan)
    result = []
    for pid, study in zip(runs["point_id"], runs["study"]):
        lr = curves[(curves["study"] == study) & (curves["point_id"] == pid)].sort_values("epoch")["epoch_lr"]
        result.append(bool(len(lr)) and bool((lr < lr.iloc[0]).any()))
    return np.asarray(result, dtype=float)


def stopped_early(runs: Any, data: PresetData) -> np.ndarray:
    """Per run: did it stop before its configured epochs (early stopping fired)?"""
    planned_epochs = {p.point_id: p.config["epochs"] for p in study_points(data.params, runs["study"].iloc[0])}
    return np.asarray([float(run < planned_epochs.get(pid, math.inf))
                       for pid, run in zip(runs["point_id"], runs["epochs_run"])])


def class_count_ratio(claim: Claim, data: PresetData) -> float:
    """Largest over smallest class of the training split (class_counts.csv)."""
    counts = data.class_counts()
    train = counts["train"] if "train" in counts.columns else None
    return math.nan if train is None or train.min() <= 0 else float(train.max() / train.min())


def smallest_class(claim: Claim, data: PresetData) -> float:
    counts = data.class_counts()
    return float(counts["train"].min()) if "train" in counts.columns else math.nan


def max_norm_bound(runs: Any, data: PresetData) -> np.ndarray:
    """Per run: did the max-norm constraint rescale some unit (metrics max_norm_rescalings > 0)? NaN for runs
    made before the count was recorded (so the premise reads as not measured)."""
    if "max_norm_rescalings" not in runs.columns:
        return np.full(len(runs), np.nan)
    counts = runs["max_norm_rescalings"].to_numpy(dtype=float)
    return np.where(np.isnan(counts), np.nan, counts > 0)

