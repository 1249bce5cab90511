"""Attention patterns of a prompt, read during one engine forward pass (for attention-sink
analyses, paper appendix A.6).

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

from tlscopes.attribute import scope_gradients
from tlscopes.inputs import Inputs, prepare_inputs
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


def bos_positions(model: TransformerLensModel, tokens: Tensor) -> list[int]:
    """Positions holding the tokenizer's BOS token (empty where there is none)."""
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if bos is None:
        return []
    return (tokens.reshape(-1) == int(bos)).nonzero().flatten().tolist()


__all__ = ["PATTERN_HOOK", "Patterns", "attention_patterns", "bos_positions"]
