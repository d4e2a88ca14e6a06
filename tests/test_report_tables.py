"""The paper-layout table on synthetic run records: mean, std, the paper's column, paired significance."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trickbench.report.paper import PAPER_TABLES, reference
from trickbench.report.tables import holm, paired_difference, paper_display, paper_table, runs_frame, to_markdown


def record(activation: str, seed: int, train_error: float, test_error: float, status: str = "completed",
           **extra) -> dict:
    return {"study": "acts", "point_id": f"activation-{activation}__seed-{seed}", "status": status,
            "axes": {"activation": activation, "seed": seed}, "train_error": train_error, "test_error": test_error,
            "val_error": test_error, "train_loss": 0.1, "val_loss": 0.5, "test_loss": 0.5, **extra}


# relu: test error 0.20, 0.22, 0.21; prelu: consistently 0.02 lower (paired noise tiny) -> significant;
# rrelu: differences +0.01, -0.01, +0.005 -> not significant; leaky_relu_a100 only one seed -> n/a.
RELU = [0.20, 0.22, 0.21]
PRELU = [0.18, 0.2001, 0.1902]
RRELU = [0.21, 0.21, 0.215]


@pytest.fixture
def frame() -> pd.DataFrame:
    records = [record("relu", s, 0.01 * (s + 1), RELU[s]) for s in range(3)]
    records += [record("prelu", s, 0.005, PRELU[s]) for s in range(3)]
    records += [record("rrelu", s, 0.02, RRELU[s]) for s in range(3)]
    records += [record("leaky_relu_a100", 0, 0.01, 0.3)]
    records += [record("leaky_relu_a100", 1, math.nan, math.nan, status="diverged")]
    return runs_frame(records)


def test_mean_std_paper_value_and_difference(frame):
    table = paper_table(frame, ["train_error", "test_error"], reference("cifar10")).set_index("activation")
    assert list(table.index) == ["relu", "leaky_relu_a100", "prelu", "rrelu"]  # the paper's row order
    assert table.loc["relu", "test_error_mean"] == pytest.approx(np.mean(RELU))
    assert table.loc["relu", "test_error_std"] == pytest.approx(np.std(RELU, ddof=1))
    assert table.loc["relu", "test_error_paper"] == 0.1245
    assert table.loc["relu", "train_error_paper"] == 0.00318
    assert table.loc["relu", "test_error_diff_paper"] == pytest.approx(np.mean(RELU) - 0.1245)
    # a diverged run counts in `runs`, not in the statistics
    assert table.loc["leaky_relu_a100", "runs"] == 2 and table.loc["leaky_relu_a100", "completed"] == 1
    assert math.isnan(table.loc["leaky_relu_a100", "test_error_std"])


def test_paired_t_test_over_seeds_and_significance_flags(frame):
    table = paper_table(frame, ["train_error", "test_error"], reference("cifar10"), correction="none")
    table = table.set_index("activation")
    expected = stats.ttest_rel(PRELU, RELU).pvalue
    assert table.loc["prelu", "test_error_p"] == pytest.approx(expected)
    assert table.loc["prelu", "test_error_pairs"] == 3
    assert table.loc["prelu", "test_error_diff_baseline"] == pytest.approx(np.mean(np.subtract(PRELU, RELU)))
    assert table.loc["prelu", "test_error_significant"] == True  # noqa: E712
    assert table.loc["rrelu", "test_error_significant"] == False  # noqa: E712
    assert table.loc["rrelu", "test_error_p"] == pytest.approx(stats.ttest_rel(RRELU, RELU).pvalue)
    # one pair only -> no test
    assert table.loc["leaky_relu_a100", "test_error_pairs"] == 1
    assert math.isnan(table.loc["leaky_relu_a100", "test_error_p"])
    assert table.loc["leaky_relu_a100", "test_error_significant"] is None
    assert math.isnan(table.loc["relu", "test_error_p"])  # the baseline is not tested against itself


def test_pairs_are_matched_by_seed_not_by_order():
    # prelu's seeds listed in reverse: pairing by position would mix seeds 0 and 2
    records = [record("relu", s, 0.0, v) for s, v in enumerate([0.10, 0.20, 0.30])]
    records += [record("prelu", s, 0.0, v) for s, v in reversed(list(enumerate([0.09, 0.19, 0.29])))]
    pairs, diff, p = paired_difference(runs_frame(records), "test_error", "prelu", "relu", ["seed"])
    assert pairs == 3 and diff == pytest.approx(-0.01)
    assert math.isnan(p)  # identical differences: no variance, no t statistic


def test_holm_adjustment():
    assert holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)


def test_display_has_paper_columns_p_values_and_marks(frame):
    table = paper_table(frame, ["train_error", "test_error"], reference("cifar10"))
    shown = paper_display(table, ["train_error", "test_error"], reference("cifar10"))
    text = to_markdown(shown)
    assert "test error (paper)" in shown.columns and "test error: ours − paper" in shown.columns
    assert "| relu | 3 |" in text and "baseline" in text
    assert "1 of 2" in text  # leaky_relu_a100: one of its two runs completed
    row = shown.set_index("activation").loc["prelu"]
    assert row["test error: sig."] == "yes" and "(n=3)" in row["test error: p"] and "[" in row["test error: p"]
    assert shown.set_index("activation").loc["leaky_relu_a100", "test error: p"].startswith("n/a")
    assert shown.set_index("activation").loc["relu", "test error (paper)"] == "0.1245"
    # without a correction the raw p is the tested one: nothing in brackets, the same p
    raw = paper_display(paper_table(frame, ["train_error", "test_error"], None, correction="none"),
                        ["train_error", "test_error"], None, correction="none").set_index("activation")
    assert raw.loc["prelu", "test error: p"] == row["test error: p"].split(" [")[0] + " (n=3)"


def test_without_reference_and_with_loss_metrics(frame):
    table = paper_table(frame, ["train_loss", "test_loss"], None)
    shown = paper_display(table, ["train_loss", "test_loss"], None)
    assert not any("paper" in column for column in shown.columns)
    assert reference("ndsb").value("rrelu", 1) == 0.7292 and reference(None) is None
    with pytest.raises(LookupError, match="unknown paper_table 'imagenet'; valid names: cifar10, cifar100, ndsb"):
        reference("imagenet")


def test_the_schema_takes_reference_tables_corrections_and_baselines_from_their_registries():
    from trickbench.params import schema_with_registries

    paper = schema_with_registries()["properties"]["report"]["properties"]["paper_table"]["properties"]
    assert paper["reference"]["enum"] == [*PAPER_TABLES.names(), None]
    assert paper["correction"]["enum"] == ["holm", "none"]
    assert "prelu" in paper["baseline"]["enum"] and None not in paper["baseline"]["enum"]


def test_activations_outside_the_paper_have_no_paper_value():
    records = [record("relu", s, 0.0, 0.1 + 0.01 * s) for s in range(2)] + [record("tanh", s, 0.0, 0.2) for s in range(2)]
    table = paper_table(runs_frame(records), ["train_error", "test_error"], reference("cifar100")).set_index("activation")
    assert math.isnan(table.loc["tanh", "test_error_paper"])
    assert table.loc["relu", "test_error_paper"] == 0.429
