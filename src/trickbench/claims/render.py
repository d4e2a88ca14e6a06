"""The claims table as files a reader opens: results/claims.csv (every number), claims.md (by preset, with
each preset's scale), the findings page's table (between its markers) and the forest plot claims.png."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from trickbench.claims.verdict import ALPHA, VERDICTS

COLUMNS = ["claim_id", "source", "statement", "preset", "study", "metric", "treatment", "control", "expected",
           "unit", "pooling", "n", "seeds_beyond_plan", "effect", "ci_low", "ci_high", "ci90_low", "ci90_high", "sesoi",
           "p", "p_holm", "exact", "mde", "seeds_needed", "premises", "verdict", "paper_effect", "orientation"]
VERDICT_COLOURS = {"holds": "#1b7837", "contradicted": "#b2182b", "equivalent": "#2166ac", "underpowered": "#e08214",
                   "inconclusive": "#878787", "premise not met": "#8073ac", "not run": "#d9d9d9"}
README_TABLE = ("<!-- claims:table:begin -->", "<!-- claims:table:end -->")
MAX_PAGE_BYTES = 4 * 1024 * 1024


def _number(value: float, digits: int = 4) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:+.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return ""
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def _text(value: Any) -> str:
    return str(value).replace("|", "\\|")  # a bare pipe would split the Markdown cell


def detail(row: Any) -> str:
    """What the verdict rests on, in words: the premises that failed, the power of a null, exactness,
    runs beyond the plan."""
    parts = []
    if row["verdict"] == "premise not met":
        parts += [text for text in str(row["premises"]).split("; ") if text.endswith("not met)")]
    if row["verdict"] in ("underpowered", "inconclusive") and not math.isnan(row["mde"]):
        needed = row["seeds_needed"]
        needed_text = "more than 10,000" if math.isinf(needed) else "?" if math.isnan(needed) else f"{int(needed)}"
        parts.append(f"detects {row['mde']:.3g} at n = {row['n']} (80 % power); the SESOI {row['sesoi']:.3g} "
                     f"needs {needed_text} {row['unit']}s")
    if row["exact"]:
        parts.append("exact: every difference is the same number")
    if row["unit"] != "seed" and row["n"]:
        parts.append(f"unit: {row['unit']}")
    if row["seeds_beyond_plan"]:
        parts.append(f"{int(row['seeds_beyond_plan'])} seed(s) beyond the plan left out")
    return "; ".join(parts)


def claims_markdown(table: Any, scales: dict[str, str], alpha: float = ALPHA) -> str:
    counts = table["verdict"].value_counts()
    lines = ["# What holds up: the claims of the seeds and of Xu et al., against the committed runs", "",
             f"Made by `trickbench claims` from every preset's committed `results/<preset>/` "
             f"({len(table)} claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ").",
             "effect = treatment − control, one difference per seed on the seeds each preset planned (averaged over "
             "the study's other axis levels the claim spans); ci: 95 % t-interval; sesoi: the claim's smallest "
             f"effect of interest; p_holm: the claim's test (paired t, TOST, or one-sided), Holm-corrected over the "
             f"preset's tested claims; alpha {alpha:g}; the power columns at alpha / (the preset's claims). "
             "The rule is in docs/findings.md. A verdict is about the preset's scale, printed above its rows.", ""]
    shown = ["claim_id", "metric", "treatment", "control", "expected", "n", "effect", "ci_low", "ci_high", "sesoi",
             "p_holm", "verdict", "detail", "paper_effect"]
    for preset, part in table.groupby("preset", sort=False):
        lines += [f"## {preset}", "", f"Scale: {scales.get(preset, '?')}.", "",
                  "| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
        for _, row in part.iterrows():
            cells = {**{c: _text(row[c]) for c in ("claim_id", "metric", "treatment", "control", "expected", "verdict")},
                     "n": str(row["n"]), "effect": _number(row["effect"]), "ci_low": _number(row["ci_low"]),
                     "ci_high": _number(row["ci_high"]), "sesoi": f"{row['sesoi']:.3g}", "p_holm": _p(row["p_holm"]),
                     "detail": _text(detail(row)), "paper_effect": _number(row["paper_effect"])}
            lines.append("| " + " | ".join(cells[c] for c in shown) + " |")
        lines.append("")
    return "\n".join(lines)


def readme_table(table: Any) -> str:
    """The findings page's claims table: one row per claim, the verdicts that decide in bold."""
    lines = ["| claim | preset | metric | effect [95 % CI] | SESOI | n | verdict | why | paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        interval = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        verdict = f"**{row['verdict']}**" if row["verdict"] in ("holds", "contradicted", "equivalent") else row["verdict"]
        cells = [_text(row["statement"]), f"`{row['preset']}`", row["metric"], _number(row["effect"]) + interval,
                 f"{row['sesoi']:.3g}", str(row["n"]), verdict, _text(detail(row)), _number(row["paper_effect"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def oriented(value: float, row: Any) -> float:
    """A difference in units of the claim's SESOI, signed so that positive favours the claim's statement."""
    scale = row.sesoi if row.sesoi and not math.isnan(row.sesoi) else 1.0
    return row.orientation * value / scale


def forest_figure(table: Any) -> Any:
    """Every claim's effect and 95 % interval in units of its SESOI, oriented so that right favours the
    statement, grouped by preset, coloured by verdict; the paper's own difference as a diamond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = list(table.itertuples(index=False))
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 2.2))
    labels, previous = [], None
    for y, row in enumerate(rows):
        y = len(rows) - 1 - y
        colour = VERDICT_COLOURS[row.verdict]
        if not math.isnan(row.effect):
            if not math.isnan(row.ci_low):
                ax.plot(sorted([oriented(row.ci_low, row), oriented(row.ci_high, row)]), [y, y], color=colour, lw=1.6,
                        gid=f"ci:{row.claim_id}")
            ax.plot(oriented(row.effect, row), y, "o", color=colour, ms=4, gid=f"effect:{row.claim_id}")
        if not math.isnan(row.paper_effect):
            ax.plot(oriented(row.paper_effect, row), y, "D", mfc="none", mec="black", ms=4, gid=f"paper:{row.claim_id}")
        if row.preset != previous and y != len(rows) - 1:
            ax.axhline(y + 0.5, color="#bbbbbb", lw=0.6)
        previous = row.preset
        labels.append((y, f"{row.claim_id} ({row.preset})"))
    for x in (-1, 1):
        ax.axvline(x, color="#777777", ls="--", lw=0.7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks([y for y, _ in labels], [text for _, text in labels], fontsize=6)
    ax.set_xlabel("effect / smallest effect of interest (right: in the claim's favour)")
    ax.set_xscale("symlog", linthresh=2)
    ax.set_ylim(-1, len(rows))
    handles = [Line2D([], [], color=c, marker="o", lw=1.6, label=v) for v, c in VERDICT_COLOURS.items()]
    handles.append(Line2D([], [], color="black", marker="D", mfc="none", lw=0, label="Xu et al.'s difference"))
    height = fig.get_size_inches()[1]
    fig.legend(handles=handles, fontsize=6, loc="lower center", ncol=4, frameon=False)
    ax.set_title("Every claim against the committed runs (trickbench claims)", fontsize=9)
    fig.tight_layout(rect=(0, 0.7 / height, 1, 1))  # the legend's two rows below the axis label
    return fig


def save_figure(draw: Callable[[], Any], paths: tuple[Path, ...], dpi: int = 120) -> None:
    """The figure `draw()` makes, written to each of `paths` (atomically, byte-stable: no software or date in
    the PNG), then closed. Drawn and written under matplotlib's own defaults: the report's figures set a
    seaborn theme on import, and without this the same table gave other bytes in the Snakemake report stage
    than in `trickbench claims`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trickbench.io import atomic_path

    with plt.style.context("default"):
        fig = draw()
        for path in paths:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip("."), metadata={"Software": None})
    plt.close(fig)


def forest_plot(table: Any, *paths: Path, dpi: int = 120) -> None:
    """forest_figure(table), drawn once and written to each of `paths`."""
    save_figure(lambda: forest_figure(table), paths, dpi)


def readme_parts(path: Path) -> tuple[str, str]:
    """The page's text before and after its claims table (ClaimsError unless one README_TABLE pair)."""
    from trickbench.claims.model import ClaimsError
    from trickbench.io import read_text_bounded

    begin, end = README_TABLE
    # a regular file of bounded size (not /dev/zero, a FIFO, a huge file), refused before anything is written
    text = read_text_bounded(path, MAX_PAGE_BYTES, "Markdown page with the claims table", error=ClaimsError)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ClaimsError(f"{path}: expected one {begin} line before one {end} line around the claims table")
    head, rest = text.split(begin)
    return head + begin, end + rest.split(end, 1)[1]


def update_readme(path: Path, table: Any) -> None:
    """Replace the table between the README_TABLE markers of `path` by readme_table(table)."""
    from trickbench.io import write_text

    head, tail = readme_parts(path)
    write_text(path, f"{head}\n{readme_table(table)}\n{tail}")
