"""The scale ladder: the CIFAR-10 claims of Xu et al.'s Table 3 and flip + crop's, tested again on every rung
(presets ladder-<images>: one recipe, only the training images differ), one verdict per rung, and a figure of
each claim's effect (95 % interval) against the training images, Xu et al.'s own difference at their 50,000.
Each rung is its own correction family, like any preset (docs/findings.md, "Scale ladder")."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from trickbench.claims.model import CLAIMS, Claim, register

RUNGS = {"ladder-1000": 1000, "ladder-2000": 2000, "ladder-4000": 4000}
PAPER_IMAGES = 50_000  # Xu et al. train on the whole CIFAR-10 training set
STUDY = "ladder"
# Table 3's claims against ReLU (Leaky ReLU a=100, its near-ReLU column, is left out of the rungs: CPU budget)
TEMPLATES = ("xu-c10-leaky-relu-a5.5-beats-relu", "xu-c10-prelu-beats-relu", "xu-c10-rrelu-beats-relu",
             "xu-c10-prelu-lowest-train-vs-relu", "xu-c10-rrelu-regularizes", "aug-flip-crop-reduces-test-error")
# each rung's study crosses the activations (no augmentation) with one flip + crop block (ReLU): a claim holds
# the other axis at its control's level
HELD = {"activation": {"augmentations": [[]]}, "augmentations": {"activation": ["relu"]}}
LADDER_COLUMNS = ["template", "images", "claim_id", "preset", "metric", "n", "effect", "ci_low", "ci_high", "sesoi",
                  "p_holm", "premises", "verdict", "paper_effect"]


def rung_claim(template: Claim, preset: str, images: int) -> Claim:
    return replace(template, claim_id=f"ladder-{images}-{template.claim_id}", preset=preset, study=STUDY,
                   statement=f"{template.statement.rstrip('.')} (ladder rung: {images:,} training images).",
                   where=HELD[template.axis], rung=(template.claim_id, images))


def register_rungs() -> None:
    """Every template claim again on every rung (called once the templates are registered)."""
    for preset, images in RUNGS.items():
        for template_id in TEMPLATES:
            register(rung_claim(CLAIMS.entry(template_id).extra["claim"], preset, images))


def ladder_table(table: Any, claims: list[Claim]) -> Any:
    """The claims table's rows of the ladder's claims, with their template and training images, by template."""
    import pandas as pd

    rungs = {c.claim_id: c.rung for c in claims if c.rung is not None}
    rows = table[table["claim_id"].isin(list(rungs))].copy()
    rows["template"] = [rungs[i][0] for i in rows["claim_id"]]
    rows["images"] = [rungs[i][1] for i in rows["claim_id"]]
    order = {t: k for k, t in enumerate(TEMPLATES)}
    rows = rows.sort_values(["template", "images"], key=lambda col: col.map(order) if col.name == "template" else col)
    return pd.DataFrame(rows, columns=LADDER_COLUMNS).reset_index(drop=True)


def ladder_figure(ladder: Any) -> Any:
    """One panel per template: effect and 95 % interval per rung, coloured by verdict, ±SESOI dashed, Xu et
    al.'s single-run difference as a diamond at their 50,000 training images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from trickbench.claims.render import VERDICT_COLOURS

    templates = list(dict.fromkeys(ladder["template"]))
    columns = 3
    rows = max(1, math.ceil(len(templates) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(10, 2.6 * rows + 0.8), squeeze=False)
    for ax in axes.flat[len(templates):]:
        ax.set_visible(False)
    for ax, template in zip(axes.flat, templates):
        part = ladder[ladder["template"] == template]
        for row in part.itertuples(index=False):
            colour = VERDICT_COLOURS[row.verdict]
            if not math.isnan(row.ci_low):
                ax.plot([row.images, row.images], [row.ci_low, row.ci_high], color=colour, lw=1.8,
                        gid=f"ci:{row.claim_id}")
            if not math.isnan(row.effect):
                ax.plot(row.images, row.effect, "o", color=colour, ms=5, gid=f"effect:{row.claim_id}")
        sesoi = part["sesoi"].iloc[0]
        for y in (-sesoi, sesoi):
            ax.axhline(y, color="#777777", ls="--", lw=0.7)
        ax.axhline(0, color="black", lw=0.8)
        paper = part["paper_effect"].iloc[0]
        if not math.isnan(paper):
            ax.plot(PAPER_IMAGES, paper, "D", mfc="none", mec="black", ms=5, gid=f"paper:{template}")
        ax.set_xscale("log", base=2)
        ticks = sorted(set(part["images"])) + ([PAPER_IMAGES] if not math.isnan(paper) else [])
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{template}\n{part['metric'].iloc[0]}: treatment − control", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("training images", fontsize=7)
    handles = [Line2D([], [], color=c, marker="o", lw=1.8, label=v) for v, c in VERDICT_COLOURS.items()]
    handles += [Line2D([], [], color="#777777", ls="--", lw=0.7, label="± smallest effect of interest"),
                Line2D([], [], color="black", marker="D", mfc="none", lw=0, label="Xu et al. (50,000 images, one run)")]
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=5, frameon=False)
    fig.suptitle("Scale ladder: each claim's effect against the training images (trickbench claims)", fontsize=9)
    fig.tight_layout(rect=(0, 0.8 / fig.get_size_inches()[1], 1, 1))
    return fig


def write_ladder(table: Any, claims: list[Claim], out_dir: Path, figure_paths: tuple[Path, ...] = ()) -> Any:
    """results/ladder.csv and the figure results/ladder.png (and at each of figure_paths); None without ladder
    claims among `claims`."""
    from trickbench.claims.render import save_figure
    from trickbench.io import atomic_path

    ladder = ladder_table(table, claims)
    if ladder.empty:
        return None
    with atomic_path(out_dir / "ladder.csv") as tmp:
        ladder.to_csv(tmp, index=False)
    save_figure(lambda: ladder_figure(ladder), (out_dir / "ladder.png", *figure_paths))
    return ladder
