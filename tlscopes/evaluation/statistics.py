"""Rank correlations, the paired Wilcoxon signed-rank test and a bootstrap interval, in numpy.

Written here so that the evaluation needs no scipy. Conventions follow the usual textbook
definitions (and scipy's defaults, so results can be cross-checked where scipy is installed):

- :func:`average_ranks`: ranks 1..n, tied values share the mean of their ranks.
- :func:`spearman`: Pearson's correlation of the average ranks.
- :func:`kendall_tau_b`: (concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y)),
  n0 = n(n-1)/2 pairs; pairs tied in one variable count as neither.
- :func:`wilcoxon_signed_rank`: zero differences dropped ("wilcox" method); T = the smaller of
  the positive and negative rank sums; z = (W+ - n(n+1)/4) / sd, signed like the differences
  (W+ the positive rank sum; |z| is the same for T); the two-sided p-value from the normal
  approximation with the tie correction of the variance, no continuity correction.
- :func:`bootstrap_interval`: the percentile interval of the mean over resamples with
  replacement, from a seeded generator.

A statistic that is undefined (a constant variable, no nonzero difference) is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Values = Sequence[float] | np.ndarray


def average_ranks(values: Values) -> np.ndarray:
    """Ranks 1..n of `values`; equal values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / denominator if denominator > 0 else float("nan")


def spearman(x: Values, y: Values) -> float:
    """Spearman's rank correlation (Pearson's correlation of average ranks); NaN if constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return float("nan")
    return _pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Values, y: Values) -> float:
    """Kendall's tau-b (ties in either variable corrected for); NaN if a variable is constant."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"kendall_tau_b needs equal lengths, got {len(a)} and {len(b)}")
    upper = np.triu_indices(len(a), k=1)
    sign_a = np.sign(a[:, None] - a[None, :])[upper]
    sign_b = np.sign(b[:, None] - b[None, :])[upper]
    pairs = len(sign_a)
    untied_a, untied_b = int((sign_a != 0).sum()), int((sign_b != 0).sum())
    if pairs == 0 or untied_a == 0 or untied_b == 0:
        return float("nan")
    return float((sign_a * sign_b).sum()) / math.sqrt(untied_a * untied_b)


@dataclass(frozen=True)
class Wilcoxon:
    """A paired Wilcoxon signed-rank test.

    Attributes:
        n: nonzero differences used.
        statistic: T, the smaller of the positive and negative rank sums.
        z: (W+ - n(n+1)/4) / sd, sd with the tie correction: positive when the differences
            lean positive.
        p_value: two-sided, from the normal approximation.
    """

    n: int
    statistic: float
    z: float
    p_value: float


def wilcoxon_signed_rank(differences: Values) -> Wilcoxon:
    """The paired signed-rank test of `differences` (a - b per pair) against a zero median."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return Wilcoxon(0, float("nan"), float("nan"), float("nan"))
    ranks = average_ranks(np.abs(d))
    positive, negative = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    statistic = min(positive, negative)
    _, counts = np.unique(np.abs(d), return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24 - float((counts**3 - counts).sum()) / 48
    if variance <= 0:
        return Wilcoxon(n, statistic, float("nan"), float("nan"))
    z = (positive - n * (n + 1) / 4) / math.sqrt(variance)
    return Wilcoxon(n, statistic, z, math.erfc(abs(z) / math.sqrt(2)))


def bootstrap_interval(
    values: Values, *, level: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values` (seeded, reproducible)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    generator = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 1000):  # bounded memory for long inputs
        stop = min(n_resamples, start + 1000)
        picks = generator.integers(0, len(x), size=(stop - start, len(x)))
        means[start:stop] = x[picks].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


__all__ = [
    "Wilcoxon",
    "average_ranks",
    "bootstrap_interval",
    "kendall_tau_b",
    "spearman",
    "wilcoxon_signed_rank",
]
