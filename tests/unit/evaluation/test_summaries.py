"""Summaries: means, standard errors and paired differences by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tlscopes.evaluation.summaries import format_table, paired_differences, summarize
from tlscopes.methods import registry as methods

PROMPT = "the capital of france is paris and the capital of italy is rome"
REPO = Path(__file__).resolve().parents[3]
ALL = methods.method_names()
OPTIONS = {"integrated_gradients": {"n_steps": 3}}


def test_summarize_mean_and_standard_error():
    frame = pd.DataFrame(
        {
            "task": ["lambada"] * 3,
            "method": ["fisher"] * 3,
            "aopc": [-1.0, -2.0, -3.0],
            "delta_0.05": [1.0, 2.0, 3.0],
            "delta_0.1": [0.0, 0.0, 0.0],
            "delta_0.2": [0.0, 0.0, 0.0],
            "n_steps": ["", "", ""],
        }
    )
    summary = summarize(frame)
    assert summary.loc[0, "n"] == 3
    assert summary.loc[0, "aopc_mean"] == pytest.approx(-2.0)
    assert summary.loc[0, "aopc_sem"] == pytest.approx(1.0 / 3**0.5)
    assert summary.loc[0, "delta_0.05"] == pytest.approx(2.0)
    table = format_table(summary)
    assert "Fisher Scope" in table and "-2.00 ± 0.58" in table and "LMB (n=3)" in table


def test_paired_differences_by_hand():
    # Passage 2 has no semantic row: it is left out of the pair, not treated as zero.
    frame = pd.DataFrame(
        {
            "task": ["lambada"] * 7,
            "passage": [0, 1, 2, 0, 1, 0, 1],
            "method": ["fisher"] * 3 + ["semantic"] * 2 + ["random"] * 2,
            "aopc": [-1.5, -1.0, -9.0, -1.0, -2.0, -0.2, -0.4],
        }
    )
    paired = paired_differences(frame).set_index("method")
    assert list(paired.index) == ["random", "fisher"]
    assert paired.loc["fisher", "n"] == 2
    assert paired.loc["fisher", "diff_mean"] == pytest.approx(0.25)  # (-0.5 + 1.0) / 2
    assert paired.loc["fisher", "diff_sem"] == pytest.approx(0.75)  # std 0.75 * 2**0.5, n 2
    assert paired.loc["fisher", "wins"] == pytest.approx(0.5)
    assert paired.loc["random", "diff_mean"] == pytest.approx(1.2)
    assert paired.loc["random", "wins"] == 0.0
    with pytest.raises(ValueError, match="no 'saliency' rows"):
        paired_differences(frame, reference="saliency")


def test_paired_tests_by_hand():
    from tlscopes.evaluation import summaries

    # fisher - semantic = [1, -2, 3, 4, -5, 6] (the Wilcoxon case of test_statistics);
    # random has passages 0 and 1 only.
    rows = []
    for passage, (f, s) in enumerate(zip([1, -2, 3, 4, -5, 6], [0] * 6, strict=True)):
        rows += [
            {"task": "lambada", "passage": passage, "method": "fisher", "aopc": float(f)},
            {"task": "lambada", "passage": passage, "method": "semantic", "aopc": float(s)},
        ]
    rows += [
        {"task": "lambada", "passage": p, "method": "random", "aopc": 10.0 + p} for p in (0, 1)
    ]
    tests = summaries.paired_tests(pd.DataFrame(rows), n_resamples=2000)
    assert [tuple(r) for r in tests[["method", "other"]].to_numpy()] == [
        ("random", "semantic"),
        ("random", "fisher"),
        ("semantic", "fisher"),
    ]
    pair = tests[(tests.method == "semantic") & (tests.other == "fisher")].iloc[0]
    assert pair.n == 6 and pair.diff_mean == pytest.approx(-7 / 6)
    assert pair.wilcoxon_statistic == 7.0
    # semantic - fisher = [-1, 2, -3, -4, 5, -6]: W+ = 2 + 5 = 7
    assert pair.wilcoxon_z == pytest.approx((7 - 10.5) / 22.75**0.5)
    assert pair.ci_low < pair.diff_mean < pair.ci_high
    random_pair = tests[(tests.method == "random") & (tests.other == "semantic")].iloc[0]
    assert random_pair.n == 2 and random_pair.diff_mean == pytest.approx(10.5)
