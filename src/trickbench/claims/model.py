"""What a claim is: one statement of the seeds or of Xu et al., the preset and study whose committed runs
test it, the comparison (treatment against control on one axis, or an ensemble against its reference),
the smallest effect of interest, and the premises under which the statement is meant.

The unit of replication is the seed: a claim's differences are formed within each seed (treatment minus
control on the same seed), averaged over the study's other axis levels that the claim spans (`pooling`),
so n is the number of independent seeds. An ensemble-over-seeds claim has one difference per
configuration (its unit is the configuration, said in the table)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trickbench.errors import BadInput
from trickbench.registry import Registry

CHANCE = "chance"
ENSEMBLE_AXIS = "ensemble"  # an ensemble claim's "axis": the kind of ensemble (ensembles.csv), not a grid axis
DIRECTIONS = ("less", "greater", "equivalent", "at_most")


class ClaimsError(BadInput, LookupError):
    """A claim that does not fit its preset, or a committed results file the claims cannot read."""


@dataclass(frozen=True)
class Premise:
    """A condition under which a claim's statement is meant, measured on the committed runs.
    `measure(claim, data)` returns the measured value (nan: not measured); the premise holds when the value
    is at most (`at_most`) or at least (`at_least`) the threshold. `source` says where the threshold comes
    from (committed before the runs that test it: docs/findings.md)."""
    name: str
    description: str
    measure: Callable[[Any, Any], float]
    threshold: float
    comparison: str  # "at_most" | "at_least"
    source: str

    def holds(self, value: float) -> bool:
        if value != value:  # nan: not measured, so not shown to hold
            return False
        return value <= self.threshold if self.comparison == "at_most" else value >= self.threshold

    def describe(self, value: float) -> str:
        sign = "≤" if self.comparison == "at_most" else "≥"
        shown = "not measured" if value != value else f"{value:.4g}"
        return f"{self.name} = {shown} (needs {sign} {self.threshold:g}: {'met' if self.holds(value) else 'not met'})"


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
    margin: float = 0.0  # the equivalence / non-inferiority margin (expected equivalent / at_most)
    sesoi: float | None = None  # smallest effect of interest; None: the paper's effect, else the metric's convention
    where: dict[str, list[Any]] = field(default_factory=dict)
    free_axes: tuple[str, ...] = ()  # axes whose values go with the treatment (an optimizer's own lr): not matched
    premises: tuple[Premise, ...] = ()
    loss_threshold: float | None = None  # metric epochs_to_train_loss
    paper: tuple[str, str] | None = None  # (Xu et al.'s table: a paper_table name, its column: train/held_out/test_gap)
    rung: tuple[str, int] | None = None  # a scale-ladder copy: (the claim it repeats, the rung's training images)

    @property
    def expected_text(self) -> str:
        return {"less": "treatment < control", "greater": "treatment > control",
                "equivalent": f"|treatment − control| < {self.margin:g}",
                "at_most": f"treatment − control < {self.margin:g}"}[self.expected]

    @property
    def config_path(self) -> Path:
        return Path("configs") / f"{self.preset}.yaml"

    @property
    def is_ensemble(self) -> bool:
        return self.axis == ENSEMBLE_AXIS

    @property
    def orientation(self) -> int:
        """+1 when a larger difference favours the statement, −1 when a smaller one does (claims.csv's
        orientation column; the forest plot draws each difference times it)."""
        return -1 if self.expected in ("less", "at_most") else 1


CLAIMS = Registry("claim", extras=("claim",))


def claim(claim_id: str, source: str, statement: str, preset: str, study: str, axis: str, treatment: Any,
          control: Any, metric: str, expected: str, **options: Any) -> Claim:
    """Register one claim (the catalogue's only way in)."""
    if expected not in DIRECTIONS:
        raise ValueError(f"claim {claim_id}: expected must be one of {DIRECTIONS}, got {expected!r}")
    if expected in ("equivalent", "at_most") and not options.get("margin"):
        raise ValueError(f"claim {claim_id}: an {expected} claim needs its margin")
    return register(Claim(claim_id, source, statement, preset, study, axis, treatment, control, metric, expected,
                          **options))


def register(entry: Claim) -> Claim:
    CLAIMS.add(entry.claim_id, lambda: entry, entry.statement, claim=entry)
    return entry


def registered() -> list[Claim]:
    return [entry.extra["claim"] for entry in CLAIMS]


# The smallest effect of interest of a claim without a paper effect, by its metric: a convention fixed
# before the runs (docs/findings.md, "Smallest effects of interest"); fn(claim) -> the effect size.
SESOI_CONVENTIONS = Registry("smallest effect of interest")
for _metric in ("train_error", "val_error", "test_error", "gap", "test_gap", "train_error_running"):
    SESOI_CONVENTIONS.add(_metric, lambda claim: 0.01, "one point of error (0.01): the paper's smallest gaps are of this size")
SESOI_CONVENTIONS.add("test_mean_recall", lambda claim: 0.01, "one point of mean per-class recall (0.01)")
for _metric in ("train_loss", "val_loss", "test_loss", "train_loss_running"):
    SESOI_CONVENTIONS.add(_metric, lambda claim: 0.05, "0.05 nats of cross-entropy (about a 5 % change of a class probability)")
SESOI_CONVENTIONS.add("late_over_early", lambda claim: 0.1,
                      "0.1 of the late/early decline ratio (the diagnosis rule's own resolution)")
SESOI_CONVENTIONS.add("epochs_to_train_loss", lambda claim: 1.0, "one epoch")
