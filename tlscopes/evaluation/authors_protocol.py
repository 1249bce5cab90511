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
   so it is a scope whose direction is read off the forward pass (:class:`LogProbScope`).
5. Integrated Gradients averages over alpha in {0.2, 0.4, 0.6, 0.8, 1.0}. The script
   differentiates with respect to the embedding *before* it is scaled by alpha, so each path
   point's gradient carries a factor alpha: IG_t = x_t * (1/5) sum_alpha alpha grad_{x_t}
   log p(alpha X) (gradient taken at the scaled input). Every token, the first included, is
   scaled.

Semantic Scope (the ground-truth token's logit), Fisher and Temperature Scope are the same in
both protocols. Ties in a ranking go to the earlier position in both (the script's
``argsort()[::-1]`` has no defined order among equal scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from tlscopes.core.assemble import build_attribution
from tlscopes.core.engine import scope_gradients
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.core.scopes import (
    Scope,
    ScopeDirections,
    ScopeInputs,
    _softcap_slopes,
    resolve_targets,
)
from tlscopes.methods.baselines import (
    Target,
    input_x_gradient_scores,
    path_gradient_sum,
    random_scores,
    resolve_target_ids,
    scaled_forward,
)
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.attribution import Attribution

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


@dataclass(frozen=True)
class LogProbScope(Scope):
    """The gradient of log p(target) at the explained position: v = W_U (e_target - p).

    Exact for the first derivative, since d log p_target / dy = W_U (e_target - p) (times the
    soft-cap's slope per logit where the model caps). The score ||v^T J_t|| is the norm of the
    cross-entropy gradient (their signs differ; norms do not).

    Args:
        target: one token id per prompt (or one for all).
    """

    target: int | tuple[int, ...]
    name: ClassVar[str] = "log_prob"
    invariant_to_folded_norm: ClassVar[bool] = True  # a gradient of logits, as Semantic Scope

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        ids = resolve_targets(inputs.model, self.target, inputs.final_state.shape[0])
        W_U = inputs.W_U.to(inputs.final_state.dtype)
        ids = ids.to(W_U.device)
        probs = torch.softmax(inputs.logits.to(W_U.dtype), dim=-1)
        slopes = _softcap_slopes(inputs, W_U)
        coefficients = -probs
        coefficients[torch.arange(len(ids)), ids] += 1.0
        if slopes is not None:
            coefficients = coefficients * slopes.to(W_U.dtype)
        vectors = (coefficients @ W_U.T)[:, None, :]
        weights = torch.ones(vectors.shape[:2], dtype=vectors.dtype, device=vectors.device)
        return ScopeDirections(vectors, weights, target_ids=ids.cpu())


def log_prob_input_x_gradient(
    model: TransformerLensModel, inputs: Inputs, *, target: Target = None, position: int = -1
) -> Attribution:
    """The script's Input x Gradient: ||x_t * d log p(target) / dx_t||_2."""
    prepared = prepare_inputs(model, inputs, position)
    target_ids = resolve_target_ids(model, target, prepared)  # a forward pass only if None
    scope = LogProbScope(tuple(target_ids.tolist()))
    result = scope_gradients(model, prepared.tokens, [scope], positions=prepared.positions)
    scores = input_x_gradient_scores(result.embeddings, result.gradients[0][:, 0])
    return build_attribution(
        model,
        prepared,
        scores,
        method="input_x_gradient",
        logits=result.logits,
        target_ids=target_ids,
        details={"differentiates": "log_prob"},
        parameters={"position": position, "protocol": "authors"},
    )


def log_prob_integrated_gradients(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Target = None,
    position: int = -1,
    alphas: tuple[float, ...] = AUTHORS_ALPHAS,
) -> Attribution:
    """The script's Integrated Gradients: ||x_t * (1/n) sum_a a grad_{x_t} log p(a X)||_2.

    All path points run as one batch. The factor a is the chain rule of the script's gradient
    with respect to the unscaled embedding (see the module docstring, point 5).
    """
    prepared = prepare_inputs(model, inputs, position)
    full = scaled_forward(model, prepared)
    target_ids = resolve_target_ids(model, target, prepared, full.logits)
    n_points = len(alphas)
    path = torch.tensor(alphas, dtype=torch.float64)
    mean = path_gradient_sum(
        model,
        prepared,
        lambda ids: LogProbScope(tuple(ids.tolist())),
        target_ids,
        path,
        path / n_points,
        n_points * prepared.tokens.shape[0],
    )
    ig = full.embeddings.cpu().to(mean.dtype) * mean
    details: dict[str, Any] = {"alphas": list(alphas), "differentiates": "log_prob"}
    return build_attribution(
        model,
        prepared,
        ig.norm(dim=-1),
        method="integrated_gradients",
        logits=full.logits,
        target_ids=target_ids,
        details=details,
        parameters={"alphas": list(alphas), "position": position, "protocol": "authors"},
    )


__all__ = [
    "AUTHORS_ALPHAS",
    "PROTOCOLS",
    "LogProbScope",
    "authors_ablation_count",
    "authors_candidates",
    "log_prob_input_x_gradient",
    "log_prob_integrated_gradients",
]
