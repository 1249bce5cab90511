"""AOPC arithmetic (paper eq. 9): how many tokens a fraction ablates, which ones, and the area.

Pure arithmetic on numbers and score tensors, no model: run directories and summaries read
fraction labels from here without importing the evaluation's engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

FRACTIONS = (0.05, 0.10, 0.20)


def ablation_count(fraction: float, n_context: int) -> int:
    """How many tokens k% of C context tokens means: round half up, at least 1, at most C."""
    if not 0 < fraction <= 1:
        raise ValueError(f"ablation fraction must be in (0, 1], got {fraction}")
    return min(n_context, max(1, math.floor(fraction * n_context + 0.5)))


def top_positions(scores: Tensor, context: Tensor, count: int) -> tuple[int, ...]:
    """The `count` context positions with the highest score (ties: earlier position), sorted."""
    order = torch.argsort(scores[context].double(), descending=True, stable=True)
    return tuple(sorted(context[order[:count]].tolist()))


def trapezoid(fractions: Sequence[float], deltas: Sequence[float]) -> float:
    """Paper eq. 9 as printed: sum_i (k_{i+1} - k_i)(Delta_i + Delta_{i+1}) / 2."""
    return sum(
        (fractions[i + 1] - fractions[i]) * (deltas[i] + deltas[i + 1]) / 2
        for i in range(len(fractions) - 1)
    )


def aopc(fractions: Sequence[float], deltas: Sequence[float]) -> float:
    """AOPC, paper eq. 9 with k in fractions: the trapezoid of Delta_k over k (not normalised).

    More negative is better (the ablated tokens mattered more). Needs at least two fractions.
    """
    if len(fractions) < 2:
        raise ValueError("AOPC integrates over at least two ablation fractions")
    return trapezoid(fractions, deltas)


def fraction_label(fraction: float) -> str:
    return f"{fraction:g}"


__all__ = ["FRACTIONS", "ablation_count", "aopc", "fraction_label", "top_positions", "trapezoid"]
