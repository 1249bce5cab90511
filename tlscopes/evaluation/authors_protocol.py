"""The authors' AOPC protocol: what their public benchmark script computes, where it differs
from the paper's text (``tlscopes evaluate --protocol authors``).

The script (AntonioLiu97/JacobianScopes, ``paper/benchmarks/AOPC_multi_method_benchmarks.py``)
differs from the paper's section 5, and from the default ``paper`` protocol, in five ways:

1. Delta_k is measured on the model's top-1 prediction at the explained position (on the
   unablated input), not on the passage's ground-truth next token.
2. No BOS: the passage is tokenized without special tokens, so its first token is an ordinary
   context token that can be ablated.
3. n_k = max(1, floor(k * n_tokens)), where n_tokens counts every token of the passage, the
   target included. The target itself is a candidate: no gradient reaches it (it comes after
   the explained position), so a gradient method ranks it last, but the random baseline may
   draw it, and ablating it changes nothing at the explained position.
4. Input x Gradient and Integrated Gradients differentiate the ground-truth token's
   log-probability (the script's cross-entropy loss), not its logit. The gradient of
   log p(target) with respect to y is W_U (e_target - p), p the prediction at that same input,
   so it is a scope whose direction is read off the forward pass
   (:class:`~tlscopes.core.scopes.LogProbScope`; the methods' ``objective="log_prob"``).
5. Integrated Gradients averages over alpha in {0.2, 0.4, 0.6, 0.8, 1.0}. The script
   differentiates with respect to the embedding *before* it is scaled by alpha, so each path
   point's gradient carries a factor alpha: IG_t = x_t * (1/5) sum_alpha alpha grad_{x_t}
   log p(alpha X) (gradient taken at the scaled input; the methods' ``path_points``). Every
   token, the first included, is scaled.

Semantic Scope (the ground-truth token's logit), Fisher and Temperature Scope are the same in
both protocols. Ties in a ranking go to the earlier position in both (the script's
``argsort()[::-1]`` has no defined order among equal scores).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from tlscopes.methods.baselines import random_scores

PROTOCOLS = ("paper", "authors")
AUTHORS_ALPHAS = (0.2, 0.4, 0.6, 0.8, 1.0)


def authors_ablation_count(fraction: float, n_tokens: int) -> int:
    """The script's n_k = max(1, floor(k * n_tokens)); n_tokens counts the target too."""
    if not 0 < fraction <= 1:
        raise ValueError(f"ablation fraction must be in (0, 1], got {fraction}")
    return max(1, math.floor(n_tokens * fraction))


def authors_candidates(
    scores: Tensor, context: Tensor, random: bool, seed: int
) -> tuple[Tensor, Tensor]:
    """The candidates of an ablation ranking (the context, then the target's position, one past
    the input) and scores over every position up to it [n_input + 1].

    Gradient methods score the target 0 (no gradient reaches it). The random baseline draws a
    fresh ranking of all n_input + 1 positions from `seed` (:func:`random_scores`).
    """
    n_input = scores.shape[0]
    candidates = torch.cat([context, torch.tensor([n_input])])
    if random:
        generator = torch.Generator().manual_seed(seed)
        return candidates, random_scores([n_input + 1], [n_input], generator)[0]
    return candidates, torch.cat([scores.double(), torch.zeros(1, dtype=torch.float64)])


def method_options(protocol: str) -> dict[str, dict[str, Any]]:
    """The options that make the registry's methods follow a protocol (points 4 and 5 above):
    none under ``"paper"``; under ``"authors"``, Input x Gradient and Integrated Gradients
    differentiate log p(target), and IG takes the script's five path points."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol == "paper":
        return {}
    return {
        "input_x_gradient": {"objective": "log_prob"},
        "integrated_gradients": {"objective": "log_prob", "path_points": AUTHORS_ALPHAS},
    }


__all__ = [
    "AUTHORS_ALPHAS",
    "PROTOCOLS",
    "authors_ablation_count",
    "authors_candidates",
    "method_options",
]
