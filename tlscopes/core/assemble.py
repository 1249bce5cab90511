"""Engine outputs into an :class:`~tlscopes.results.attribution.Attribution`: scores with their tokens and
the prediction they explain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from tlscopes._types import Logits
from tlscopes.core.inputs import PreparedInputs
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.attribution import Attribution
from tlscopes.results.provenance import provenance
from tlscopes.tokens import token_string, token_strings


def check_finite_scores(scores: Tensor) -> None:
    """Refuses scores that overflowed to inf or NaN even though every gradient was finite
    (e.g. a DirectionScope vector with entries near 1e30, whose squared norms overflow)."""
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[:5].tolist()
        raise FloatingPointError(
            f"non-finite scores at (batch, position) {bad} although the gradients were finite: "
            "the squared gradient norms overflowed the score dtype. Scale the direction down "
            "(scores scale linearly with it) or use a float64 model"
        )


def check_top_k(top_k: int) -> None:
    """top_k must be a positive int: how many predicted tokens a result keeps."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")


def build_attribution(
    model: TransformerLensModel,
    prepared: PreparedInputs,
    scores: Tensor,
    *,
    method: str,
    logits: Logits,
    target_ids: Tensor | None,
    details: dict[str, Any],
    top_k: int = 10,
    scope: Any = None,
    parameters: Mapping[str, Any] | None = None,
) -> Attribution:
    """Packs scores with tokens and the prediction being explained into an Attribution.

    Args:
        scope, parameters: what produced the scores, recorded in ``info`` with the model and
            versions (:func:`tlscopes.results.provenance.provenance`).
    """
    check_top_k(top_k)
    check_finite_scores(scores)
    scores = scores.cpu().clone()
    for index, length in enumerate(prepared.lengths.tolist()):
        scores[index, length:] = 0.0
    probs = torch.softmax(logits.double(), dim=-1).cpu()
    k = min(top_k, probs.shape[-1])
    top_probs, top_ids = probs.topk(k, dim=-1)
    tokens = [
        token_strings(model, prepared.tokens[index, :length])
        for index, length in enumerate(prepared.lengths.tolist())
    ]
    top_tokens = [token_strings(model, row) for row in top_ids]
    target_probs = target_tokens = None
    if target_ids is not None:
        target_probs = probs.gather(1, target_ids.cpu()[:, None])[:, 0]
        target_tokens = [token_string(model, int(i)) for i in target_ids]
    return Attribution(
        scores=scores,
        tokens=tokens,
        token_ids=prepared.tokens.cpu(),
        positions=prepared.positions.cpu(),
        method=method,
        top_token_ids=top_ids,
        top_tokens=top_tokens,
        top_probs=top_probs.float(),
        target_ids=None if target_ids is None else target_ids.cpu(),
        target_probs=None if target_probs is None else target_probs.float(),
        target_tokens=target_tokens,
        details=details,
        model_name=str(getattr(model.cfg, "model_name", "")),
        info=provenance(model, method, scope=scope, parameters=parameters),
    )
