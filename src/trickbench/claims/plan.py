"""Seeds fixed in advance: from a pilot's paired spread, the seeds each claim of a preset needs for 80 %
power at its smallest effect of interest (at alpha / the preset's claims, the Bonferroni bound of the
Holm correction the verdicts apply), and the `plan:` block that records them in the preset's config.
Every seed the pilot ran is used here (the pilot is not a verdict); the verdicts use the planned seeds."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trickbench import stats
from trickbench.claims.evidence import PresetData, replicates
from trickbench.claims.model import ClaimsError, registered
from trickbench.claims.verdict import ALPHA, smallest_effect


@dataclass(frozen=True)
class ClaimPlan:
    claim_id: str
    study: str
    n_pilot: int
    sd: float
    sesoi: float
    seeds_needed: float  # inf: more than stats.MAX_SEEDS; nan: no spread estimate yet


def plan_preset(preset: str, root: Path = Path("."), pilot: Path | None = None, alpha: float = ALPHA) -> list[ClaimPlan]:
    """One ClaimPlan per claim of the preset, from the pilot's runs (default: the preset's results folder)."""
    from trickbench.params import load_params

    claims = [c for c in registered() if c.preset == preset]
    if not claims:
        known = sorted({c.preset for c in registered()})
        raise ClaimsError(f"plan: no claim names preset {preset!r}; presets with claims: {', '.join(known)}")
    params = load_params(root / claims[0].config_path)
    if pilot is not None:
        params = {**params, "paths": {**params["paths"], "results": str(pilot)}, "plan": {}}
    else:
        params = {**params, "plan": {}}  # the pilot is every seed run so far
    data = PresetData(params, root)
    if data.runs is None:
        raise ClaimsError(f"plan: {data.runs_path}: no runs table; run a pilot of the preset first "
                          f"(a few seeds of configs/{preset}.yaml)")
    level = alpha / len(claims)
    plans = []
    for entry in claims:
        found = replicates(entry, data)
        summary = stats.summarize(found.diffs) if found is not None else stats.Summary(0, math.nan, math.nan)
        sesoi = smallest_effect(entry)
        test = "equivalence" if entry.expected == "equivalent" else "difference"
        needed = stats.seeds_needed(summary.sd, sesoi, level, test=test) if summary.n >= 2 else math.nan
        plans.append(ClaimPlan(entry.claim_id, entry.study, summary.n, summary.sd, sesoi, needed))
    return plans


def planned_seeds(plans: list[ClaimPlan], budget: int) -> dict[str, int]:
    """Per study, the most seeds any of its claims needs, at most `budget` (at least 3)."""
    per_study: dict[str, int] = {}
    for plan in plans:
        need = plan.seeds_needed
        wanted = budget if math.isnan(need) or need > budget else max(3, int(need))
        per_study[plan.study] = max(per_study.get(plan.study, 3), wanted)
    return per_study


def plan_text(preset: str, plans: list[ClaimPlan], budget: int, alpha: float = ALPHA) -> str:
    lines = [f"plan for {preset}: 80 % power at alpha {alpha:g} / {len(plans)} claims = {alpha / len(plans):.2g}",
             f"{'claim':44} {'study':16} {'n pilot':>7} {'sd':>9} {'SESOI':>8} {'seeds needed':>12}"]
    for plan in plans:
        needed = "no spread" if math.isnan(plan.seeds_needed) else ">10000" if math.isinf(plan.seeds_needed) \
            else f"{int(plan.seeds_needed)}"
        over = " (over the budget: underpowered by design)" if not math.isnan(plan.seeds_needed) and \
            plan.seeds_needed > budget else ""
        lines.append(f"{plan.claim_id:44} {plan.study:16} {plan.n_pilot:7d} {plan.sd:9.4g} {plan.sesoi:8.3g} "
                     f"{needed:>12}{over}")
    seeds = planned_seeds(plans, budget)
    lines += ["", f"plan (budget {budget} seeds per study):", *plan_block(seeds, "").splitlines()]
    return "\n".join(lines)


def plan_block(seeds: dict[str, int], pilot: str) -> str:
    body = "\n".join(f"    {study}: {count}" for study, count in seeds.items())
    note = f"\n  pilot: {pilot}" if pilot else ""
    return f"plan:\n  seeds:\n{body}{note}\n"


_TOP_LEVEL_PLAN = re.compile(r"^plan:\n(?:[ #].*\n|\n)*", re.MULTILINE)


def record_plan(config: Path, seeds: dict[str, int], pilot: str) -> None:
    """Write the `plan:` block into the preset's config (replacing an earlier one), atomically; the rest of
    the file, comments included, is kept as it is."""
    from trickbench.io import write_text

    text = config.read_text()
    block = plan_block(seeds, pilot)
    text = _TOP_LEVEL_PLAN.sub(lambda _: block, text, count=1) if _TOP_LEVEL_PLAN.search(text) else \
        text.rstrip("\n") + "\n\n" + block
    write_text(config, text)


def apply_plan(preset: str, root: Path, pilot: Path | None, budget: int, write: bool) -> tuple[str, Any]:
    plans = plan_preset(preset, root, pilot)
    text = plan_text(preset, plans, budget)
    if write:
        config = root / next(c.config_path for c in registered() if c.preset == preset)
        record_plan(config, planned_seeds(plans, budget), str(pilot or "the preset's own runs"))
        text += f"\nrecorded in {config}"
    return text, plans
