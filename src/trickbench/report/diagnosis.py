"""Automatic diagnosis of a run from its curves: the seed's §7 reading ("Insights from Figures") as rules.

Seed §7: a too-high learning rate gives a strange loss curve that rises or does not decrease much (or
diverges); a too-low one makes the loss decrease slowly and almost linearly; a large gap between
training and validation accuracy means overfitting; no gap at a low accuracy means underfitting (low
learnability). Each rule is a threshold on one number computed from the run (report.diagnosis.*), and
the report prints the numbers beside the verdict so a reader can check it.

The numbers (training loss per epoch L_1..L_E from history.csv, m = ceil(E / 2)):
- drop       = (L_ref − L_E) / L_ref with L_ref the chance-level loss ln C for C classes where C is known
               (else the first batch's loss): how much of it training removed (≈ 0: learned nothing);
- rise       = (L_E − min L) / min L, how far the final loss lies above the lowest one;
- late/early = per-epoch decline over epochs m..E divided by that over epochs 1..m: ≈ 1 for a straight
               line, ≪ 1 for a healthy decelerating curve;
- steady     = fraction of epoch-to-epoch changes of L that are decreases (1: falls every epoch);
- gap        = val_error − train_error at the end (evaluation mode, metrics.json), i.e. train − val accuracy;
- val rise   = (final val loss − min val loss) / min val loss;
- train err  = final training error (evaluation mode);
- batch width = std / mean of the batch losses of the last epoch (the seed's curve "width"; shown, and
               flagged only if report.diagnosis.noisy_batch_cv is set).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

VERDICTS = {
    "diverged": "diverged: the loss became non-finite (learning rate far too high?)",
    "lr_too_high": "learning rate too high: the loss rises again or hardly decreases without falling steadily "
                   "(stalls; a stall can also come from an all-zero initialisation or saturated units)",
    "lr_too_low": "learning rate too low: slow decline of the loss, near-linear or a steady crawl that removes little",
    "overfitting": "overfitting: large train/validation gap or a rising validation loss (regularise more)",
    "underfitting": "underfitting: high training error without a gap (more capacity or training)",
    "noisy_batches": "wide per-batch loss: large batch-to-batch variance (larger batches)",
    "ok": "no rule fired",
}


@dataclass(frozen=True)
class Thresholds:
    min_epochs: int = 3
    lr_high_rise: float = 0.10
    lr_high_min_drop: float = 0.10
    lr_low_linearity: float = 0.60
    lr_low_steady: float = 0.80
    lr_low_max_drop: float = 0.50
    overfit_gap: float = 0.10
    overfit_val_rise: float = 0.15
    underfit_train_error: float = 0.25
    noisy_batch_cv: float | None = None

    @classmethod
    def from_params(cls, settings: dict[str, Any]) -> "Thresholds":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})


@dataclass
class Diagnosis:
    verdicts: list[str]
    evidence: dict[str, float]
    notes: list[str]

    @property
    def verdict(self) -> str:
        return ", ".join(self.verdicts)


def _finite(values: list[float]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def diagnose(history: pd.DataFrame, final: dict[str, Any], thresholds: Thresholds,
             batches: pd.DataFrame | None = None, num_classes: int | None = None) -> Diagnosis:
    """Apply the rules to one run. history: columns epoch, train_loss, val_loss (per epoch);
    final: status, train_error, val_error (metrics.json); batches: columns epoch, batch, loss;
    num_classes: C, for the chance-level loss ln C that `drop` is measured against.

    A stalled loss is read as "learning rate too high" as the seed does; other causes stall it too
    (all-zero initialisation, saturated sigmoids), which the note beside the verdict leaves to the reader."""
    t = thresholds
    evidence: dict[str, float] = {}
    notes: list[str] = []
    verdicts: list[str] = []
    losses = [float(v) for v in history["train_loss"]] if len(history) else []
    if final.get("status") == "diverged" or not _finite(losses):
        evidence["epochs"] = float(len(losses))
        return Diagnosis(["diverged"], evidence, notes)

    reference = losses[0] if losses else math.nan
    if batches is not None and len(batches):
        initial = float(batches.sort_values(["epoch", "batch"])["loss"].iloc[0])
        reference = initial if math.isfinite(initial) else reference
        last_epoch = batches[batches["epoch"] == batches["epoch"].max()]["loss"].astype(float)
        if len(last_epoch) > 1 and last_epoch.mean() > 0:
            evidence["batch_cv"] = float(last_epoch.std(ddof=1) / last_epoch.mean())
    if num_classes is not None and num_classes > 1:
        reference = math.log(num_classes)
    epochs = len(losses)
    evidence["epochs"] = float(epochs)
    if epochs:
        last, lowest = losses[-1], min(losses)
        evidence["drop"] = (reference - last) / reference if reference > 0 else math.nan
        evidence["rise"] = (last - lowest) / lowest if lowest > 0 else math.nan
    if epochs >= 3:
        m = math.ceil(epochs / 2)  # 1-based middle epoch
        early = (losses[0] - losses[m - 1]) / (m - 1)
        late = (losses[m - 1] - losses[-1]) / (epochs - m)
        evidence["late_over_early"] = late / early if early > 0 else math.nan
        changes = [b - a for a, b in zip(losses, losses[1:])]
        evidence["steady"] = sum(c < 0 for c in changes) / len(changes)
    val = [float(v) for v in history["val_loss"]] if "val_loss" in history and len(history) else []
    if val and _finite(val) and min(val) > 0:
        evidence["val_rise"] = (val[-1] - min(val)) / min(val)
    train_error, val_error = final.get("train_error"), final.get("val_error")
    if train_error is not None and math.isfinite(train_error):
        evidence["train_error"] = float(train_error)
        if val_error is not None and math.isfinite(val_error):
            evidence["gap"] = float(val_error) - float(train_error)

    shape_ok = epochs >= t.min_epochs
    if not shape_ok:
        notes.append(f"{epochs} epoch(s) < min_epochs {t.min_epochs}: learning-rate rules skipped")
    drop, rise, ratio, steady = (evidence.get(k, math.nan) for k in ("drop", "rise", "late_over_early", "steady"))
    # a loss that hardly moves is a too-high rate if it bounces, a too-low one if it falls every epoch
    steady_decline = steady >= t.lr_low_steady
    if shape_ok:
        if rise > t.lr_high_rise:
            verdicts.append("lr_too_high")
            notes.append(f"the loss ends {rise:.0%} above its minimum")
        elif drop < t.lr_high_min_drop and not steady_decline:
            verdicts.append("lr_too_high")
            notes.append(f"stalled: the loss removed only {drop:.0%} of its starting level, without a steady decline")
        elif steady_decline and drop < t.lr_high_min_drop:
            verdicts.append("lr_too_low")
            notes.append(f"crawled: the loss fell in {steady:.0%} of the epochs but removed only {drop:.0%} of its "
                         "starting level")
        elif steady_decline and ratio >= t.lr_low_linearity and drop < t.lr_low_max_drop:
            verdicts.append("lr_too_low")
    gap, val_rise = evidence.get("gap", math.nan), evidence.get("val_rise", math.nan)
    if gap > t.overfit_gap or (shape_ok and val_rise > t.overfit_val_rise):
        verdicts.append("overfitting")
    elif evidence.get("train_error", math.nan) > t.underfit_train_error:
        verdicts.append("underfitting")
    if t.noisy_batch_cv is not None and evidence.get("batch_cv", math.nan) > t.noisy_batch_cv:
        verdicts.append("noisy_batches")
    return Diagnosis(verdicts or ["ok"], evidence, notes)


EVIDENCE_FORMAT = {
    "drop": ("drop", "{:.0%}"), "rise": ("rise", "{:.0%}"), "late_over_early": ("late/early", "{:.2f}"),
    "steady": ("steady", "{:.0%}"), "gap": ("gap", "{:+.3f}"), "val_rise": ("val rise", "{:.0%}"), "train_error": ("train err", "{:.3f}"),
    "batch_cv": ("batch width", "{:.2f}"), "epochs": ("epochs", "{:.0f}"),
}


def evidence_text(evidence: dict[str, float]) -> str:
    parts = []
    for key, (label, fmt) in EVIDENCE_FORMAT.items():
        value = evidence.get(key)
        if value is not None and math.isfinite(value):
            parts.append(f"{label} {fmt.format(value)}")
    return ", ".join(parts)


def diagnosis_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """rows: {point_id, status, diagnosis: Diagnosis} -> one numeric row per run (the CSV)."""
    records = []
    for row in rows:
        diagnosis: Diagnosis = row["diagnosis"]
        record = {"point_id": row["point_id"], "status": row["status"], "verdict": diagnosis.verdict}
        record.update({key: diagnosis.evidence.get(key, math.nan) for key in EVIDENCE_FORMAT})
        record["notes"] = "; ".join(diagnosis.notes)
        records.append(record)
    columns = ["point_id", "status", "verdict", *EVIDENCE_FORMAT, "notes"]
    return pd.DataFrame(records, columns=columns)


def diagnosis_markdown(study: str, rows: list[dict[str, Any]], thresholds: Thresholds) -> str:
    t = thresholds
    lines = [
        f"# Diagnosis of study `{study}` (seed §7, automatic)",
        "",
        "One line per run: the verdict of the seed's reading of its curves, and the numbers it rests on.",
        f"Rules (report.diagnosis.*): diverged = non-finite loss; lr_too_high = final training loss more than "
        f"{t.lr_high_rise:.0%} above its minimum, or a drop below {t.lr_high_min_drop:.0%} of the chance-level "
        f"loss without a steady decline; lr_too_low = a steady (≥ {t.lr_low_steady:.0%} of epochs falling), "
        f"near-linear (late/early ≥ {t.lr_low_linearity:g}) decline with a drop below {t.lr_low_max_drop:.0%}; "
        f"overfitting = gap (val − train error) > {t.overfit_gap:g} or "
        f"validation loss more than {t.overfit_val_rise:.0%} above its minimum; underfitting = training error > "
        f"{t.underfit_train_error:g} without such a gap"
        + (f"; noisy_batches = last-epoch batch-loss std/mean > {t.noisy_batch_cv:g}" if t.noisy_batch_cv else "")
        + f". Learning-rate rules need ≥ {t.min_epochs} epochs.",
        "",
    ]
    counts: dict[str, int] = {}
    for row in rows:
        for verdict in row["diagnosis"].verdicts:
            counts[verdict] = counts.get(verdict, 0) + 1
    lines.append("Summary: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no runs") + ".")
    lines.append("")
    for row in rows:
        diagnosis: Diagnosis = row["diagnosis"]
        evidence = evidence_text(diagnosis.evidence)
        note = f" ({'; '.join(diagnosis.notes)})" if diagnosis.notes else ""
        lines.append(f"- `{row['point_id']}`: **{diagnosis.verdict}** — {evidence}{note}")
    lines += ["", "Verdicts:", *[f"- {key}: {text}" for key, text in VERDICTS.items()], ""]
    return "\n".join(lines)
