"""The claims table (report/claims.py, `trickbench claims`): every registered claim fits its preset's grid;
synthetic runs with known effects give holds / contradicted / inconclusive / not run, the n, the t-interval
(against scipy.stats.t), the Holm correction per preset; the committed results/claims.csv is current."""
from __future__ import annotations

import io
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import BIN, REPO, tiny_params, write_params
from trickbench.grid import expand_grid, format_value
from trickbench.params import load_params
from trickbench.report.claims import (CHANCE, CLAIMS, COLUMNS, ENSEMBLE_AXIS, Claim, ClaimsError, check_claim,
                                      claims_table)
from trickbench.report.tables import holm

REGISTERED = [entry.extra["claim"] for entry in CLAIMS]


# ------------------------------------------------------------------------------------------------ registry

def test_the_registry_holds_the_issues_claims():
    ids = [c.claim_id for c in REGISTERED]
    assert len(ids) >= 24 and len(set(ids)) == len(ids)
    # the issue's examples, one id each
    for expected in ["init-zeros-no-learning", "init-small-random-slower-than-he", "init-he-beats-xavier-relu",
                     "act-sigmoid-slower-than-relu", "act-tanh-slower-than-relu", "lr-too-high-fails",
                     "lr-too-low-linear", "lr-plateau-beats-constant", "prep-normalize-beats-raw",
                     "aug-flip-crop-reduces-test-error", "aug-color-jitter-reduces-test-error",
                     "aug-hsv-reduces-test-error", "aug-fancy-pca-reduces-test-error", "reg-l2-shrinks-gap",
                     "reg-dropout-shrinks-gap", "reg-max-norm-shrinks-gap", "reg-batch-norm-faster",
                     "reg-early-stopping-keeps-accuracy", "ens-seeds-beat-best-member", "ens-top-k-beats-best-single",
                     "ens-snapshot-beats-best-single", "imbalance-oversample-improves", "imbalance-undersample-improves",
                     "xu-c10-leaky-relu-a5.5-beats-relu", "xu-c10-prelu-beats-relu", "xu-c10-rrelu-beats-relu",
                     "xu-c10-a100-same-as-relu", "xu-c10-a5.5-beats-a100", "xu-c10-prelu-lowest-train-vs-relu",
                     "xu-ndsb-rrelu-beats-relu"]:
        assert expected in ids, expected
    for c in REGISTERED:
        assert c.source and c.statement.endswith(".") and (REPO / c.config_path).is_file(), c.claim_id
        assert CLAIMS.entry(c.claim_id).description == c.statement


def test_every_claim_fits_its_presets_expanded_grid():
    """Independently of check_claim: the study, the axis, both values and a pair of points exist."""
    for c in REGISTERED:
        params = load_params(REPO / c.config_path)
        check_claim(c, params)
        points = [p for p in expand_grid(params) if p.study == c.study]
        assert points, c.claim_id
        if c.axis == ENSEMBLE_AXIS:
            assert len({p.config["seed"] for p in points}) >= 2, c.claim_id
            continue
        assert c.axis in {k for p in points for k in p.axes}, c.claim_id
        keep = [p for p in points if all(format_value(p.config[k]) in map(format_value, v) for k, v in c.where.items())]
        treated = [p for p in keep if format_value(p.config[c.axis]) == format_value(c.treatment)]
        assert len(treated) >= 3, c.claim_id  # the verdict rule needs three pairs
        if c.control == CHANCE:
            continue
        others = {k for p in points for k in p.axes} - {c.axis}
        controls = {tuple(format_value(p.config[k]) for k in sorted(others))
                    for p in keep if format_value(p.config[c.axis]) == format_value(c.control)}
        pairs = [p for p in treated if tuple(format_value(p.config[k]) for k in sorted(others)) in controls]
        assert len(pairs) >= 3, c.claim_id


def test_a_claim_whose_value_the_grid_lacks_is_refused():
    params = load_params(REPO / "configs" / "scaled-cifar10.yaml")
    bad = Claim("x", "s", "t.", "scaled-cifar10", "activations", "activation", "swish", "relu", "test_error", "less")
    with pytest.raises(ClaimsError, match="no value 'swish'"):
        check_claim(bad, params)
    with pytest.raises(ClaimsError, match="no axis 'lr'"):
        check_claim(Claim("x", "s", "t.", "scaled-cifar10", "activations", "lr", 0.1, 0.01, "test_error", "less"), params)


@pytest.mark.parametrize("kind", ["snapshot", "snapshot_of_run"])
def test_a_snapshot_claim_needs_snapshots(kind):
    params = load_params(REPO / "configs" / "seed-regularizers.yaml")
    entry = Claim("x", "s", "t.", "seed-regularizers", "regularizers", ENSEMBLE_AXIS, kind, "best_single", "test_error", "less")
    check_claim(entry, params)  # the preset keeps 3 snapshots
    params["train"]["snapshots"] = 1
    with pytest.raises(ClaimsError, match="train.snapshots < 2"):
        check_claim(entry, params)


@pytest.mark.parametrize("kind", ["seeds", "top_k_of_seed"])
def test_a_per_seed_ensemble_claim_needs_a_seed_axis(kind):
    params = load_params(REPO / "configs" / "seed-regularizers.yaml")
    entry = Claim("x", "s", "t.", "seed-regularizers", "regularizers", ENSEMBLE_AXIS, kind, "best_member", "test_error", "less")
    check_claim(entry, params)
    params["studies"]["regularizers"]["axes"].pop("seed")
    with pytest.raises(ClaimsError, match="no seed axis"):
        check_claim(entry, params)


# ------------------------------------------------------------------------------------------------ synthetic

SEEDS = [0, 1, 2, 3, 4, 5]
NOISE = np.array([0.004, -0.006, 0.010, -0.003, 0.001, -0.006])  # fixed: the differences are known exactly
NULL = np.array([0.010, -0.012, 0.004, -0.006, 0.011, -0.007])  # mean 0, spread: a null effect
BASE = np.array([0.30, 0.32, 0.29, 0.31, 0.33, 0.30])  # relu's test error per seed
EFFECT = {"relu": 0.0, "prelu": -0.10, "rrelu": +0.10, "leaky_relu_a100": 0.001}


def _synthetic_preset(root, name, seeds, write_runs=True):
    params = tiny_params(paths={"artifacts": f"artifacts/{name}", "results": f"results/{name}"})
    params["studies"] = {"acts": {"axes": {"activation": ["relu", "prelu", "rrelu", "leaky_relu_a100", "tanh"],
                                           "seed": seeds}}}
    (root / "configs").mkdir(exist_ok=True)
    write_params(root / "configs" / f"{name}.yaml", params)
    if not write_runs:
        return
    rows = []
    for activation in ["relu", "prelu", "rrelu", "leaky_relu_a100", "tanh"]:
        for i, seed in enumerate(seeds):
            if activation == "relu":
                error = BASE[i]
            elif activation == "tanh":
                error = BASE[i] + NULL[i]
            elif activation == "leaky_relu_a100":
                error = BASE[i] + EFFECT[activation] + NOISE[i] / 10
            else:
                error = BASE[i] + EFFECT[activation] + NOISE[i]
            rows.append({"study": "acts", "point_id": f"activation-{activation}__seed-{seed}", "status": "completed",
                         "activation": activation, "seed": seed, "test_error": error, "train_error": 0.9 + NOISE[i] / 2,
                         "epochs_run": 2.0})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # pairing must follow the seed, not the row order
    results = root / "results" / name
    (results / "data").mkdir(parents=True)
    frame.to_csv(results / "runs.csv", index=False)
    pd.DataFrame({"class": [str(k) for k in range(10)], "train": 100, "val": 20, "test": 20}).to_csv(
        results / "data" / "class_counts.csv", index=False)


def _claim(claim_id, preset, treatment, control, expected, metric="test_error", **options):
    return Claim(claim_id, "synthetic", f"{claim_id}.", preset, "acts", "activation", treatment, control, metric,
                 expected, **options)


@pytest.fixture()
def synthetic(tmp_path):
    _synthetic_preset(tmp_path, "synth", SEEDS)
    _synthetic_preset(tmp_path, "two-seeds", [0, 1])
    _synthetic_preset(tmp_path, "never-run", SEEDS, write_runs=False)
    claims = [
        _claim("large-expected", "synth", "prelu", "relu", "less"),
        _claim("large-other-way", "synth", "rrelu", "relu", "less"),
        _claim("null", "synth", "tanh", "relu", "less"),
        _claim("greater-holds", "synth", "rrelu", "relu", "greater"),
        _claim("same", "synth", "leaky_relu_a100", "relu", "equivalent", margin=0.01),
        _claim("not-same", "synth", "rrelu", "relu", "equivalent", margin=0.01),
        _claim("at-chance", "synth", "leaky_relu_a100", CHANCE, "equivalent", metric="train_error", margin=0.05),
        _claim("too-few", "two-seeds", "prelu", "relu", "less"),
        _claim("nothing", "never-run", "prelu", "relu", "less"),
    ]
    table, scales = claims_table(claims, tmp_path)
    return tmp_path, claims, table.set_index("claim_id"), scales


def test_known_effects_get_their_verdicts(synthetic):
    _, _, table, _ = synthetic
    assert list(table.reset_index().columns) == COLUMNS
    verdicts = table["verdict"].to_dict()
    assert verdicts == {"large-expected": "holds", "large-other-way": "contradicted", "null": "inconclusive",
                        "greater-holds": "holds", "same": "holds", "not-same": "contradicted", "at-chance": "holds",
                        "too-few": "inconclusive", "nothing": "not run"}
    assert table.loc["large-expected", "effect"] == pytest.approx(-0.10)
    assert table.loc["large-other-way", "effect"] == pytest.approx(+0.10)
    assert table.loc["null", "effect"] == pytest.approx(NULL.mean(), abs=1e-12)
    assert (table.loc[["large-expected", "null", "same", "at-chance"], "n"] == len(SEEDS)).all()


def test_the_interval_is_scipys_t_interval_of_the_paired_differences(synthetic):
    _, _, table, _ = synthetic
    for claim_id, diffs in [("large-expected", EFFECT["prelu"] + NOISE), ("null", NULL),
                            ("same", EFFECT["leaky_relu_a100"] + NOISE / 10)]:
        low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
        assert table.loc[claim_id, "ci_low"] == pytest.approx(low, abs=1e-12)
        assert table.loc[claim_id, "ci_high"] == pytest.approx(high, abs=1e-12)


def test_p_is_holm_corrected_over_the_claims_of_one_preset(synthetic):
    _, _, table, _ = synthetic
    relu = BASE
    raw = {
        "large-expected": stats.ttest_rel(relu + EFFECT["prelu"] + NOISE, relu).pvalue,
        "large-other-way": stats.ttest_rel(relu + EFFECT["rrelu"] + NOISE, relu).pvalue,
        "null": stats.ttest_rel(relu + NULL, relu).pvalue,
        "greater-holds": stats.ttest_rel(relu + EFFECT["rrelu"] + NOISE, relu).pvalue,
    }
    same = EFFECT["leaky_relu_a100"] + NOISE / 10  # TOST: the larger one-sided p against ±0.01
    raw["same"] = max(stats.ttest_1samp(same, -0.01, alternative="greater").pvalue,
                      stats.ttest_1samp(same, 0.01, alternative="less").pvalue)
    not_same = EFFECT["rrelu"] + NOISE
    raw["not-same"] = max(stats.ttest_1samp(not_same, -0.01, alternative="greater").pvalue,
                          stats.ttest_1samp(not_same, 0.01, alternative="less").pvalue)
    chance = 0.9 + NOISE / 2 - 0.9
    raw["at-chance"] = max(stats.ttest_1samp(chance, -0.05, alternative="greater").pvalue,
                           stats.ttest_1samp(chance, 0.05, alternative="less").pvalue)
    ids = list(raw)
    adjusted = dict(zip(ids, holm([raw[i] for i in ids])))
    for claim_id in ids:
        assert table.loc[claim_id, "p_holm"] == pytest.approx(adjusted[claim_id], rel=1e-9), claim_id
        assert table.loc[claim_id, "p_holm"] >= raw[claim_id]
    # the null claim's raw p is what Holm multiplies: below alpha alone it would still not hold here
    assert adjusted["null"] > 0.05


def test_too_few_pairs_and_presets_not_run_get_no_numbers(synthetic):
    _, _, table, scales = synthetic
    too_few = table.loc["too-few"]
    assert too_few["n"] == 2 and too_few["effect"] == pytest.approx(-0.10 + NOISE[:2].mean())
    assert all(math.isnan(too_few[c]) for c in ("ci_low", "ci_high", "p_holm"))
    nothing = table.loc["nothing"]
    assert nothing["n"] == 0 and all(math.isnan(nothing[c]) for c in ("effect", "ci_low", "ci_high", "p_holm"))
    assert "not run" in scales["never-run"] and "2 epochs run, 30 runs" in scales["synth"]
    assert "1,000 training images, 10 classes" in scales["synth"]


def test_a_diverged_run_drops_its_pair_unless_it_counts_as_chance(tmp_path):
    _synthetic_preset(tmp_path, "synth", SEEDS)
    runs_path = tmp_path / "results" / "synth" / "runs.csv"
    runs = pd.read_csv(runs_path)
    diverged = runs["point_id"] == "activation-rrelu__seed-0"
    runs.loc[diverged, "status"], runs.loc[diverged, "test_error"] = "diverged", math.nan
    runs.to_csv(runs_path, index=False)
    claims = [_claim("dropped", "synth", "rrelu", "relu", "greater"),
              _claim("as-chance", "synth", "rrelu", "relu", "greater", diverged_as_chance=True)]
    table = claims_table(claims, tmp_path)[0].set_index("claim_id")
    assert table.loc["dropped", "n"] == len(SEEDS) - 1
    assert table.loc["dropped", "effect"] == pytest.approx((EFFECT["rrelu"] + NOISE[1:]).mean())
    assert table.loc["as-chance", "n"] == len(SEEDS)
    expected = np.r_[0.9 - BASE[0], EFFECT["rrelu"] + NOISE[1:]]
    assert table.loc["as-chance", "effect"] == pytest.approx(expected.mean())


def test_where_keeps_only_the_named_values_of_another_axis(tmp_path):
    params = tiny_params(paths={"artifacts": "artifacts/w", "results": "results/w"})
    params["studies"] = {"grid": {"axes": {"initializer": ["he_normal", "xavier_uniform"],
                                           "activation": ["relu", "tanh"], "seed": [0, 1, 2]}}}
    (tmp_path / "configs").mkdir()
    write_params(tmp_path / "configs" / "w.yaml", params)
    rows = []
    for point in expand_grid(load_params(tmp_path / "configs" / "w.yaml")):
        axes = point.axes
        # He beats Xavier by 0.05 for ReLU only; for tanh Xavier is better by 0.05
        sign = -1 if axes["activation"] == "relu" else 1
        error = 0.2 + (0.05 * sign if axes["initializer"] == "he_normal" else 0.0) + 0.001 * axes["seed"]
        rows.append({"study": "grid", "point_id": point.point_id, "status": "completed", **axes, "test_error": error})
    (tmp_path / "results" / "w").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "w" / "runs.csv", index=False)
    relu = Claim("relu", "s", "t.", "w", "grid", "initializer", "he_normal", "xavier_uniform", "test_error", "less",
                 where={"activation": ["relu"]})
    both = Claim("both", "s", "t.", "w", "grid", "initializer", "he_normal", "xavier_uniform", "test_error", "less")
    table = claims_table([relu, both], tmp_path)[0].set_index("claim_id")
    assert table.loc["relu", "n"] == 3 and table.loc["relu", "effect"] == pytest.approx(-0.05)
    assert table.loc["both", "n"] == 6 and table.loc["both", "effect"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["relu", "treatment"] == "initializer=he_normal; activation=relu"


# ------------------------------------------------------------------------------------------------ real registry

def _fill_every_preset(root):
    """Synthetic committed results for every preset the registry names: every grid point completed."""
    rng = np.random.default_rng(0)
    shutil.copytree(REPO / "configs", root / "configs")
    for preset in dict.fromkeys(c.preset for c in REGISTERED):
        params = load_params(root / "configs" / f"{preset}.yaml")
        results = root / params["paths"]["results"]
        runs, curves = [], []
        for point in expand_grid(params):
            labels = {k: format_value(v) for k, v in point.axes.items()}
            runs.append({"study": point.study, "point_id": point.point_id, "status": "completed", **labels,
                         **{m: rng.uniform(0.1, 0.9) for m in ["train_error", "val_error", "test_error", "train_loss",
                                                               "val_loss", "test_loss", "train_loss_running", "test_mean_recall"]},
                         "epochs_run": 5.0})
            for epoch in range(1, 6):
                curves.append({"study": point.study, "point_id": point.point_id, "epoch": epoch,
                               "train_loss": 2.3 / epoch + rng.uniform(0, 0.1)})
        (results / "data").mkdir(parents=True)
        pd.DataFrame(runs).to_csv(results / "runs.csv", index=False)
        pd.DataFrame(curves).to_csv(results / "curves.csv", index=False)
        pd.DataFrame({"class": list("abcdefghij"), "train": 10, "val": 2, "test": 2}).to_csv(
            results / "data" / "class_counts.csv", index=False)
        for study in params["studies"]:
            points = [p for p in expand_grid(params) if p.study == study]
            ids = [p.point_id for p in points]
            (results / study).mkdir()
            pd.DataFrame({"point_id": ids, "late_over_early": rng.uniform(0.1, 1.0, len(ids))}).to_csv(
                results / study / "diagnosis.csv", index=False)
            configurations = {tuple((k, format_value(v)) for k, v in p.axes.items() if k != "seed") for p in points}
            seeds = {p.config["seed"] for p in points}
            kinds = ["best_single", "top_k", *["seeds"] * len(configurations), "snapshot",
                     *["top_k_of_seed"] * len(seeds), *["snapshot_of_run"] * len(ids)]
            pd.DataFrame({"kind": kinds, "gain_test_error": rng.normal(0, 0.01, len(kinds)),
                          "gain_over_best_member_test_error": rng.normal(0, 0.01, len(kinds))}).to_csv(
                results / study / "ensembles.csv", index=False)


def test_every_registered_claim_is_evaluated_once_its_preset_has_run(tmp_path):
    _fill_every_preset(tmp_path)
    table = claims_table(None, tmp_path)[0].set_index("claim_id")
    assert len(table) == len(REGISTERED) and "not run" not in set(table["verdict"])
    n = table["n"].to_dict()
    assert n["init-he-beats-xavier-relu"] == 5  # relu only, 5 seeds
    assert n["act-sigmoid-slower-than-relu"] == 15  # 3 non-zero initializers x 5 seeds
    assert n["init-zeros-no-learning"] == 15  # 3 activations x 5 seeds, against chance
    assert n["lr-plateau-beats-constant"] == 5 and n["xu-c10-prelu-beats-relu"] == 8  # 5 and 8 seeds
    # seed-regularizers: 9 regularizer settings x 5 seeds = 45 runs
    assert n["ens-seeds-beat-best-member"] == 9 and n["ens-top-k-beats-best-single"] == 5
    assert n["ens-snapshot-beats-best-single"] == 45
    assert n["ens-snapshot-cycles-beat-run"] == 5  # seed-learning-rates' snapshot study: one run per seed
    evaluated = table[table["n"] >= 3]
    assert evaluated[["effect", "ci_low", "ci_high", "p_holm"]].notna().all().all()
    # BN's epochs to loss 1.0: every synthetic curve reaches it at epoch 2 or 3
    assert abs(table.loc["reg-batch-norm-faster", "effect"]) <= 1


# ------------------------------------------------------------------------------------------------ command

def _run(root, *extra):
    return subprocess.run([str(BIN / "trickbench"), "claims", "--root", str(root), "--out", str(root / "out"), *extra],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_the_command_writes_both_tables_and_says_not_run(tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert list(table.columns) == COLUMNS and len(table) == len(REGISTERED)
    assert set(table["verdict"]) == {"not run"} and (table["n"] == 0).all() and table["effect"].isna().all()
    markdown = (tmp_path / "out" / "claims.md").read_text()
    assert "## scaled-cifar10" in markdown and "Scale: small_cnn width 16" in markdown
    assert "scaled-cifar10 [small_cnn width 16" in done.stdout


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
    done = _run(tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and culprit in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_the_committed_claims_table_is_current():
    """results/claims.csv is what `trickbench claims` makes from the committed runs (rerun it after a preset)."""
    committed = pd.read_csv(REPO / "results" / "claims.csv")
    fresh = claims_table(None, REPO)[0]
    pd.testing.assert_frame_equal(committed, pd.read_csv(io.StringIO(fresh.to_csv(index=False))))


def test_the_readme_counts_are_the_committed_tables():
    """The README's "What holds up" opens with the verdict counts of results/claims.csv."""
    import re

    committed = pd.read_csv(REPO / "results" / "claims.csv")["verdict"].value_counts()
    text = (REPO / "docs" / "findings.md").read_text()
    found = re.search(r"\*\*Today \((\d+) claims\): (\d+) holds, (\d+) contradicted, (\d+) inconclusive, "
                      r"(\d+) not run\.\*\*", text)
    assert found, "README: the claims summary line is missing"
    assert [int(g) for g in found.groups()] == [int(committed.sum()), *(int(committed.get(v, 0)) for v in
                                                                          ["holds", "contradicted", "inconclusive", "not run"])]


def test_the_readme_table_is_the_committed_table(tmp_path):
    """The README's claims table is what `trickbench claims --readme README.md` writes from results/claims.csv,
    and the command rewrites exactly that block."""
    from trickbench.report.claims import README_TABLE, readme_table

    committed = pd.read_csv(REPO / "results" / "claims.csv")
    text = (REPO / "docs" / "findings.md").read_text()
    begin, end = README_TABLE
    assert text.split(begin)[1].split(end)[0].strip() == readme_table(committed)
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{begin}\nstale\n{end}\n\nprose after\n")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    done = _run(tmp_path, "--readme", str(readme))
    assert done.returncode == 0, done.stderr
    fresh = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert readme.read_text() == f"# intro\n\n{begin}\n{readme_table(fresh)}\n{end}\n\nprose after\n"
    readme.write_text("no markers\n")
    refused = _run(tmp_path, "--readme", str(readme))
    assert refused.returncode == 2 and "claims:table:begin" in refused.stderr and readme.read_text() == "no markers\n"
    shutil.rmtree(tmp_path / "out")
    assert _run(tmp_path, "--readme", str(tmp_path / "absent.md")).returncode == 2
    assert not (tmp_path / "out").exists()  # refused before the tables are written


def test_the_scale_line_names_each_machine_once_with_its_commits(tmp_path):
    """A preset extended at a later commit (more seeds): one machine, both commits with their run counts."""
    from trickbench.report.claims import PresetData

    _synthetic_preset(tmp_path, "synth", SEEDS)
    runs = pd.read_csv(tmp_path / "results" / "synth" / "runs.csv")
    machine = {"cpu": "Test CPU", "gpu": "none", "torch": "2.14.1", "cuda": "none", "cudnn": "none", "threads": 1,
               "python": "3.11.7"}
    commits = ["a" * 40 if i < 3 else "b" * 40 + "-dirty" for i in range(len(runs))]
    runs.assign(**machine, git_commit=commits).to_csv(tmp_path / "results" / "synth" / "runs.csv", index=False)
    scale = PresetData(load_params(tmp_path / "configs" / "synth.yaml"), tmp_path).scale()
    assert scale.count("made on Test CPU") == 1
    assert scale.endswith(f"Python 3.11.7, git {'a' * 12} (3 runs), {'b' * 12}-dirty ({len(runs) - 3} runs)")


def test_xu_claims_carry_the_papers_own_difference():
    from trickbench.report.claims import paper_effect

    by_id = {c.claim_id: c for c in REGISTERED}
    # Table 3: PReLU 11.79 % against ReLU 12.45 % test error; Table 4: a=5.5 40.42 % against ReLU 42.90 %
    assert paper_effect(by_id["xu-c10-prelu-beats-relu"]) == pytest.approx(0.1179 - 0.1245)
    assert paper_effect(by_id["xu-c100-leaky-relu-a5.5-beats-relu"]) == pytest.approx(0.4042 - 0.4290)
    assert paper_effect(by_id["xu-ndsb-prelu-lowest-train"]) == pytest.approx(0.7187 - 0.8092)
    assert paper_effect(by_id["xu-c10-rrelu-regularizes"]) == pytest.approx((0.1119 - 0.0055) - (0.1245 - 0.00318))
    assert math.isnan(paper_effect(by_id["init-zeros-no-learning"]))


def test_the_report_of_a_preset_gives_its_claims_and_declares_them(monkeypatch):
    """A preset's report (params whose results folder is configs/<preset>.yaml's) writes and declares the
    verdicts on exactly the claims naming that preset; other params get none."""
    from conftest import REPO, tiny_params
    from trickbench.params import load_params
    from trickbench.paths import Layout
    from trickbench.report.claims import CLAIMS, preset_claims
    from trickbench.report.outputs import report_outputs

    monkeypatch.chdir(REPO)
    params = load_params(REPO / "configs" / "seed-initializers.yaml")
    expected = sorted(e.extra["claim"].claim_id for e in CLAIMS if e.extra["claim"].preset == "seed-initializers")
    assert expected and sorted(c.claim_id for c in preset_claims(params)) == expected
    declared = {str(p) for p in report_outputs(params, Layout.from_params(params))}
    assert {f"results/seed-initializers/claims.{ext}" for ext in ("md", "csv", "html")} <= declared
    tiny = tiny_params()
    assert preset_claims(tiny) == []
    assert not any("claims" in str(p) for p in report_outputs(tiny, Layout.from_params(tiny)))
