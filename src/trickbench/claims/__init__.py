"""The claims of the seeds and of Xu et al. against the committed runs: model (what a claim is), catalogue
(every claim), evidence (replicates and premises from results/<preset>/), verdict (the rule), render (the
tables and the forest plot), plan (seeds fixed in advance). `trickbench claims` and the report stage call
`claims_table` / `write_claims`; docs/findings.md explains the verdicts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trickbench.claims import catalogue  # noqa: F401  (registers every claim)
from trickbench.claims.catalogue import paper_effect
from trickbench.claims.evidence import PresetData, check_claim
from trickbench.claims.model import CHANCE, CLAIMS, ENSEMBLE_AXIS, Claim, ClaimsError, Premise, registered
from trickbench.claims.render import COLUMNS, claims_markdown, forest_plot, readme_parts, update_readme
from trickbench.claims.verdict import ALPHA, VERDICTS, Evidence, evaluate

__all__ = ["CHANCE", "CLAIMS", "COLUMNS", "ENSEMBLE_AXIS", "VERDICTS", "Claim", "ClaimsError", "Evidence", "Premise",
           "check_claim", "claims_markdown", "claims_table", "forest_plot", "paper_effect", "preset_claims",
           "readme_parts", "registered", "update_readme", "write_claims"]


def _side(entry: Claim, value: Any) -> str:
    """One side of the comparison in words (the `where` filter applies to both sides)."""
    from trickbench.grid import format_value

    if value == CHANCE:
        return "chance error (1 − 1/classes)"
    return f"{entry.axis}={format_value(value)}" + "".join(
        f"; {k}={'/'.join(map(format_value, v))}" for k, v in entry.where.items())


def load_presets(claims: list[Claim], root: Path) -> dict[str, PresetData]:
    """Each named preset's params and committed results, every claim checked against its grid."""
    from trickbench.params import load_params

    loaded: dict[str, PresetData] = {}
    for entry in claims:
        if entry.preset not in loaded:
            loaded[entry.preset] = PresetData(load_params(root / entry.config_path), root)
        check_claim(entry, loaded[entry.preset].params)
    return loaded


def claims_table(claims: list[Claim] | None = None, root: Path = Path("."), alpha: float = ALPHA) -> tuple[Any, dict[str, str]]:
    """The claims table (one row per claim, COLUMNS) and each preset's scale, from the committed results
    under `root` (each preset's paths.results, relative to root)."""
    import pandas as pd

    claims = claims if claims is not None else registered()
    loaded = load_presets(claims, root)
    evidence = evaluate(claims, loaded.__getitem__, alpha)
    rows = [{"claim_id": c.claim_id, "source": c.source, "statement": c.statement, "preset": c.preset,
             "study": c.study, "metric": c.metric, "treatment": _side(c, c.treatment), "control": _side(c, c.control),
             "expected": c.expected_text, "unit": e.unit, "pooling": e.pooling, "n": e.n,
             "seeds_beyond_plan": e.beyond_plan, "effect": e.effect, "ci_low": e.ci_low, "ci_high": e.ci_high,
             "ci90_low": e.ci90_low, "ci90_high": e.ci90_high, "sesoi": e.sesoi, "p": e.p, "p_holm": e.p_holm,
             "exact": e.exact, "mde": e.mde, "seeds_needed": e.seeds_needed, "premises": "; ".join(e.premises),
             "verdict": e.verdict, "paper_effect": paper_effect(c),
             "orientation": c.orientation}
            for c, e in zip(claims, evidence)]
    return pd.DataFrame(rows, columns=COLUMNS), {p: d.scale() for p, d in loaded.items()}


def write_claims(out_dir: Path, root: Path = Path("."), claims: list[Claim] | None = None,
                 page_dir: Path | None = None) -> tuple[Any, dict[str, str]]:
    """results/claims.csv, claims.md, the forest plot claims.png and, with ladder claims, the scale ladder's
    ladder.csv and ladder.png; both figures also in `page_dir` (the docs page that shows them). Nothing is
    written unless every preset's results read."""
    from trickbench.claims.ladder import write_ladder
    from trickbench.io import atomic_path, write_text

    claims = claims if claims is not None else registered()
    table, scales = claims_table(claims, root)
    with atomic_path(out_dir / "claims.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_text(out_dir / "claims.md", claims_markdown(table, scales))
    pages = (page_dir,) if page_dir is not None else ()
    forest_plot(table, *(folder / "claims.png" for folder in (out_dir, *pages)))
    write_ladder(table, claims, out_dir, tuple(folder / "ladder.png" for folder in pages))
    return table, scales


def preset_claims(params: dict[str, Any], root: Path = Path(".")) -> list[Claim]:
    """The claims of the preset whose results folder `params` writes (its configs/<preset>.yaml names the
    same paths.results): the report stage gives them their verdicts; other params have none."""
    import yaml

    target = (root / params["paths"]["results"]).resolve()
    results_of: dict[str, Path | None] = {}
    found = []
    for entry in registered():
        if entry.preset not in results_of:
            config = root / entry.config_path
            settings = yaml.safe_load(config.read_text()) if config.is_file() else None
            folder = (settings or {}).get("paths", {}).get("results")
            results_of[entry.preset] = (root / folder).resolve() if folder else None
        if results_of[entry.preset] == target:
            found.append(entry)
    return found
