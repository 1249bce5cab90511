"""Attention patterns of a prompt, read during one engine forward pass, and attention sinks
(paper appendix A.6).

A key position is a *sink* for a head when the head's queries park much of their attention on
it. The patterns come from ``blocks.{l}.attn.hook_pattern`` [batch, head_index, query_pos,
key_pos], which HookedTransformer and TransformerBridge both expose; a hook there keeps
TransformerLens' explicit attention (the fused kernel computes no pattern).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tlscopes.core.engine import scope_gradients
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.protocols import TransformerLensModel

PATTERN_HOOK = "blocks.{layer}.attn.hook_pattern"

Patterns = Float[Tensor, "layer head_index query_pos key_pos"]


def attention_patterns(model: TransformerLensModel, inputs: Inputs, scale: float = 1.0) -> Patterns:
    """Every layer's attention pattern for one prompt, its token embeddings scaled by `scale`.

    Args:
        inputs: one prompt: text (the model's BOS convention applies) or token ids [pos] /
            [1, pos].
        scale: multiplies the token embeddings (``hook_embed``); alpha on the IG path.

    Returns:
        [layer, head_index, query_pos, key_pos]: softmax weights; each query's row sums to 1.

    Example:
        >>> patterns = attention_patterns(model, "The capital of France is")  # doctest: +SKIP
        >>> patterns[:, :, 1:, 0].mean()  # mean attention on the first token  # doctest: +SKIP
    """
    prepared = prepare_inputs(model, inputs)
    if prepared.tokens.shape[0] != 1:
        raise ValueError("attention_patterns reads one prompt; pass a single string or [pos] ids")
    n_layers = int(model.cfg.n_layers)
    captured: dict[int, Tensor] = {}

    def keeper(layer: int) -> Any:
        def keep(tensor: Tensor, *, hook: Any) -> Tensor:
            captured[layer] = tensor[0].detach().cpu()
            return tensor

        return keep

    hooks = [(PATTERN_HOOK.format(layer=layer), keeper(layer)) for layer in range(n_layers)]
    scope_gradients(
        model,
        prepared.tokens,
        [],
        positions=prepared.positions,
        transform=lambda embeddings: embeddings * scale,
        observe=hooks,
    )
    if len(captured) != n_layers:
        raise RuntimeError(
            f"captured {len(captured)} of {n_layers} layers' attention patterns; the model has no "
            "blocks.{l}.attn.hook_pattern hooks"
        )
    return torch.stack([captured[layer] for layer in range(n_layers)])


# Attention sinks ---------------------------------------------------------------------------------

DEFAULT_SINK_EPSILON = 0.3
DEFAULT_SINK_HEAD_SHARE = 0.25


def key_importance(patterns: Patterns) -> Float[Tensor, "layer head_index key_pos"]:
    """Each key position's importance for each head: its mean attention over all queries,
    (1/T) sum_q A[q, k] (causal queries before k contribute 0)."""
    return patterns.double().mean(dim=-2)


def streamed_key_importance(
    model: TransformerLensModel, inputs: Inputs, scale: float = 1.0
) -> Float[Tensor, "layer head_index key_pos"]:
    """:func:`key_importance` of :func:`attention_patterns`, without any T x T pattern: for long
    prompts.

    The attention runs a query chunk at a time (:func:`tlscopes.models.chunked_attention.
    chunked_attention`); each chunk's pattern is summed over its queries and dropped, so memory
    stays linear in the length. Equal to ``key_importance(attention_patterns(model, inputs,
    scale))`` to floating-point rounding of the sum. Pass the result as ``importance`` to
    :func:`sink_heads`, :func:`sink_head_share` and :func:`sink_positions`.

    Raises:
        ValueError: for more than one prompt, or a model whose attention the chunked path does
            not reproduce (ALiBi, for one: Bloom): use :func:`attention_patterns`.
    """
    from tlscopes.models.chunked_attention import chunked_attention

    prepared = prepare_inputs(model, inputs)
    if prepared.tokens.shape[0] != 1:
        raise ValueError(
            "streamed_key_importance reads one prompt; pass a single string or [pos] ids"
        )
    n_layers, length = int(model.cfg.n_layers), int(prepared.tokens.shape[1])
    sums: dict[int, Tensor] = {}

    def read(layer: int, first_query: int, pattern: Tensor) -> None:
        column_sums = pattern[0].double().sum(dim=-2).cpu()  # [head_index, key_pos]
        sums[layer] = column_sums if layer not in sums else sums[layer] + column_sums

    with chunked_attention(model, read_patterns=read) as switched:
        if switched != n_layers:
            raise ValueError(
                f"{type(model).__name__}'s attention ({type(model.blocks[0].attn).__name__}) "
                f"is not chunked in {n_layers - switched} of {n_layers} layers; use "
                "key_importance(attention_patterns(...)), which keeps the whole pattern"
            )
        scope_gradients(
            model,
            prepared.tokens,
            [],
            positions=prepared.positions,
            transform=lambda embeddings: embeddings * scale,
        )
    return torch.stack([sums[layer] for layer in range(n_layers)]) / length


def sink_heads(
    patterns: Patterns | None = None,
    epsilon: float = DEFAULT_SINK_EPSILON,
    *,
    importance: Tensor | None = None,
) -> Tensor:
    """[layer, head_index, key_pos] booleans: the head sinks on the key, its importance > epsilon
    (0.3 by default, as in the attention-sink literature).

    Give the patterns, or (for long prompts) their importance [layer, head_index, key_pos]
    from :func:`streamed_key_importance`.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
    if (patterns is None) == (importance is None):
        raise ValueError("pass either patterns or importance (from streamed_key_importance)")
    return (key_importance(patterns) if importance is None else importance) > epsilon


def sink_head_share(
    patterns: Patterns | None = None,
    epsilon: float = DEFAULT_SINK_EPSILON,
    *,
    importance: Tensor | None = None,
) -> Tensor:
    """[layer, key_pos]: the share of each layer's heads that sink on each position (patterns
    or importance as in :func:`sink_heads`)."""
    return sink_heads(patterns, epsilon, importance=importance).double().mean(dim=1)


def sink_positions(
    patterns: Patterns | None = None,
    epsilon: float = DEFAULT_SINK_EPSILON,
    min_head_share: float = DEFAULT_SINK_HEAD_SHARE,
    *,
    importance: Tensor | None = None,
) -> list[int]:
    """Positions that at least `min_head_share` of all heads (every layer) sink on (patterns or
    importance as in :func:`sink_heads`)."""
    share = sink_heads(patterns, epsilon, importance=importance).double().flatten(0, 1).mean(dim=0)
    return (share >= min_head_share).nonzero().flatten().tolist()


def score_share(scores: Tensor, positions: list[int]) -> Tensor:
    """The share of scores [..., pos] that falls on `positions` (0 where the scores are all 0)."""
    total = scores.double().sum(dim=-1)
    chosen = scores.double()[..., positions].sum(dim=-1) if positions else torch.zeros_like(total)
    return torch.where(total > 0, chosen / total.clamp_min(1e-300), torch.zeros_like(total))


def without_positions(result: Any, positions: list[int]) -> Any:
    """A copy of an Attribution or LayerAttribution whose scores at `positions` are 0, so that
    views normalised to the largest score (HTML, plots) show the rest: e.g. with BOS and the
    detected sinks left out, whose scores otherwise drown every other token. The left-out
    positions are recorded in ``info["masked_positions"]``."""
    import dataclasses

    def zeroed(scores: Tensor) -> Tensor:
        scores = scores.clone()
        scores[..., positions] = 0.0
        return scores

    if hasattr(result, "inputs"):  # a LayerAttribution
        inputs = without_positions(result.inputs, positions)
        heads = None if result.head_scores is None else zeroed(result.head_scores)
        return dataclasses.replace(
            result, scores=zeroed(result.scores), inputs=inputs, head_scores=heads
        )
    info = {**result.info, "masked_positions": sorted(set(positions))}
    return dataclasses.replace(result, scores=zeroed(result.scores), info=info)


__all__ = [
    "DEFAULT_SINK_EPSILON",
    "DEFAULT_SINK_HEAD_SHARE",
    "PATTERN_HOOK",
    "Patterns",
    "attention_patterns",
    "key_importance",
    "score_share",
    "sink_head_share",
    "sink_heads",
    "sink_positions",
    "streamed_key_importance",
    "without_positions",
]
