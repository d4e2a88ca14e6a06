"""The verdict rule: a claim's replicates and premises to one of VERDICTS (docs/findings.md, "Verdicts").

In order:
1. `not run`: no committed run of the claim's points.
2. `premise not met`: a premise fails or cannot be measured; the effect is shown, no test is made, and the
   claim leaves the correction family.
3. exact: the differences have no spread (e.g. every run at chance); decided by their value, no p.
4. the claim's test, Holm-corrected over the claims of the same preset that are tested (one family per
   preset: a preset's verdicts must not move when another preset is added or rerun):
   - less / greater: paired two-sided t-test; `holds` / `contradicted` when p_holm < alpha, by the sign;
   - equivalent: TOST against ±margin; `holds` when p_holm < alpha, `contradicted` when the
     Bonferroni interval (1 − alpha/m) lies wholly outside ±margin;
   - at_most: one-sided test of d ≥ margin; `holds` when p_holm < alpha, `contradicted` when the
     Bonferroni interval's lower end exceeds the margin.
5. not decided: `equivalent` when the 90 % interval lies inside ±SESOI (TOST at 0.05; a directional claim
   only), else `underpowered` when the minimum detectable effect at this n exceeds the SESOI (with the
   seeds that 80 % power would need), else `inconclusive`.
Power is computed at alpha / m (Bonferroni, m the preset's claims): Holm is never less powerful, so the
seeds needed are enough under the correction actually applied."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from trickbench import stats
from trickbench.claims.evidence import PresetData, replicates
from trickbench.claims.model import SESOI_CONVENTIONS, Claim

VERDICTS = ("holds", "contradicted", "equivalent", "underpowered", "inconclusive", "premise not met", "not run")
ALPHA = 0.05
CONFIDENCE = 0.95
EQUIVALENCE_CONFIDENCE = 1 - 2 * ALPHA  # TOST at alpha is the 90 % interval


@dataclass
class Evidence:
    n: int = 0
    unit: str = "seed"
    pooling: str = ""
    beyond_plan: int = 0
    effect: float = math.nan
    sd: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    ci90_low: float = math.nan
    ci90_high: float = math.nan
    sesoi: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    exact: bool = False
    mde: float = math.nan
    seeds_needed: float = math.nan
    premises: list[str] = field(default_factory=list)
    premise_met: bool = True
    verdict: str = "not run"


def smallest_effect(claim: Claim) -> float:
    """The claim's smallest effect of interest: its own, else the paper's |difference|, else the metric's
    convention (SESOI_CONVENTIONS); an equivalence or at-most claim uses its margin."""
    from trickbench.claims.catalogue import paper_effect

    if claim.expected in ("equivalent", "at_most"):
        return claim.margin
    if claim.sesoi is not None:
        return claim.sesoi
    paper = paper_effect(claim)
    if not math.isnan(paper) and paper != 0:
        return abs(paper)
    return SESOI_CONVENTIONS.get(claim.metric)(claim) if claim.metric in SESOI_CONVENTIONS else math.nan


def gather(claim: Claim, data: PresetData) -> Evidence:
    """Everything but the corrected p and the verdict."""
    found = replicates(claim, data)
    evidence = Evidence(sesoi=smallest_effect(claim))
    if found is None:
        return evidence
    evidence.unit, evidence.pooling, evidence.beyond_plan = found.unit, found.pooling, found.beyond_plan
    summary = stats.summarize(found.diffs)
    evidence.n, evidence.effect, evidence.sd, evidence.exact = summary.n, summary.mean, summary.sd, summary.exact
    evidence.ci_low, evidence.ci_high = stats.t_interval(summary, CONFIDENCE)
    evidence.ci90_low, evidence.ci90_high = stats.t_interval(summary, EQUIVALENCE_CONFIDENCE)
    values = [(premise, premise.measure(claim, data)) for premise in claim.premises]
    evidence.premises = [premise.describe(value) for premise, value in values]
    evidence.premise_met = all(premise.holds(value) for premise, value in values)
    if evidence.premise_met and not evidence.exact:
        evidence.p = claim_test(claim, summary)
    return evidence


def claim_test(claim: Claim, summary: stats.Summary) -> float:
    """The p of the claim's own hypothesis test, before correction."""
    if claim.expected == "equivalent":
        return stats.p_tost(summary, claim.margin)
    if claim.expected == "at_most":
        return stats.p_below(summary, claim.margin)
    return stats.p_two_sided(summary)


def decide(evidence: Evidence, claim: Claim, family_size: int, alpha: float = ALPHA) -> str:
    if evidence.n == 0:
        return "not run"
    if not evidence.premise_met:
        return "premise not met"
    if evidence.exact:
        return _exact(evidence.effect, claim)
    significant = evidence.p_holm < alpha
    strict = alpha / max(family_size, 1)
    low, high = stats.t_interval(stats.Summary(evidence.n, evidence.effect, evidence.sd), 1 - strict)
    if claim.expected in ("less", "greater"):
        if significant:
            return "holds" if claim.orientation * evidence.effect > 0 else "contradicted"
        if -evidence.sesoi < evidence.ci90_low and evidence.ci90_high < evidence.sesoi:
            return "equivalent"
    elif significant:
        return "holds"
    elif (claim.expected == "equivalent" and (low > claim.margin or high < -claim.margin)) or \
            (claim.expected == "at_most" and low > claim.margin):
        return "contradicted"
    return "underpowered" if _needs_more(evidence) else "inconclusive"


def _exact(effect: float, claim: Claim) -> str:
    """A claim whose differences are all one number: its value decides."""
    if claim.expected == "equivalent":
        return "holds" if abs(effect) < claim.margin else "contradicted"
    if claim.expected == "at_most":
        return "holds" if effect < claim.margin else "contradicted"
    if effect == 0:
        return "equivalent"
    return "holds" if claim.orientation * effect > 0 else "contradicted"


def _needs_more(evidence: Evidence) -> bool:
    return math.isnan(evidence.seeds_needed) or evidence.seeds_needed > evidence.n


def power_plan(evidence: Evidence, claim: Claim, family_size: int, alpha: float = ALPHA) -> None:
    """The minimum detectable effect at this n and the seeds 80 % power needs for the SESOI."""
    level = alpha / max(family_size, 1)
    if evidence.n < 2 or math.isnan(evidence.sd) or evidence.exact:
        evidence.mde = math.inf if evidence.n < 2 else math.nan
        return
    test = "equivalence" if claim.expected == "equivalent" else "difference"
    evidence.mde = stats.minimum_detectable_effect(evidence.n, evidence.sd, level)
    evidence.seeds_needed = stats.seeds_needed(evidence.sd, evidence.sesoi, level, test=test)


def evaluate(claims: list[Claim], data_of: Callable[[str], PresetData], alpha: float = ALPHA) -> list[Evidence]:
    """Evidence and verdict for every claim; p Holm-corrected over the tested claims of each preset."""
    results = [gather(entry, data_of(entry.preset)) for entry in claims]
    for preset in dict.fromkeys(c.preset for c in claims):
        indices = [i for i, c in enumerate(claims) if c.preset == preset]
        family_size = len(indices)
        for i, adjusted in zip(indices, stats.holm([results[i].p for i in indices])):
            results[i].p_holm = adjusted
        for i in indices:
            power_plan(results[i], claims[i], family_size, alpha)
            results[i].verdict = decide(results[i], claims[i], family_size, alpha)
    return results
