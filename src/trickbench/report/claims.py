"""Every claim of the seeds and of Xu et al. as one registry entry, and the verdict rule that turns a preset's
committed runs into `holds` / `contradicted` / `inconclusive` / `not run` (README, "What holds up").

A claim compares two values of ONE axis of one study of one preset (configs/<preset>.yaml): every run
of the treatment value is paired with the run of the control value that agrees on every other axis of
the study (the seed and the rest), d = metric(treatment) − metric(control). `where` keeps only the
runs with the given values of other axes (e.g. "for ReLU"). Two other shapes:
- control CHANCE: one-sample, d = metric(run) − (1 − 1/C), C the classes of the preset's data
  (results/<preset>/data/class_counts.csv), for "does not learn";
- an ensemble claim reads results/<preset>/<study>/ensembles.csv: d = test error of an ensemble − that
  of its reference model (its best member, or the best single model it is set against: the study's, a
  seed's, or the run itself for a run's snapshots), one d per row of the kind.

The rule (`verdict`), with n the number of finite differences:
- n = 0 and no committed run of the claim's points: `not run` (no numbers).
- n < 3: `inconclusive`, effect = mean d, no interval and no p (two pairs give a t-interval on one
  degree of freedom; a bootstrap of two values has three distinct resamples: neither says anything).
- n ≥ 3: 95 % t-interval mean ± t(0.975, n−1)·s/√n (s: sample std, ddof 1); p of the claim's test
  (below), Holm-corrected over the claims of the same preset that have a p;
  `less` / `greater` (expected sign of d): p = two-sided one-sample t-test of the d against 0 (the paired
  t-test); holds if the interval lies on the expected side of 0 AND Holm p < alpha, contradicted if it
  lies on the other side AND Holm p < alpha, else inconclusive;
  `equivalent` (|d| below a margin m): p = TOST, the larger of the one-sided p's against −m and +m;
  holds if the interval lies inside (−m, m) AND Holm p < alpha; contradicted if it lies wholly outside
  [−m, m] (a difference larger than the margin); else inconclusive;
  `at_most` (d below +m, non-inferiority): p = one-sided t-test of H0 d ≥ m; holds if the interval's
  upper end is below m AND Holm p < alpha; contradicted if its lower end is above m; else inconclusive.
  Differences without spread (s = 0): the interval is the point, p = 0 if the tested hypothesis is
  violated by it and 1 otherwise.
Runs whose metric is missing (diverged: non-finite) drop out with their pair, except in claims with
`diverged_as_chance`, where a diverged run's error counts as chance error (it predicts nothing).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trickbench.errors import BadInput
from trickbench.grid import axis_keys, format_value, study_points
from trickbench.registry import Registry

CHANCE = "chance"
DIRECTIONS = ("less", "greater", "equivalent", "at_most")
VERDICTS = ("holds", "contradicted", "inconclusive", "not run")
MIN_PAIRS = 3
ALPHA = 0.05
CONFIDENCE = 0.95
COLUMNS = ["claim_id", "source", "statement", "preset", "study", "metric", "treatment", "control", "expected",
           "effect", "ci_low", "ci_high", "p_holm", "n", "verdict", "paper_effect"]
ENSEMBLE_AXIS = "ensemble"  # an ensemble claim's "axis": the kind of ensemble (ensembles.csv), not a grid axis
ENSEMBLE_REFERENCES = {"best_member": "gain_over_best_member_test_error", "best_single": "gain_test_error"}


class ClaimsError(BadInput, LookupError):
    """A claim that does not fit its preset, or a committed results file the claims cannot read."""


@dataclass(frozen=True)
class Claim:
    claim_id: str
    source: str
    statement: str
    preset: str
    study: str
    axis: str
    treatment: Any
    control: Any
    metric: str
    expected: str
    margin: float = 0.0
    where: dict[str, list[Any]] = field(default_factory=dict)
    diverged_as_chance: bool = False
    loss_threshold: float | None = None  # metric epochs_to_train_loss
    paper: tuple[str, str] | None = None  # (Xu et al.'s table: a paper_table name, its column: train/held_out/test_gap)

    @property
    def expected_text(self) -> str:
        return {"less": "treatment < control", "greater": "treatment > control",
                "equivalent": f"|treatment − control| < {self.margin:g}",
                "at_most": f"treatment − control < {self.margin:g}"}[self.expected]

    @property
    def config_path(self) -> Path:
        return Path("configs") / f"{self.preset}.yaml"


CLAIMS = Registry("claim", extras=("claim",))


def claim(claim_id: str, source: str, statement: str, preset: str, study: str, axis: str, treatment: Any,
          control: Any, metric: str, expected: str, **options: Any) -> Claim:
    if expected not in DIRECTIONS:
        raise ValueError(f"claim {claim_id}: expected must be one of {DIRECTIONS}, got {expected!r}")
    entry = Claim(claim_id, source, statement, preset, study, axis, treatment, control, metric, expected, **options)
    CLAIMS.add(claim_id, lambda data: differences(entry, data), statement, claim=entry)
    return entry


# ------------------------------------------------------------------------------------------------ metrics

def _epochs_to_train_loss(runs: Any, claim: Claim, data: "PresetData") -> Any:
    """First epoch whose training loss is at most claim.loss_threshold (curves.csv); a run that never gets
    there counts as epochs_run + 1 (censored: the claim cannot gain from a run that stops early)."""
    curves = data.curves()
    result = []
    for _, run in runs.iterrows():
        part = curves[(curves["study"] == run["study"]) & (curves["point_id"] == run["point_id"])]
        reached = part[part["train_loss"] <= claim.loss_threshold]["epoch"]
        result.append(float(reached.min()) if len(reached) else float(len(part) + 1) if len(part) else math.nan)
    return result


def _from_diagnosis(column: str) -> Callable[[Any, Claim, "PresetData"], Any]:
    def read(runs: Any, claim: Claim, data: "PresetData") -> Any:
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


# ------------------------------------------------------------------------------------------------ data

class PresetData:
    """The committed results of one preset: its runs table and, on demand, its curves, diagnoses and
    ensemble tables. `runs` is None when the preset has not been run (no runs table)."""

    def __init__(self, params: dict[str, Any], root: Path):
        import pandas as pd

        self.params, self.root = params, root
        self.results = root / params["paths"]["results"]
        self.runs: pd.DataFrame | None = None
        if self.runs_path.is_file():
            self.runs = self._read(self.runs_path, ["study", "point_id", "status"])

    @property
    def runs_path(self) -> Path:
        return self.results / "runs.csv"

    def _read(self, path: Path, required: list[str]) -> Any:
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
        return self._read(self.results / "curves.csv", ["study", "point_id", "epoch", "train_loss"])

    def diagnosis(self, study: str) -> Any:
        return self._read(self.results / study / "diagnosis.csv", ["point_id"])

    def ensembles(self, study: str) -> Any:
        return self._read(self.results / study / "ensembles.csv", ["kind", *ENSEMBLE_REFERENCES.values()])

    def num_classes(self) -> int:
        return len(self._read(self.results / "data" / "class_counts.csv", ["class"]))

    def scale(self) -> str:
        """What the preset's committed runs were: model, width, data and training images (class counts), and
        the epochs they ran (from the runs, not the config, which may have changed since)."""
        train = self.params["train"]
        text = f"{train['model']} width {train['width']}, {self.params['data']['source']}"
        counts = self.results / "data" / "class_counts.csv"
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


# ------------------------------------------------------------------------------------------------ claims

def check_claim(claim: Claim, params: dict[str, Any]) -> None:
    """Raise ClaimsError unless the claim's study, axis, values and `where` exist in the preset's grid."""
    where = f"claim {claim.claim_id}: {claim.config_path}"
    if claim.study not in params["studies"]:
        raise ClaimsError(f"{where}: no study {claim.study!r} (studies: {', '.join(params['studies'])})")
    points = study_points(params, claim.study)
    keys = axis_keys(points)
    if claim.axis == ENSEMBLE_AXIS:
        if claim.control not in ENSEMBLE_REFERENCES:
            raise ClaimsError(f"{where}: ensemble control must be one of {', '.join(ENSEMBLE_REFERENCES)}")
        if claim.treatment in ("seeds", "top_k_of_seed") and "seed" not in keys:
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


def _study_runs(claim: Claim, data: PresetData) -> Any:
    """The study's committed runs joined to their grid points' configuration values (axes a block does not
    vary take the base value), only runs of the current grid; None if none is committed."""
    import pandas as pd

    if data.runs is None:
        return None
    points = study_points(data.params, claim.study)
    keys = axis_keys(points)
    grid = pd.DataFrame([{"point_id": p.point_id, **{f"axis:{k}": format_value(p.config[k]) for k in keys}}
                         for p in points])
    runs = data.runs[data.runs["study"] == claim.study].drop_duplicates("point_id", keep="last")
    joined = runs.merge(grid, on="point_id", how="inner")
    for key, allowed in claim.where.items():
        joined = joined[joined[f"axis:{key}"].isin([format_value(v) for v in allowed])]
    return joined if len(joined) else None


def _metric_values(runs: Any, claim: Claim, data: PresetData) -> Any:
    import numpy as np

    if claim.metric in DERIVED_METRICS:
        values = np.asarray(DERIVED_METRICS.get(claim.metric)(runs, claim, data), dtype=float)
    elif claim.metric in runs.columns:
        try:
            values = runs[claim.metric].to_numpy(dtype=float)
        except ValueError:
            raise ClaimsError(f"{data.runs_path}: column {claim.metric!r} is not numeric (claim {claim.claim_id})") from None
    else:
        raise ClaimsError(f"{data.runs_path}: no column {claim.metric!r} (claim {claim.claim_id}); "
                          f"derived metrics: {', '.join(DERIVED_METRICS.names())}")
    usable = (runs["status"] == "completed").to_numpy()
    values = np.where(usable & np.isfinite(values), values, np.nan)
    if claim.diverged_as_chance:
        values = np.where((runs["status"] == "diverged").to_numpy(), 1.0 - 1.0 / data.num_classes(), values)
    return values


def differences(claim: Claim, data: PresetData) -> Any:
    """The claim's differences d (a float array, NaN-free), or None when no run of its points is committed."""
    import numpy as np

    if claim.axis == ENSEMBLE_AXIS:
        if data.runs is None or not (data.results / claim.study / "ensembles.csv").is_file():
            return None
        table = data.ensembles(claim.study)
        rows = table[table["kind"] == claim.treatment]
        gains = rows[ENSEMBLE_REFERENCES[claim.control]].to_numpy(dtype=float)
        return -gains[np.isfinite(gains)]  # gain = reference − ensemble; d = ensemble − reference
    runs = _study_runs(claim, data)
    if runs is None:
        return None
    runs = runs.assign(value=_metric_values(runs, claim, data))
    own = runs[runs[f"axis:{claim.axis}"] == format_value(claim.treatment)]
    if claim.control == CHANCE:
        diffs = own["value"].to_numpy(dtype=float) - (1.0 - 1.0 / data.num_classes())
        return diffs[np.isfinite(diffs)] if len(own) else None
    other = runs[runs[f"axis:{claim.axis}"] == format_value(claim.control)]
    if not len(own) and not len(other):
        return None
    pair_keys = [c for c in runs.columns if c.startswith("axis:") and c != f"axis:{claim.axis}"]
    paired = own.merge(other, on=pair_keys, suffixes=("_t", "_c"))
    diffs = (paired["value_t"] - paired["value_c"]).to_numpy(dtype=float)
    return diffs[np.isfinite(diffs)]


# ------------------------------------------------------------------------------------------------ verdicts

@dataclass
class Evidence:
    n: int
    effect: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    verdict: str = "not run"


def interval_and_p(diffs: Any, claim: Claim) -> Evidence:
    """Mean, 95 % t-interval and the claim's p of the differences (before any correction)."""
    import numpy as np
    from scipy import stats

    n = len(diffs)
    evidence = Evidence(n=n, effect=float(np.mean(diffs)) if n else math.nan, verdict="inconclusive")
    if n < MIN_PAIRS:
        return evidence
    mean, std, df = evidence.effect, float(np.std(diffs, ddof=1)), n - 1
    se = std / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    evidence.ci_low, evidence.ci_high = mean - half, mean + half
    m = claim.margin

    def upper_tail(t_stat_numerator: float) -> float:  # P(T >= (numerator)/se)
        if se == 0:
            return 0.0 if t_stat_numerator > 0 else 1.0
        return float(stats.t.sf(t_stat_numerator / se, df))

    if claim.expected in ("less", "greater"):
        evidence.p = 1.0 if se == 0 and mean == 0 else 0.0 if se == 0 else float(2 * stats.t.sf(abs(mean) / se, df))
    elif claim.expected == "equivalent":  # TOST: H0a d <= -m, H0b d >= m
        evidence.p = max(upper_tail(mean + m), upper_tail(m - mean))
    else:  # at_most: H0 d >= m
        evidence.p = upper_tail(m - mean)
    return evidence


def decide(evidence: Evidence, claim: Claim, alpha: float = ALPHA) -> str:
    if evidence.n == 0 and evidence.verdict == "not run":
        return "not run"
    if evidence.n < MIN_PAIRS or math.isnan(evidence.ci_low):
        return "inconclusive"
    low, high, significant, m = evidence.ci_low, evidence.ci_high, evidence.p_holm < alpha, claim.margin
    if claim.expected == "less":
        return "holds" if high < 0 and significant else "contradicted" if low > 0 and significant else "inconclusive"
    if claim.expected == "greater":
        return "holds" if low > 0 and significant else "contradicted" if high < 0 and significant else "inconclusive"
    if claim.expected == "equivalent":
        if -m < low and high < m and significant:
            return "holds"
        return "contradicted" if low > m or high < -m else "inconclusive"
    return "holds" if high < m and significant else "contradicted" if low > m else "inconclusive"


def evaluate(claims: list[Claim], data_of: Callable[[str], PresetData], alpha: float = ALPHA) -> list[Evidence]:
    """Evidence for every claim; p Holm-corrected over the claims of each preset."""
    from trickbench.report.tables import holm

    results: list[Evidence] = []
    for entry in claims:
        diffs = differences(entry, data_of(entry.preset))
        results.append(Evidence(n=0) if diffs is None else interval_and_p(diffs, entry))
    for preset in dict.fromkeys(c.preset for c in claims):
        indices = [i for i, c in enumerate(claims) if c.preset == preset]
        for i, adjusted in zip(indices, holm([results[i].p for i in indices])):
            results[i].p_holm = adjusted
    for entry, evidence in zip(claims, results):
        evidence.verdict = decide(evidence, entry, alpha)
    return results


def claims_table(claims: list[Claim] | None = None, root: Path = Path("."), alpha: float = ALPHA) -> tuple[Any, dict[str, str]]:
    """The claims table (one row per claim, COLUMNS) and each preset's scale, from the committed results
    under `root` (each preset's paths.results, relative to root)."""
    import pandas as pd

    from trickbench.params import load_params

    claims = claims if claims is not None else [entry.extra["claim"] for entry in CLAIMS]
    loaded: dict[str, PresetData] = {}

    def data_of(preset: str) -> PresetData:
        if preset not in loaded:
            entry = next(c for c in claims if c.preset == preset)
            params = load_params(root / entry.config_path)
            loaded[preset] = PresetData(params, root)
        return loaded[preset]

    for entry in claims:
        check_claim(entry, data_of(entry.preset).params)
    evidence = evaluate(claims, data_of, alpha)
    def side(entry: Claim, value: Any) -> str:  # the `where` filter applies to both sides of a pair
        if value == CHANCE:
            return "chance error (1 − 1/classes)"
        return f"{entry.axis}={format_value(value)}" + "".join(
            f"; {k}={'/'.join(map(format_value, v))}" for k, v in entry.where.items())

    rows = [{"claim_id": c.claim_id, "source": c.source, "statement": c.statement, "preset": c.preset,
             "study": c.study, "metric": c.metric, "treatment": side(c, c.treatment), "control": side(c, c.control),
             "expected": c.expected_text, "effect": e.effect, "ci_low": e.ci_low, "ci_high": e.ci_high,
             "p_holm": e.p_holm, "n": e.n, "verdict": e.verdict, "paper_effect": paper_effect(c)}
            for c, e in zip(claims, evidence)]
    return pd.DataFrame(rows, columns=COLUMNS), {p: d.scale() for p, d in loaded.items()}


def paper_effect(claim: Claim) -> float:
    """The paper's own treatment − control (Xu et al.'s tables: single runs, no interval); NaN for a claim
    no paper table answers."""
    if claim.paper is None:
        return math.nan
    from trickbench.report.paper import reference

    name, column = claim.paper
    rows = reference(name).rows

    def value(activation: str) -> float:
        train, held_out = rows[activation]
        return {"train": train, "held_out": held_out, "test_gap": held_out - train}[column]

    return value(claim.treatment) - value(claim.control)


def preset_claims(params: dict[str, Any], root: Path = Path(".")) -> list[Claim]:
    """The claims of the preset whose results folder `params` writes (its configs/<preset>.yaml names the
    same paths.results): the report stage gives them their verdicts; other params have none."""
    import yaml

    target = (root / params["paths"]["results"]).resolve()
    results_of: dict[str, Path | None] = {}
    found = []
    for entry in (registered.extra["claim"] for registered in CLAIMS):
        if entry.preset not in results_of:
            config = root / entry.config_path
            settings = yaml.safe_load(config.read_text()) if config.is_file() else None
            folder = (settings or {}).get("paths", {}).get("results")
            results_of[entry.preset] = (root / folder).resolve() if folder else None
        if results_of[entry.preset] == target:
            found.append(entry)
    return found


def _cell(value: Any, column: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if column == "p_holm":
        return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"
    if isinstance(value, float):
        return f"{value:+.4f}"
    return str(value).replace("|", "\\|")  # a bare pipe would split the Markdown cell


def claims_markdown(table: Any, scales: dict[str, str], alpha: float = ALPHA) -> str:
    counts = table["verdict"].value_counts()
    lines = ["# What holds up: the claims of the seeds and of Xu et al., against the committed runs", "",
             f"Made by `trickbench claims` from every preset's committed `results/<preset>/` "
             f"({len(table)} claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ").",
             f"effect = treatment − control, paired over seeds and the study's other axes; ci: 95 % t-interval "
             f"of the paired differences (none for n < {MIN_PAIRS}); p_holm: the claim's test (paired t, TOST "
             f"for equivalence, one-sided for at-most), Holm-corrected over the claims of the preset; holds / "
             f"contradicted need the interval on the expected / other side and p_holm < {alpha:g} "
             "(README, \"What holds up\"). A verdict is about the preset's scale, printed above its rows, not "
             "about the paper's.", ""]
    shown = [c for c in COLUMNS if c not in ("preset",)]
    for preset, part in table.groupby("preset", sort=False):
        lines += [f"## {preset}", "", f"Scale: {scales.get(preset, '?')}.", "",
                  "| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
        for _, row in part.iterrows():
            lines.append("| " + " | ".join(_cell(row[c], c) for c in shown) + " |")
        lines.append("")
    return "\n".join(lines)


README_TABLE = ("<!-- claims:table:begin -->", "<!-- claims:table:end -->")


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.4f}"


def readme_table(table: Any) -> str:
    """The README's claims table ("What holds up"): one row per claim, the verdicts that decide in bold."""
    lines = ["| claim | preset | metric | effect | 95 % CI | Holm p | n | verdict | paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        interval = "" if math.isnan(row["ci_low"]) else f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        p_holm = "" if math.isnan(row["p_holm"]) else f"{row['p_holm']:.2g}"
        verdict = f"**{row['verdict']}**" if row["verdict"] in ("holds", "contradicted") else row["verdict"]
        cells = [_cell(row["statement"], "statement"), f"`{row['preset']}`", row["metric"], _signed(row["effect"]),
                 interval, p_holm, str(row["n"]), verdict, _signed(row["paper_effect"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_parts(path: Path) -> tuple[str, str]:
    """The README's text before and after its claims table (ClaimsError unless one README_TABLE pair)."""
    begin, end = README_TABLE
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ClaimsError(f"{path}: unreadable ({type(error).__name__}); expected the README to update") from None
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ClaimsError(f"{path}: expected one {begin} line before one {end} line around the claims table")
    head, rest = text.split(begin)
    return head + begin, end + rest.split(end, 1)[1]


def update_readme(path: Path, table: Any) -> None:
    """Replace the table between the README_TABLE markers of `path` by readme_table(table)."""
    from trickbench.io import write_text

    head, tail = readme_parts(path)
    write_text(path, f"{head}\n{readme_table(table)}\n{tail}")


def write_claims(out_dir: Path, root: Path = Path("."), claims: list[Claim] | None = None) -> tuple[Any, dict[str, str]]:
    """results/claims.csv and results/claims.md; nothing is written unless every preset's results read."""
    from trickbench.io import atomic_path, write_text

    table, scales = claims_table(claims, root)
    with atomic_path(out_dir / "claims.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_text(out_dir / "claims.md", claims_markdown(table, scales))
    return table, scales


# ------------------------------------------------------------------------------------------------ the claims
# Sources: W = Wei, "Must Know Tips/Tricks in Deep Neural Networks" (seeds/004), T = "Tips and Tricks for
# Deep Learning" (seeds/002), X = Xu et al. 2015 Tables 3-5 (docs/reproduction.md §1).
W, T, X = "Wei, Must Know Tips/Tricks", "Tips and Tricks for DL", "Xu et al. 2015"
_NON_ZERO_INITS = ["lecun_normal", "xavier_uniform", "he_normal"]

claim("init-zeros-no-learning", f"{W} §3 (all zero initialization)",
      "All-zero initialization does not learn: its test error stays at chance.",
      "seed-initializers", "initializers", "initializer", "zeros", CHANCE, "test_error", "equivalent", margin=0.05)
for _init in _NON_ZERO_INITS:
    claim(f"init-small-random-slower-than-{_init.split('_')[0]}", f"{W} §3 (small random numbers, calibrating the variances)",
          f"Small random weights (0.001·N(0,1)) learn slower than {_init}: a higher training loss after the same epochs.",
          "seed-initializers", "initializers", "initializer", "small_random", _init, "train_loss", "greater")
claim("init-he-beats-xavier-relu", f"{W} §3 (current recommendation); {T} (Xavier initialization)",
      "For ReLU, He initialization gives a lower test error than Xavier's.",
      "seed-initializers", "initializers", "initializer", "he_normal", "xavier_uniform", "test_error", "less",
      where={"activation": ["relu"]})
for _act in ("sigmoid", "tanh"):
    claim(f"act-{_act}-slower-than-relu", f"{W} §5 (ReLU pros: converges much faster than sigmoid/tanh)",
          f"{_act} learns slower than ReLU: a higher training loss after the same epochs (non-zero initializations).",
          "seed-initializers", "initializers", "activation", _act, "relu", "train_loss", "greater",
          where={"initializer": _NON_ZERO_INITS})
claim("act-tanh-beats-sigmoid", f"{W} §5 (tanh: zero-centred, always preferred to sigmoid)",
      "tanh learns faster than sigmoid: a lower training loss after the same epochs (non-zero initializations).",
      "seed-initializers", "initializers", "activation", "tanh", "sigmoid", "train_loss", "less",
      where={"initializer": _NON_ZERO_INITS})

claim("lr-too-high-fails", f"{W} §7 Fig. 1 (very high learning rate)",
      "Too high a learning rate (1.0) diverges or stalls: a higher final training error than 0.01 (diverged = chance).",
      "seed-learning-rates", "learning_rates", "lr", 1.0, 0.01, "train_error", "greater", diverged_as_chance=True)
claim("lr-too-low-linear", f"{W} §7 Fig. 1-2 (low learning rate: too linear)",
      "Too low a learning rate (1e-4) leaves the loss falling near-linearly: late/early decline ratio above 0.01's.",
      "seed-learning-rates", "learning_rates", "lr", 0.0001, 0.01, "late_over_early", "greater")
claim("lr-too-low-slow", f"{W} §7 Fig. 1 (low learning rate: loss decreases very slowly)",
      "Too low a learning rate (1e-4) ends at a higher training loss than 0.01 after the same epochs.",
      "seed-learning-rates", "learning_rates", "lr", 0.0001, 0.01, "train_loss", "greater")
claim("lr-plateau-beats-constant", f"{W} §4 (learning rate: divide by 2 or 5 when validation stops improving)",
      "Dividing the rate when the validation loss stalls beats a constant rate (start 0.1): lower test error.",
      "seed-learning-rates", "plateau", "schedule", "plateau", "constant", "test_error", "less")

for _prep in ("zero_center", "normalize"):
    claim(f"prep-{_prep.replace('_', '-')}-beats-raw", f"{W} §2 (zero-center, normalize)",
          f"Pre-processing by {_prep.replace('_', '-')} gives a lower test error than raw pixels.",
          "seed-augmentations", "preprocessing", "preprocessing", _prep, "none", "test_error", "less")
for _aug, _name in ((["flip", "crop"], "flip-crop"), (["color_jitter"], "color-jitter"), (["hsv"], "hsv"),
                    (["fancy_pca"], "fancy-pca")):
    claim(f"aug-{_name}-reduces-test-error", f"{W} §1 (data augmentation)",
          f"Augmenting with {'+'.join(_aug)} reduces test error against no augmentation.",
          "seed-augmentations", "augmentations", "augmentations", _aug, [], "test_error", "less")

for _reg in ("l2", "dropout", "max_norm"):
    claim(f"reg-{_reg.replace('_', '-')}-shrinks-gap", f"{W} §6 and §7 Fig. 3 (regularization closes the gap)",
          f"{_reg} shrinks the train/validation error gap against no regularization.",
          "seed-regularizers", "regularizers", "regularizers", [_reg], [], "gap", "less")
claim("reg-batch-norm-faster", f"{T} (batch normalization speeds up learning)",
      "Batch normalization reaches a training loss of 1.0 in fewer epochs than no normalization.",
      "seed-regularizers", "regularizers", "regularizers", ["batch_norm"], [], "epochs_to_train_loss", "less",
      loss_threshold=1.0)
claim("reg-early-stopping-keeps-accuracy", f"{T} (early stopping)",
      "Early stopping does not lose test accuracy: its test error is at most 0.01 above training to the end.",
      "seed-regularizers", "regularizers", "regularizers", ["early_stopping"], [], "test_error", "at_most",
      margin=0.01)

claim("ens-seeds-beat-best-member", f"{W} §8 (same model, different initialization)",
      "An ensemble of one configuration's seeds has a lower test error than its best seed (chosen on validation).",
      "seed-regularizers", "regularizers", ENSEMBLE_AXIS, "seeds", "best_member", "test_error", "less")
claim("ens-top-k-beats-best-single", f"{W} §8 (top models discovered during cross-validation)",
      "The top-k models (by validation loss) together beat the best single model on test error (within each seed).",
      "seed-regularizers", "regularizers", ENSEMBLE_AXIS, "top_k_of_seed", "best_single", "test_error", "less")
claim("ens-snapshot-beats-best-single", f"{W} §8 (different checkpoints of a single model)",
      "A run's last epochs' checkpoints together beat that run alone on test error (every run).",
      "seed-regularizers", "regularizers", ENSEMBLE_AXIS, "snapshot_of_run", "best_single", "test_error", "less")
claim("ens-snapshot-cycles-beat-run", f"{W} §8 (different checkpoints of a single model), with warm restarts",
      "With warm restarts (3 cosine cycles), the models at the cycles' ends together beat the run's final model on test "
      "error (Huang et al. 2017).",
      "seed-learning-rates", "snapshot", ENSEMBLE_AXIS, "snapshot_of_run", "best_single", "test_error", "less")

for _balance in ("oversample", "undersample", "class_weighted_loss"):
    claim(f"imbalance-{_balance.replace('_', '-')}-improves", f"{W} Miscellaneous (class imbalance)",
          f"{_balance} lowers the test log-loss on the imbalanced NDSB subset against plain sampling.",
          "seed-class-imbalance", "class_balance", "class_balance", _balance, "none", "test_loss", "less")
    claim(f"imbalance-{_balance.replace('_', '-')}-minority-recall", f"{W} Miscellaneous (class imbalance)",
          f"{_balance} raises the test mean per-class recall (every class weighs the same) on the NDSB subset.",
          "seed-class-imbalance", "class_balance", "class_balance", _balance, "none", "test_mean_recall", "greater")

_TABLES = {"cifar10": ("scaled-cifar10", "Table 3 (CIFAR-10)", "test_error", "train_error"),
           "cifar100": ("paper-cifar100", "Table 4 (CIFAR-100)", "test_error", "train_error"),
           "ndsb": ("scaled-ndsb", "Table 5 (NDSB)", "test_loss", "train_loss_running")}
_LABEL = {"relu": "ReLU", "leaky_relu_a100": "Leaky ReLU a=100", "leaky_relu_a5.5": "Leaky ReLU a=5.5",
          "prelu": "PReLU", "rrelu": "RReLU"}


def _xu(claim_id: str, table: str, statement: str, treatment: str, control: str, which: str, expected: str,
        **options: Any) -> None:
    preset, name, held_out, train_metric = _TABLES[table]
    metric = {"held_out": held_out, "train": train_metric}.get(which, which)
    claim(claim_id, f"{X} {name}", statement, preset, "activations", "activation", treatment, control, metric,
          expected, paper=(table, which), **options)


for _act in ("leaky_relu_a5.5", "prelu", "rrelu"):
    _xu(f"xu-c10-{_act.replace('_', '-')}-beats-relu", "cifar10", f"{_LABEL[_act]} has a lower CIFAR-10 test error than ReLU.",
        _act, "relu", "held_out", "less")
_xu("xu-c10-a100-same-as-relu", "cifar10", "Leaky ReLU a=100 does not differ from ReLU on CIFAR-10 (test error within 0.01).",
    "leaky_relu_a100", "relu", "held_out", "equivalent", margin=0.01)
_xu("xu-c10-a5.5-beats-a100", "cifar10", "The larger leaky slope (a=5.5) beats the smaller (a=100) on CIFAR-10 test error.",
    "leaky_relu_a5.5", "leaky_relu_a100", "held_out", "less")
_xu("xu-c10-prelu-lowest-train-vs-relu", "cifar10", "PReLU reaches a lower CIFAR-10 training error than ReLU.",
    "prelu", "relu", "train", "less")
_xu("xu-c10-prelu-lowest-train-vs-a100", "cifar10",
    "PReLU reaches a lower CIFAR-10 training error than Leaky ReLU a=100 (the paper's runner-up).",
    "prelu", "leaky_relu_a100", "train", "less")
_xu("xu-c10-rrelu-regularizes", "cifar10", "RReLU overfits less than ReLU: a smaller test − train error gap on CIFAR-10.",
    "rrelu", "relu", "test_gap", "less")
for _act in ("leaky_relu_a100", "leaky_relu_a5.5", "prelu", "rrelu"):
    _xu(f"xu-c100-{_act.replace('_', '-')}-beats-relu", "cifar100",
        f"{_LABEL[_act]} has a lower CIFAR-100 test error than ReLU.", _act, "relu", "held_out", "less")
_xu("xu-c100-prelu-lowest-train", "cifar100", "PReLU reaches a lower CIFAR-100 training error than ReLU.",
    "prelu", "relu", "train", "less")
for _act in ("relu", "leaky_relu_a5.5", "prelu"):
    _xu(f"xu-ndsb-rrelu-beats-{_act.replace('_', '-')}", "ndsb",
        f"RReLU has a lower NDSB held-out log-loss than {_LABEL[_act]}.", "rrelu", _act, "held_out", "less")
_xu("xu-ndsb-prelu-lowest-train", "ndsb", "PReLU reaches a lower NDSB training log-loss (training mode) than ReLU.",
    "prelu", "relu", "train", "less")
