"""The statistics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlscopes.evaluation import statistics


def test_average_ranks_share_ties():
    assert statistics.average_ranks([10, 30, 20, 30]).tolist() == [1.0, 3.5, 2.0, 3.5]


def test_spearman_by_hand():
    # d = ranks differ by 1 at two places: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert statistics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert statistics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(statistics.spearman([1, 1, 1], [1, 2, 3]))


def test_kendall_tau_b_by_hand():
    # 5 concordant pairs, 1 discordant (2-3): (5 - 1) / 6
    assert statistics.kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # x = [1, 1, 2]: the pair (0, 1) is tied in x; y untied. C = 2, D = 0,
    # tau_b = 2 / sqrt((3 - 1) * 3)
    assert statistics.kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(statistics.kendall_tau_b([2, 2], [1, 3]))


def test_wilcoxon_by_hand_without_ties():
    # ranks of |d| = 1..6; W+ = 1 + 3 + 4 + 6 = 14, W- = 2 + 5 = 7; T = 7
    # mean 6 * 7 / 4 = 10.5, variance 6 * 7 * 13 / 24 = 22.75
    test = statistics.wilcoxon_signed_rank([1, -2, 3, 4, -5, 6, 0])  # the zero is dropped
    z = (14 - 10.5) / math.sqrt(22.75)  # signed by W+
    assert (test.n, test.statistic) == (6, 7.0)
    assert test.z == pytest.approx(z)
    assert test.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert test.p_value == pytest.approx(0.4631, abs=1e-4)


def test_wilcoxon_by_hand_with_ties():
    # |d| = 1, 1, 1, 2: ranks 2, 2, 2, 4; W+ = 8, W- = 2; variance 4*5*9/24 - (27 - 3)/48 = 7
    test = statistics.wilcoxon_signed_rank([1, 1, -1, 2])
    assert test.statistic == 2.0 and test.z == pytest.approx(3 / math.sqrt(7))
    assert statistics.wilcoxon_signed_rank([-1, -1, 1, -2]).z == pytest.approx(-3 / math.sqrt(7))
    assert math.isnan(statistics.wilcoxon_signed_rank([0, 0]).p_value)


def test_bootstrap_interval_by_hand():
    # resampled means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4
    assert statistics.bootstrap_interval([0.0, 1.0], seed=3) == (0.0, 1.0)
    assert statistics.bootstrap_interval([2.5] * 7) == (2.5, 2.5)
    values = np.random.default_rng(0).normal(1.0, 1.0, size=400)
    low, high = statistics.bootstrap_interval(values, seed=1)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / 20, rel=0.15)
    assert statistics.bootstrap_interval(values, seed=1) == (low, high)
