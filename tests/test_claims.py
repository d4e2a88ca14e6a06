"""The claims (trickbench.claims, `trickbench claims`, `trickbench plan`): every registered claim fits its
preset's grid; synthetic runs with known effects reach every verdict (holds, contradicted, equivalent,
underpowered with the seeds a closed-form power calculation gives, premise not met, not run, exact);
n counts independent seeds; seeds beyond the plan stay out; the committed claims table is current."""
from __future__ import annotations

import io
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from conftest import BIN, REPO, tiny_params, write_params
from trickbench import stats
from trickbench.claims import (CHANCE, COLUMNS, ENSEMBLE_AXIS, VERDICTS, Claim, ClaimsError, Premise, check_claim,
                               claims_table, registered)
from trickbench.claims.evidence import control_mean
from trickbench.grid import expand_grid, format_value
from trickbench.params import load_params

REGISTERED = registered()
FINDINGS = REPO / "docs" / "findings.md"


# ------------------------------------------------------------------------------------------------ registry

def test_the_registry_holds_the_claims_of_both_articles():
    ids = [c.claim_id for c in REGISTERED]
    assert len(set(ids)) == len(ids)
    for expected in ["init-zeros-no-learning", "act-tanh-slower-than-relu", "lr-plateau-beats-constant",
                     "aug-flip-crop-reduces-test-error", "reg-dropout-lowers-test-error", "bn-allows-higher-lr",
                     "bn-rescues-poor-init", "opt-adam-faster-than-sgd", "opt-adam-faster-than-rmsprop",
                     "batch-size-lr-unchanged", "aug-noise-reduces-test-error", "aug-rotation-reduces-test-error",
                     "aug-contrast-reduces-test-error", "imbalance-sqrt-class-weighted-loss-improves",
                     "xu-c10-prelu-beats-relu", "xu-ndsb-rrelu-beats-relu"]:
        assert expected in ids, expected
    for c in REGISTERED:
        assert c.source and c.statement.endswith(".") and (REPO / c.config_path).is_file(), c.claim_id
        if c.expected in ("less", "greater"):  # every directional claim has a smallest effect of interest
            from trickbench.claims.verdict import smallest_effect

            assert smallest_effect(c) > 0, c.claim_id


def test_every_claim_fits_its_presets_grid():
    for c in REGISTERED:
        params = load_params(REPO / c.config_path)
        check_claim(c, params)
        points = [p for p in expand_grid(params) if p.study == c.study]
        assert len({p.config["seed"] for p in points}) >= 2, c.claim_id  # replicated by seeds


def test_a_claim_whose_value_the_grid_lacks_is_refused():
    params = load_params(REPO / "configs" / "scaled-cifar10.yaml")
    bad = Claim("x", "s", "t.", "scaled-cifar10", "activations", "activation", "swish", "relu", "test_error", "less")
    with pytest.raises(ClaimsError, match="no value 'swish'"):
        check_claim(bad, params)
    with pytest.raises(ClaimsError, match="no axis 'lr'"):
        check_claim(Claim("x", "s", "t.", "scaled-cifar10", "activations", "lr", 0.1, 0.01, "test_error", "less"), params)


@pytest.mark.parametrize("kind", ["seeds", "top_k_of_seed"])
def test_a_per_seed_ensemble_claim_needs_a_seed_axis(kind):
    params = load_params(REPO / "configs" / "seed-regularizers.yaml")
    entry = Claim("x", "s", "t.", "seed-regularizers", "regularizers", ENSEMBLE_AXIS, kind, "best_member", "test_error", "less")
    check_claim(entry, params)
    params["studies"]["regularizers"]["axes"].pop("seed")
    with pytest.raises(ClaimsError, match="no seed axis"):
        check_claim(entry, params)


# ------------------------------------------------------------------------------------------------ statistics

@pytest.mark.parametrize("sd, effect, alpha", [(0.0135, 0.0125, 0.05), (0.0157, 0.0066, 0.05 / 8), (0.01, 0.01, 0.05 / 20),
                                               (0.3, 0.05, 0.05 / 9), (0.02, 0.015, 0.01)])
def test_seeds_needed_are_within_one_of_the_closed_form(sd, effect, alpha):
    exact = stats.seeds_needed(sd, effect, alpha)
    assert abs(exact - math.ceil(stats.closed_form_seeds(sd, effect, alpha))) <= 1
    assert stats.power_two_sided(int(exact), effect, sd, alpha) >= 0.8 > stats.power_two_sided(int(exact) - 1, effect, sd, alpha)
    # the minimum detectable effect at that n is at most the effect it was planned for
    assert stats.minimum_detectable_effect(int(exact), sd, alpha) <= effect + 1e-12


def test_the_interval_and_tests_are_scipys():
    diffs = np.array([0.012, -0.004, 0.02, 0.007, 0.001, 0.015])
    summary = stats.summarize(diffs)
    low, high = sps.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=sps.sem(diffs))
    assert stats.t_interval(summary, 0.95) == pytest.approx((low, high), abs=1e-14)
    assert stats.p_two_sided(summary) == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue, rel=1e-10)
    tost = max(sps.ttest_1samp(diffs, -0.02, alternative="greater").pvalue,
               sps.ttest_1samp(diffs, 0.02, alternative="less").pvalue)
    assert stats.p_tost(summary, 0.02) == pytest.approx(tost, rel=1e-10)
    assert stats.p_below(summary, 0.02) == pytest.approx(sps.ttest_1samp(diffs, 0.02, alternative="less").pvalue, rel=1e-10)
    # TOST at 0.05 rejects exactly when the 90 % interval lies inside the margin
    low90, high90 = stats.t_interval(summary, 0.90)
    for margin in (0.01, 0.015, 0.02, 0.03):
        assert (stats.p_tost(summary, margin) < 0.05) == (-margin < low90 and high90 < margin)
    assert stats.holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)


# ------------------------------------------------------------------------------------------------ synthetic

SEEDS = [0, 1, 2, 3, 4, 5]
NOISE = np.array([0.004, -0.006, 0.010, -0.003, 0.001, -0.006])
NULL = np.array([0.010, -0.012, 0.004, -0.006, 0.011, -0.007])  # mean 0, spread: a null effect
BASE = np.array([0.30, 0.32, 0.29, 0.31, 0.33, 0.30])  # relu's test error per seed
TEST_ERROR = {"relu": BASE, "prelu": BASE - 0.10 + NOISE, "rrelu": BASE + 0.10 + NOISE, "tanh": BASE + NULL / 20,
              "leaky_relu_a5.5": BASE + 3 * NULL, "leaky_relu_a100": BASE + 0.004 + NOISE}
ACTIVATIONS = list(TEST_ERROR)
FITS = Premise("control_train_error", "fits", control_mean("train_error"), 0.05, "at_most", "test")


def _synthetic_preset(root, name, seeds, write_runs=True, plan=None, initializers=("he_normal",)):
    params = tiny_params(paths={"artifacts": f"artifacts/{name}", "results": f"results/{name}"})
    params["studies"] = {"acts": {"axes": {"activation": ACTIVATIONS, "initializer": list(initializers), "seed": seeds}}}
    if plan is not None:
        params["plan"] = {"seeds": plan}
    (root / "configs").mkdir(exist_ok=True)
    write_params(root / "configs" / f"{name}.yaml", params)
    if not write_runs:
        return
    rows = []
    for activation in ACTIVATIONS:
        for shift, initializer in enumerate(initializers):
            for i, seed in enumerate(seeds):
                error = TEST_ERROR[activation][i % len(BASE)] + 0.05 * shift
                point = f"activation-{activation}__initializer-{initializer}__seed-{seed}"
                rows.append({"study": "acts", "point_id": point, "status": "completed", "activation": activation,
                             "seed": seed, "test_error": error, "val_error": error, "epochs_run": 2.0,
                             "train_error": 0.9 if activation == "tanh" else 0.9 + NOISE[i % len(BASE)] / 2})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # pairing follows the seed, not the row order
    results = root / "results" / name
    (results / "data").mkdir(parents=True)
    frame.to_csv(results / "runs.csv", index=False)
    pd.DataFrame({"class": [str(k) for k in range(10)], "train": 100, "val": 20, "test": 20}).to_csv(
        results / "data" / "class_counts.csv", index=False)


def _claim(claim_id, preset, treatment, control, expected, metric="test_error", **options):
    return Claim(claim_id, "synthetic", f"{claim_id}.", preset, "acts", "activation", treatment, control, metric,
                 expected, **options)


SYNTHETIC = [
    _claim("holds", "synth", "prelu", "relu", "less"),
    _claim("contradicted", "synth", "rrelu", "relu", "less"),
    _claim("equivalent", "synth", "tanh", "relu", "less", sesoi=0.01),
    _claim("underpowered", "synth", "leaky_relu_a5.5", "relu", "less", sesoi=0.01),
    _claim("premise-not-met", "synth", "prelu", "relu", "less", premises=(FITS,)),
    _claim("same-holds", "synth", "tanh", "relu", "equivalent", margin=0.01),
    _claim("same-contradicted", "synth", "rrelu", "relu", "equivalent", margin=0.01),
    _claim("exact-at-chance", "synth", "tanh", CHANCE, "equivalent", metric="train_error", margin=0.05),
    _claim("nothing", "never-run", "prelu", "relu", "less"),
]


@pytest.fixture()
def synthetic(tmp_path):
    _synthetic_preset(tmp_path, "synth", SEEDS)
    _synthetic_preset(tmp_path, "never-run", SEEDS, write_runs=False)
    table, scales = claims_table(SYNTHETIC, tmp_path)
    return tmp_path, table.set_index("claim_id"), scales


def test_known_effects_reach_every_verdict(synthetic):
    _, table, _ = synthetic
    assert list(table.reset_index().columns) == COLUMNS
    assert table["verdict"].to_dict() == {
        "holds": "holds", "contradicted": "contradicted", "equivalent": "equivalent", "underpowered": "underpowered",
        "premise-not-met": "premise not met", "same-holds": "holds", "same-contradicted": "contradicted",
        "exact-at-chance": "holds", "nothing": "not run"}
    assert set(table["verdict"]) <= set(VERDICTS)
    assert table.loc["holds", "effect"] == pytest.approx(-0.10)
    assert (table.loc[["holds", "equivalent", "underpowered"], "n"] == len(SEEDS)).all()


def test_underpowered_states_its_power_and_the_seeds_it_needs(synthetic):
    _, table, _ = synthetic
    row = table.loc["underpowered"]
    sd = float(np.std(3 * NULL, ddof=1))
    level = 0.05 / 8  # the power is planned at alpha over the preset's claims (8 name "synth")
    assert row["mde"] == pytest.approx(stats.minimum_detectable_effect(len(SEEDS), sd, level))
    assert row["mde"] > row["sesoi"] == 0.01
    assert abs(row["seeds_needed"] - math.ceil(stats.closed_form_seeds(sd, 0.01, level))) <= 1


def test_premises_are_measured_and_stop_the_test(synthetic):
    _, table, _ = synthetic
    row = table.loc["premise-not-met"]
    assert "control_train_error = 0.9" in row["premises"] and "not met" in row["premises"]
    assert math.isnan(row["p_holm"]) and row["effect"] == pytest.approx(-0.10)  # the effect is still shown


def test_exact_claims_are_decided_by_their_values_not_by_a_p(synthetic):
    _, table, _ = synthetic
    row = table.loc["exact-at-chance"]
    assert row["exact"] and row["effect"] == 0 and math.isnan(row["p"]) and math.isnan(row["p_holm"])


def test_p_is_holm_corrected_over_the_tested_claims_of_one_preset(synthetic):
    _, table, _ = synthetic
    diffs = {cid: TEST_ERROR[t] - BASE for cid, t in (("holds", "prelu"), ("contradicted", "rrelu"),
                                                      ("equivalent", "tanh"), ("underpowered", "leaky_relu_a5.5"))}
    raw = {cid: sps.ttest_1samp(d, 0).pvalue for cid, d in diffs.items()}
    for cid, treatment in (("same-holds", "tanh"), ("same-contradicted", "rrelu")):
        d = TEST_ERROR[treatment] - BASE
        raw[cid] = max(sps.ttest_1samp(d, -0.01, alternative="greater").pvalue,
                       sps.ttest_1samp(d, 0.01, alternative="less").pvalue)
    adjusted = dict(zip(raw, stats.holm(list(raw.values()))))  # premise-not-met and the exact claim: no test
    for cid in raw:
        assert table.loc[cid, "p_holm"] == pytest.approx(adjusted[cid], rel=1e-9), cid


def test_n_counts_seeds_not_pooled_points(tmp_path):
    """A claim that spans another axis averages its differences per seed first: n is the seeds."""
    _synthetic_preset(tmp_path, "two-inits", SEEDS, initializers=("he_normal", "xavier_uniform"))
    table = claims_table([_claim("pooled", "two-inits", "prelu", "relu", "less")], tmp_path)[0].iloc[0]
    assert table["n"] == len(SEEDS) and table["effect"] == pytest.approx(-0.10)
    assert table["pooling"] == "mean over initializer (he_normal, xavier_uniform) per seed"


def test_seeds_beyond_the_plan_stay_out_of_the_verdict(tmp_path):
    _synthetic_preset(tmp_path, "planned", SEEDS, plan={"acts": 4})
    row = claims_table([_claim("planned", "planned", "prelu", "relu", "less")], tmp_path)[0].iloc[0]
    assert row["n"] == 4 and row["seeds_beyond_plan"] == 2
    assert row["effect"] == pytest.approx(-0.10 + NOISE[:4].mean())


def test_a_diverged_run_counts_at_chance_for_an_error_and_leaves_a_loss_comparison(tmp_path):
    """A treatment that diverges in one seed is not judged on its survivors: its test error there is chance
    (0.9 with 10 classes); a loss has no chance level, so that seed leaves a loss claim's comparison."""
    _synthetic_preset(tmp_path, "div", SEEDS)
    runs_csv = tmp_path / "results" / "div" / "runs.csv"
    runs = pd.read_csv(runs_csv)
    runs["test_loss"] = runs["test_error"] * 3
    failed = (runs["activation"] == "prelu") & (runs["seed"] == 0)
    runs.loc[failed, "status"] = "diverged"
    runs.loc[failed, ["test_error", "val_error", "train_error", "test_loss"]] = math.nan
    runs.to_csv(runs_csv, index=False)
    table = claims_table([_claim("error", "div", "prelu", "relu", "less"),
                          _claim("loss", "div", "prelu", "relu", "less", metric="test_loss", sesoi=0.01)],
                         tmp_path)[0].set_index("claim_id")
    diffs = -0.10 + NOISE
    diffs[0] = 0.9 - BASE[0]
    assert table.loc["error", "n"] == len(SEEDS) and table.loc["error", "effect"] == pytest.approx(diffs.mean())
    assert table.loc["error", "verdict"] != "holds"  # the survivors alone would hold (-0.10 each)
    assert table.loc["loss", "n"] == len(SEEDS) - 1
    assert table.loc["loss", "effect"] == pytest.approx(3 * (-0.10 + NOISE[1:]).mean())


def test_a_per_run_ensemble_is_averaged_per_seed(tmp_path):
    _synthetic_preset(tmp_path, "ens", SEEDS)
    study = tmp_path / "results" / "ens" / "acts"
    study.mkdir()
    labels = [f"epochs 1, 2 of activation-{a}__initializer-he_normal__seed-{s}" for a in ("relu", "prelu") for s in SEEDS]
    gains = [0.01 * (s + 1) for _ in range(2) for s in SEEDS]
    pd.DataFrame({"kind": "snapshot_of_run", "label": labels, "gain_test_error": gains,
                  "gain_over_best_member_test_error": 0.0}).to_csv(study / "ensembles.csv", index=False)
    entry = Claim("snap", "s", "t.", "ens", "acts", ENSEMBLE_AXIS, "snapshot_of_run", "best_single", "test_error", "less")
    row = claims_table([entry], tmp_path)[0].iloc[0]
    assert row["n"] == len(SEEDS) and row["unit"] == "seed" and row["effect"] == pytest.approx(-np.mean(gains))


def test_the_forest_plot_places_each_claim_in_units_of_its_sesoi(synthetic):
    from trickbench.claims.render import forest_figure

    _, table, _ = synthetic
    figure = forest_figure(table.reset_index())
    points = {line.get_gid(): line for line in figure.axes[0].lines if line.get_gid()}
    # a "less" claim is mirrored: an effect of −0.10 with SESOI 0.01 is drawn at +10 (in its favour)
    assert points["effect:holds"].get_xdata()[0] == pytest.approx(10.0)
    assert points["effect:contradicted"].get_xdata()[0] == pytest.approx(-10.0)
    assert "effect:nothing" not in points and "ci:exact-at-chance" in points
    colours = {line.get_gid(): line.get_color() for line in figure.axes[0].lines if line.get_gid()}
    assert colours["effect:holds"] != colours["effect:underpowered"]


def test_the_forest_plot_has_the_same_bytes_whatever_theme_the_process_has_set(synthetic, tmp_path):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from trickbench.claims.render import forest_plot

    _, table, _ = synthetic
    with plt.style.context("default"):
        forest_plot(table.reset_index(), tmp_path / "plain.png")
    with plt.style.context("default"):
        sns.set_theme(style="whitegrid", context="notebook")  # what importing trickbench.report.figures does
        forest_plot(table.reset_index(), tmp_path / "themed.png")
    assert (tmp_path / "themed.png").read_bytes() == (tmp_path / "plain.png").read_bytes()


# ------------------------------------------------------------------------------------------------ commands

def _run(root, *args):
    return subprocess.run([str(BIN / "trickbench"), *args], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_command_writes_the_tables_and_the_forest_plot(tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    done = _run(tmp_path, "claims", "--root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert list(table.columns) == COLUMNS and len(table) == len(REGISTERED)
    assert set(table["verdict"]) == {"not run"} and (table["n"] == 0).all()
    assert (tmp_path / "out" / "claims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## scaled-cifar10" in (tmp_path / "out" / "claims.md").read_text()
    ladder = pd.read_csv(tmp_path / "out" / "ladder.csv")
    assert len(ladder) == len([c for c in REGISTERED if c.rung]) and set(ladder["verdict"]) == {"not run"}
    assert (tmp_path / "out" / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, culprit", [
    ("study,point_id\nactivations,activation-relu__seed-0\n", "runs.csv: no column status"),
    ("study,point_id,status,test_error,train_error\nactivations,activation-relu__seed-0,completed,low,0.1\n"
     "activations,activation-prelu__seed-0,completed,0.2,0.1\n", "column 'test_error' is not numeric"),
], ids=["no-status-column", "text-in-a-metric"])
def test_an_unreadable_runs_table_fails_cleanly_and_writes_nothing(tmp_path, content, culprit):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    runs = tmp_path / "results" / "scaled-cifar10" / "runs.csv"
    runs.parent.mkdir(parents=True)
    runs.write_text(content)
    done = _run(tmp_path, "claims", "--root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and culprit in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_plan_prints_the_seeds_each_claim_needs_and_records_them(tmp_path):
    _synthetic_preset(tmp_path, "synth", SEEDS)
    import trickbench.claims.model as model

    # the plan reads the registry: register the synthetic claims for this test only
    added = [c for c in SYNTHETIC if c.preset == "synth"]
    saved = dict(model.CLAIMS._entries)
    try:
        for c in added:
            model.CLAIMS.add(c.claim_id, lambda c=c: c, c.statement, claim=c)
        from trickbench.claims.plan import apply_plan

        text, plans = apply_plan("synth", tmp_path, None, budget=40, write=True)
    finally:
        model.CLAIMS._entries = saved
    by_id = {p.claim_id: p for p in plans}
    sd = float(np.std(3 * NULL, ddof=1))
    assert by_id["underpowered"].sd == pytest.approx(sd)
    assert abs(by_id["underpowered"].seeds_needed - math.ceil(stats.closed_form_seeds(sd, 0.01, 0.05 / len(added)))) <= 1
    assert "underpowered" in text and "seeds needed" in text
    recorded = load_params(tmp_path / "configs" / "synth.yaml")["plan"]["seeds"]
    assert recorded == {"acts": max(3, min(40, int(max(p.seeds_needed for p in plans if not math.isnan(p.seeds_needed)))))}


def test_plan_refuses_a_preset_without_claims(tmp_path):
    done = _run(REPO, "plan", "no-such-preset")
    assert done.returncode == 2 and "no claim names preset 'no-such-preset'" in done.stderr


# ------------------------------------------------------------------------------------------------ committed

def test_the_committed_claims_table_is_current():
    """results/claims.csv is what `trickbench claims` makes from the committed runs (rerun it after a preset)."""
    committed = pd.read_csv(REPO / "results" / "claims.csv")
    fresh = claims_table(None, REPO)[0]
    pd.testing.assert_frame_equal(committed, pd.read_csv(io.StringIO(fresh.to_csv(index=False))))


def test_the_findings_page_table_is_the_committed_table(tmp_path):
    """docs/findings.md's claims table is what `trickbench claims --readme docs/findings.md` writes, and the
    command rewrites exactly that block; a page without markers is refused before anything is written."""
    from trickbench.claims.render import README_TABLE, readme_table

    committed = pd.read_csv(REPO / "results" / "claims.csv")
    begin, end = README_TABLE
    assert FINDINGS.read_text().split(begin)[1].split(end)[0].strip() == readme_table(committed)
    for figure in ("claims.png", "ladder.png"):
        assert (REPO / "docs" / figure).read_bytes() == (REPO / "results" / figure).read_bytes()
    page = tmp_path / "findings.md"
    page.write_text(f"# intro\n\n{begin}\nstale\n{end}\n\nprose after\n")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    claims = ("claims", "--root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert _run(tmp_path, *claims, "--readme", str(page)).returncode == 0
    fresh = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert page.read_text() == f"# intro\n\n{begin}\n{readme_table(fresh)}\n{end}\n\nprose after\n"
    page.write_text("no markers\n")
    shutil.rmtree(tmp_path / "out")
    refused = _run(tmp_path, *claims, "--readme", str(page))
    assert refused.returncode == 2 and "claims:table:begin" in refused.stderr and page.read_text() == "no markers\n"
    assert _run(tmp_path, *claims, "--readme", "/dev/zero").returncode == 2
    assert not (tmp_path / "out").exists()


def test_xu_claims_carry_the_papers_own_difference():
    from trickbench.claims import paper_effect

    by_id = {c.claim_id: c for c in REGISTERED}
    assert paper_effect(by_id["xu-c10-prelu-beats-relu"]) == pytest.approx(0.1179 - 0.1245)
    assert paper_effect(by_id["xu-ndsb-prelu-lowest-train"]) == pytest.approx(0.7187 - 0.8092)
    assert math.isnan(paper_effect(by_id["init-zeros-no-learning"]))


def test_the_report_of_a_preset_gives_its_claims_and_declares_them(monkeypatch):
    from trickbench.claims import preset_claims
    from trickbench.paths import Layout
    from trickbench.report.outputs import report_outputs

    monkeypatch.chdir(REPO)
    params = load_params(REPO / "configs" / "seed-initializers.yaml")
    expected = sorted(c.claim_id for c in REGISTERED if c.preset == "seed-initializers")
    assert expected and sorted(c.claim_id for c in preset_claims(params)) == expected
    declared = {str(p) for p in report_outputs(params, Layout.from_params(params))}
    assert {f"results/seed-initializers/claims.{ext}" for ext in ("md", "csv", "html", "png")} <= declared
    assert preset_claims(tiny_params()) == []


@pytest.mark.parametrize("plan, culprit", [({"nope": 3}, "plan.seeds.nope: no such study"),
                                           ({"acts": 1}, "plan.seeds")])
def test_a_plan_that_does_not_fit_the_grid_is_refused(tmp_path, plan, culprit):
    _synthetic_preset(tmp_path, "bad-plan", SEEDS, write_runs=False, plan=plan)
    done = _run(tmp_path, "--params", str(tmp_path / "configs" / "bad-plan.yaml"), "validate")
    assert done.returncode == 2 and culprit in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_an_axis_that_goes_with_the_treatment_is_not_matched(tmp_path):
    """Optimizers at their own learning rates (one block each): pairs are formed on the seed alone."""
    params = tiny_params(paths={"artifacts": "artifacts/opt", "results": "results/opt"})
    params["studies"] = {"opt": {"axes": [{"optimizer": ["sgd"], "lr": [0.05], "seed": SEEDS},
                                          {"optimizer": ["adam"], "lr": [0.001], "seed": SEEDS}]}}
    (tmp_path / "configs").mkdir()
    write_params(tmp_path / "configs" / "opt.yaml", params)
    rows = [{"study": "opt", "point_id": p.point_id, "status": "completed", "train_loss": 1.0 + NOISE[i] +
             (0.3 if p.config["optimizer"] == "adam" else 0.0)}
            for p in expand_grid(load_params(tmp_path / "configs" / "opt.yaml")) for i in [SEEDS.index(p.config["seed"])]]
    (tmp_path / "results" / "opt").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "opt" / "runs.csv", index=False)
    common = dict(treatment="adam", control="sgd", metric="train_loss", expected="less")
    free = Claim("free", "s", "t.", "opt", "opt", "optimizer", free_axes=("lr",), **common)
    matched = Claim("matched", "s", "t.", "opt", "opt", "optimizer", **common)
    table = claims_table([free, matched], tmp_path)[0].set_index("claim_id")
    assert table.loc["free", "n"] == len(SEEDS) and table.loc["free", "effect"] == pytest.approx(0.3)
    assert table.loc["matched", "n"] == 0  # no sgd run shares adam's learning rate


def test_the_findings_page_counts_are_the_committed_table():
    """docs/findings.md opens with the verdict counts of results/claims.csv (and the README repeats them)."""
    import re

    counts = pd.read_csv(REPO / "results" / "claims.csv")["verdict"].value_counts()
    found = re.search(r"\*\*Today \((\d+) claims\): ([^*]+)\.\*\*", FINDINGS.read_text())
    assert found, "docs/findings.md: the claims summary line is missing"
    stated = {verdict: int(n) for n, verdict in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", found.group(2))}
    assert int(found.group(1)) == int(counts.sum()) and stated == {v: int(n) for v, n in counts.items()}


def test_each_presets_own_claims_agree_with_the_table():
    """results/<preset>/claims.csv (the report stage's, or `trickbench claims --preset-reports`) gives the same
    verdicts and effects as results/claims.csv, and each preset with runs has its forest plot."""
    table = pd.read_csv(REPO / "results" / "claims.csv")
    presets = [p for p in dict.fromkeys(table["preset"]) if (REPO / "results" / p / "runs.csv").is_file()]
    assert presets
    for preset in presets:
        own = pd.read_csv(REPO / "results" / preset / "claims.csv").set_index("claim_id")
        part = table[table["preset"] == preset].set_index("claim_id")
        assert list(own.index) == list(part.index), preset
        assert (own["verdict"] == part["verdict"]).all(), preset
        assert np.allclose(own["effect"], part["effect"], equal_nan=True), preset
        assert (REPO / "results" / preset / "claims.png").read_bytes()[:4] == b"\x89PNG", preset


def test_max_norm_binds_is_read_from_the_runs_rescalings():
    """The max-norm premise: a run binds when it rescaled a unit; runs made before the count existed (no
    column, or an empty cell) are not measured, so the premise is not met rather than assumed."""
    from trickbench.claims.evidence import max_norm_bound

    older = pd.DataFrame({"point_id": ["a", "b"]})
    assert np.isnan(max_norm_bound(older, None)).all()
    counted = pd.DataFrame({"max_norm_rescalings": [12.0, 0.0, math.nan]})
    np.testing.assert_array_equal(max_norm_bound(counted, None), [1.0, 0.0, math.nan])
    premise = next(p for c in REGISTERED if c.claim_id == "reg-max-norm-shrinks-gap" for p in c.premises
                   if p.name.startswith("treatment_runs_where_max_norm"))
    assert premise.holds(1.0) and not premise.holds(0.5) and not premise.holds(math.nan)


def test_the_runs_table_carries_the_max_norm_count_the_premise_reads():
    """runs.csv (report.tables.runs_frame, what the claims read) keeps each run's max_norm_rescalings from
    its metrics.json; runs without max-norm have an empty cell (not applicable, never 0)."""
    from trickbench.claims.evidence import max_norm_bound
    from trickbench.report.tables import runs_frame

    def record(point, **metrics):
        return {"study": "regs", "point_id": point, "status": "completed", "axes": {"seed": 0}, "epochs_run": 2,
                "train_error": 0.1, **metrics}

    frame = runs_frame([record("max_norm", max_norm_rescalings=27265.0), record("none")])
    assert frame["max_norm_rescalings"].iloc[0] == 27265.0 and math.isnan(frame["max_norm_rescalings"].iloc[1])
    np.testing.assert_array_equal(max_norm_bound(frame.iloc[:1], None), [1.0])
