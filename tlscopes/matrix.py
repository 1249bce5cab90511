"""One prompt explained at many positions: a scope's attribution matrix from one forward pass.

For a teacher-forced sequence (a translation, a time series) every target position has its own
prediction to explain. y is captured at all those positions in one forward pass; then every
position's directions are pulled back through that one graph, several per vmapped backward
pass (:func:`tlscopes.attribute.pull_back_seeds`), each direction seeded only at its own
position's y. Row i equals ``attribute(model, text, scope, position=positions[i])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tlscopes.attribute import (
    Inputs,
    PreparedInputs,
    build_attribution,
    check_finite,
    combine,
    final_logits,
    prepare_inputs,
    pull_back_seeds,
    resolve_directions_per_pass,
)
from tlscopes.hooks import Capture, StopForward, frozen_parameters, run_hooked
from tlscopes.models import EMBED_HOOK, FINAL_STATE_HOOK, unembedding, weight_processing
from tlscopes.results import Attribution
from tlscopes.scopes import Scope, ScopeInputs


def resolve_matrix_positions(positions: Sequence[int], length: int) -> Tensor:
    """Absolute positions from a sequence of ints; negative ones count back from the last token."""
    if isinstance(positions, (int, Tensor)) or len(positions) == 0:
        raise ValueError("positions must be a non-empty sequence of ints, e.g. range(5, 12)")
    resolved = []
    for position in positions:
        if isinstance(position, bool) or not isinstance(position, int):
            raise TypeError(f"positions must be ints, got {type(position).__name__}")
        absolute = length + position if position < 0 else position
        if not 0 <= absolute < length:
            raise IndexError(
                f"position {position} is out of range for a prompt of {length} tokens "
                f"(valid: {-length} to {length - 1})"
            )
        resolved.append(absolute)
    return torch.tensor(resolved, dtype=torch.long)


def attribution_matrix(
    model: Any,
    inputs: Inputs,
    scope: Scope,
    positions: Sequence[int],
    *,
    top_k: int = 10,
    directions_per_pass: int | None = None,
) -> Attribution:
    """A scope's scores for one prompt at several explained positions (one forward pass).

    Args:
        model: a HookedTransformer or TransformerBridge with unprocessed weights.
        inputs: one prompt: a string or token ids [pos] / [1, pos].
        scope: any scope; its directions are chosen per position (e.g. the Fisher direction of
            each position's own prediction). A SemanticScope may take a tuple with one target
            per position, such as the teacher-forced next tokens.
        positions: the positions whose next-token predictions are explained (negative: from
            the end).
        directions_per_pass: pull back at most this many directions per backward pass (the
            graph is kept between passes); None: the measured default of
            :func:`tlscopes.attribute.resolve_directions_per_pass`. Speed and memory only.

    Returns:
        An Attribution with one row per explained position: scores [n_positions, pos] (0 after
        each row's position), the same tokens in every row, ``positions`` the explained
        positions, and each row's prediction (top tokens and probabilities).
    """
    prepared = prepare_inputs(model, inputs)
    if prepared.tokens.shape[0] != 1:
        raise ValueError(
            f"attribution_matrix explains one prompt, got {prepared.tokens.shape[0]}; "
            "call it once per prompt"
        )
    if not isinstance(scope, Scope):
        raise TypeError(f"scope must be a tlscopes Scope, got {type(scope).__name__}")
    scope.check_model(weight_processing(model))
    explained = resolve_matrix_positions(positions, int(prepared.lengths[0]))
    n_rows = len(explained)
    with frozen_parameters(model):
        capture = Capture(explained)

        def take_all_positions(tensor: Tensor, *, hook: Any) -> Tensor:
            capture.final_state = tensor[0, explained.to(tensor.device)]
            raise StopForward

        hooks = [(EMBED_HOOK, capture.embed_hook), (FINAL_STATE_HOOK, take_all_positions)]
        run_hooked(model, prepared.tokens.to(model.W_U.device), hooks)
        if capture.embeddings is None or capture.final_state is None:
            raise RuntimeError("the forward pass did not reach hook_embed and unembed.hook_in")
        final_state = capture.final_state  # [n_rows, d_model], one row per explained position
        logits = final_logits(model, final_state.detach())
        W_U, _ = unembedding(model)
        directions = scope.directions(
            ScopeInputs(final_state.detach(), logits, W_U.detach(), model)
        )
        grads = _pull_back_per_row(
            final_state, capture.embeddings, directions.vectors, directions_per_pass
        )
    scores = combine(grads, directions.weights).detach()
    repeated = PreparedInputs(
        prepared.tokens.expand(n_rows, -1), prepared.lengths.expand(n_rows), explained
    )
    return build_attribution(
        model,
        repeated,
        scores,
        method=scope.name,
        logits=logits,
        target_ids=directions.target_ids,
        details=directions.details,
        top_k=top_k,
    )


def _pull_back_per_row(
    final_state: Tensor, embeddings: Tensor, vectors: Tensor, per_pass: int | None
) -> Tensor:
    """v_{i,r}^T dy_i/dx_t for every row i and direction r: [n_rows, rank, pos, d_model].

    Seed k = (i, r) holds v_{i,r} in row i of y and zeros elsewhere, so its gradient is that of
    row i's y alone, although every row shares one forward graph.
    """
    n_rows, rank, d_model = vectors.shape
    eye = torch.eye(n_rows, dtype=final_state.dtype, device=final_state.device)
    seeds = torch.einsum("ij,ird->irjd", eye, vectors.detach().to(final_state.dtype))
    seeds = seeds.reshape(n_rows * rank, n_rows, d_model)
    per_pass = resolve_directions_per_pass(embeddings.shape[:2].numel(), per_pass)
    grads = pull_back_seeds(final_state, embeddings, seeds, per_pass)[:, 0]
    grads = grads.reshape(n_rows, rank, *embeddings.shape[1:])
    check_finite(grads)
    return grads


__all__ = ["attribution_matrix", "resolve_matrix_positions"]
