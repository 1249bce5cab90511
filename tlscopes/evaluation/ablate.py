"""Ablation in batches: masks of ablated positions and the forward passes that ablate them.

Only the token embeddings (``hook_embed``) are replaced, by zeros or by a filler token's
embedding; positional embeddings, attention and every other activation are left to the model,
and each pass stops at the unembedding. Every ablation set of a passage runs in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tlscopes.core.engine import scope_gradients
from tlscopes.evaluation.faithfulness import kl_divergences
from tlscopes.evaluation.passages import Passage
from tlscopes.protocols import TransformerLensModel


def keep_masks(n_positions: int, ablation_sets: Sequence[Sequence[int]]) -> Tensor:
    """[n_sets, pos] booleans: False where a position's embedding is zeroed."""
    keep = torch.ones((len(ablation_sets), n_positions), dtype=torch.bool)
    for row, positions in enumerate(ablation_sets):
        keep[row, list(positions)] = False
    return keep


def zero_embeddings(embeddings: Tensor, keep: Tensor, filler: Tensor | None = None) -> Tensor:
    """The embeddings with the positions where `keep` is False replaced by exact zeros, or by
    the `filler` embedding [d_model] when one is given (:mod:`tlscopes.evaluation.faithfulness`)."""
    if filler is None:
        return torch.where(keep[:, :, None].to(embeddings.device), embeddings, 0.0)
    filler = filler.to(device=embeddings.device, dtype=embeddings.dtype)
    return torch.where(keep[:, :, None].to(embeddings.device), embeddings, filler)


def ablated_log_softmax(
    model: TransformerLensModel,
    tokens: Tensor,
    position: int,
    keep: Tensor,
    filler: Tensor | None = None,
) -> Tensor:
    """The next-token log-probabilities at `position` for each ablation mask, all masks in one
    batch [n_sets, d_vocab] (float64, on the CPU).

    Only the token embeddings (``hook_embed``) are zeroed (or replaced by `filler`); positional
    embeddings, attention and every other activation are left to the model. The pass stops at
    the unembedding.
    """
    n_sets = keep.shape[0]
    passed = scope_gradients(
        model,
        tokens.expand(n_sets, -1),
        [],
        positions=torch.full((n_sets,), position, dtype=torch.long),
        transform=lambda embeddings: zero_embeddings(embeddings, keep, filler),
    )
    return torch.log_softmax(passed.logits.double(), dim=-1).cpu()


def ablated_log_probs(
    model: TransformerLensModel, tokens: Tensor, position: int, target_id: int, keep: Tensor
) -> Tensor:
    """log p(target) at `position` for each ablation mask, all masks in one batch [n_sets]
    (:func:`ablated_log_softmax`)."""
    return ablated_log_softmax(model, tokens, position, keep)[:, target_id]


def ablation_outcomes(
    model: TransformerLensModel,
    passage: Passage,
    sets: Sequence[Sequence[int]],
    target_id: int | None,
    filler: Tensor | None = None,
    chunk: int = 64,
) -> tuple[int, Tensor, Tensor]:
    """The measured token, its log-probability under each ablation set [n_sets], and each set's
    KL(p(x) || p(ablated)) [n_sets]; `sets[0]` must be the empty set (the unablated input).

    `target_id` None measures the top-1 prediction on the unablated input. Sets run `chunk` at a
    time (all of AOPC's in one batch; leave-one-out adds one per context token).
    """
    if tuple(sets[0]) != ():
        raise ValueError("the first ablation set must be the empty set (the unablated input)")
    keep = keep_masks(passage.tokens.shape[1], sets)
    log_probs, kls, reference, measured = [], [], None, target_id
    for start in range(0, len(sets), chunk):
        block = keep[start : start + chunk]
        table = ablated_log_softmax(model, passage.tokens, passage.position, block, filler)
        if reference is None:
            reference = table[0]
            measured = int(reference.argmax()) if target_id is None else target_id
        log_probs.append(table[:, measured])
        kls.append(kl_divergences(reference, table))
    assert measured is not None
    return measured, torch.cat(log_probs), torch.cat(kls)


__all__ = [
    "ablated_log_probs",
    "ablated_log_softmax",
    "ablation_outcomes",
    "keep_masks",
    "zero_embeddings",
]
