"""The engine: one forward pass, then input-only backward passes; every method goes through here.

:func:`scope_gradients` is the one place that runs a model for attribution. It

1. checks that each scope is defined on this model's weights (:meth:`Scope.check_model`);
2. runs one forward pass with the hooks the scopes return (:meth:`Scope.hooks`: the token
   embeddings become a leaf that requires grad, optionally transformed, and y is captured at
   each explained position, where the pass stops), parameter gradients off;
3. asks every scope for its directions v given y and the logits at those positions;
4. pulls all directions back to the embeddings through the one recorded graph
   (:func:`pull_back`): several directions per vmapped backward pass while the input is short,
   one ``retain_graph`` pass each once it is long (:func:`resolve_directions_per_pass`).

Scopes (:func:`attribute`, :func:`attribute_many`), the baselines and Integrated Gradients
(:mod:`tlscopes.baselines`), several methods at once (:mod:`tlscopes.methods`) and the
attribution matrix (:mod:`tlscopes.matrix`) are thin callers of it. Explained positions are
given as (row, position) pairs, so one prompt explained at many positions and many prompts
explained at one position each are the same computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tlscopes._types import DirectionWeights, Logits, TokenScores
from tlscopes.assemble import build_attribution, check_top_k
from tlscopes.hooks import Capture, EmbeddingTransform, HookList, frozen_parameters, run_hooked
from tlscopes.inputs import Inputs, PreparedInputs, prepare_inputs
from tlscopes.models import logit_softcap, unembedding, weight_processing
from tlscopes.protocols import TransformerLensModel
from tlscopes.results import Attribution
from tlscopes.scopes import Scope, ScopeDirections, ScopeInputs

__all__ = [
    "DIRECTION_TOKENS_PER_PASS",
    "Inputs",
    "PreparedInputs",
    "ScopeGradients",
    "attribute",
    "attribute_many",
    "build_attribution",
    "combine",
    "final_logits",
    "prepare_inputs",
    "pull_back",
    "resolve_directions_per_pass",
    "scope_gradients",
]


def final_logits(model: TransformerLensModel, final_state: Tensor) -> Logits:
    """Logits at the explained positions from y: y W_U + b_U, soft-capped where the model caps."""
    W_U, b_U = unembedding(model)
    logits = final_state @ W_U + b_U
    cap = logit_softcap(model)
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    return logits


@dataclass
class ScopeGradients:
    """One forward pass and its input-only backward passes for several scopes.

    Attributes:
        embeddings: the token embeddings x that were differentiated [batch, pos, d_model]
            (after any transform), detached.
        final_state: y at the explained positions [states, d_model], detached.
        logits: y W_U + b_U there [states, d_vocab] (soft-capped where the model caps).
        rows: the batch row of each explained state [states].
        directions: each scope's directions, in order.
        gradients: each scope's v^T J_t for its state's row [states, rank, pos, d_model].
    """

    embeddings: Tensor
    final_state: Tensor
    logits: Logits
    rows: Tensor
    directions: list[ScopeDirections]
    gradients: list[Tensor]

    def scores(self, index: int) -> TokenScores:
        """Scope `index`'s token scores [states, pos] (see :func:`combine`)."""
        return combine(self.gradients[index], self.directions[index].weights).detach()


def scope_gradients(
    model: TransformerLensModel,
    tokens: Tensor,
    scopes: Sequence[Scope],
    *,
    positions: Tensor,
    rows: Tensor | None = None,
    transform: EmbeddingTransform | None = None,
    directions_per_pass: int | None = None,
    observe: Sequence[tuple[str, Any]] = (),
) -> ScopeGradients:
    """The engine: every scope's v^T J_t at every explained position, from one forward pass.

    Args:
        tokens: token ids [batch, pos] (see :func:`tlscopes.inputs.prepare_inputs`).
        scopes: the scopes whose directions are pulled back; none runs the forward pass alone
            (no graph is recorded: for logits at the explained positions).
        positions: the explained positions [states].
        rows: the batch row of each explained position [states]; None: row i for position i.
        transform: applied to the token embeddings before they become the differentiated leaf
            (zeroing for ablation, scaling along an Integrated Gradients path).
        directions_per_pass: directions per backward pass (None: the measured default,
            :func:`resolve_directions_per_pass`); speed and memory only.
        observe: extra forward hooks that read activations during the pass (e.g. attention
            patterns); they must not change what they see.

    Example:
        >>> prepared = prepare_inputs(model, "The capital of France is")  # doctest: +SKIP
        >>> passed = scope_gradients(  # doctest: +SKIP
        ...     model, prepared.tokens, [FisherScope()], positions=prepared.positions
        ... )
        >>> passed.scores(0).shape  # [1, pos]  # doctest: +SKIP
    """
    scopes = list(scopes)
    for scope in scopes:
        if not isinstance(scope, Scope):
            raise TypeError(f"scope must be a tlscopes Scope, got {type(scope).__name__}")
    processing = weight_processing(model)
    for scope in scopes:
        scope.check_model(processing)
    with frozen_parameters(model):  # also leaves any torch.inference_mode() for what follows
        rows = torch.arange(len(positions)) if rows is None else rows.clone()
        capture = Capture(positions.clone(), transform, rows=rows)
        hooks = _scope_hooks(scopes, capture) + list(observe)
        run_hooked(model, tokens.to(model.W_U.device), hooks, grad=bool(scopes))
        if capture.embeddings is None or capture.final_state is None:
            raise RuntimeError(
                "the forward pass did not reach hook_embed and unembed.hook_in; tlscopes needs a "
                "TransformerLens HookedTransformer or TransformerBridge"
            )
        final_state = capture.final_state
        with torch.no_grad():
            logits = final_logits(model, final_state.detach())
        W_U, _ = unembedding(model)
        scope_inputs = ScopeInputs(final_state.detach(), logits, W_U.detach(), model)
        directions = [scope.directions(scope_inputs) for scope in scopes]
        if directions:
            ranks = [d.vectors.shape[1] for d in directions]
            vectors = torch.cat([d.vectors for d in directions], dim=1)
            grads = pull_back(final_state, capture.embeddings, vectors, rows, directions_per_pass)
            gradients = [g.detach() for g in grads.split(ranks, dim=1)]
        else:
            gradients = []
    return ScopeGradients(
        embeddings=capture.embeddings.detach(),
        final_state=final_state.detach(),
        logits=logits,
        rows=rows,
        directions=directions,
        gradients=gradients,
    )


def _scope_hooks(scopes: Sequence[Scope], capture: Capture) -> HookList:
    """The hooks of all scopes in this pass, each distinct (name, function) pair once.

    Scopes share the capture, so their embedding and final-state hooks coincide; a scope that
    needs more (e.g. a capture at an internal hook point) adds its own. With no scopes the
    capture's own two hooks run.
    """
    hooks: HookList = []
    for scope in scopes:
        for hook in scope.hooks(capture):
            if hook not in hooks:
                hooks.append(hook)
    return hooks or capture.hooks()


# Directions x tokens pulled back per backward pass by default. Measured on the default model
# (2 CPU threads): a vmapped backward pass of r directions beats r plain ones up to about this
# many direction-tokens (e.g. 8 directions at 128 tokens: 1.68 s vs 2.06 s) and loses beyond it
# (3 at 512 tokens: 4.4 s vs 3.6 s; 3 at 1,024: 19 s vs 12 s).
DIRECTION_TOKENS_PER_PASS = 768


def resolve_directions_per_pass(n_tokens: int, requested: int | None = None) -> int:
    """How many directions one backward pass takes: `requested`, or the measured default.

    Args:
        n_tokens: tokens in the forward pass (batch x positions).
        requested: a caller's choice (None: ``DIRECTION_TOKENS_PER_PASS // n_tokens``, at
            least 1).
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"directions_per_pass must be a positive int, got {requested!r}")
        return requested
    return max(1, DIRECTION_TOKENS_PER_PASS // max(1, n_tokens))


def pull_back_seeds(outputs: Tensor, leaf: Tensor, seeds: Tensor, per_pass: int) -> Tensor:
    """The gradient of <seed_k, outputs> with respect to `leaf` for every seed k: [k, *leaf].

    Seeds are taken `per_pass` at a time (one vmapped backward pass each; a single seed gets a
    plain one), and the graph is kept until the last pass, so the forward pass is never rerun.
    """
    chunks = seeds.split(per_pass)
    parts = []
    for index, chunk in enumerate(chunks):
        keep = index < len(chunks) - 1
        if chunk.shape[0] == 1:
            (grads,) = torch.autograd.grad(outputs, leaf, chunk[0], retain_graph=keep)
            grads = grads[None]
        else:
            (grads,) = torch.autograd.grad(
                outputs, leaf, chunk, is_grads_batched=True, retain_graph=keep
            )
        parts.append(grads)
    return torch.cat(parts)


def pull_back(
    final_state: Tensor,
    embeddings: Tensor,
    vectors: Tensor,
    rows: Tensor,
    per_pass: int | None = None,
) -> Tensor:
    """v^T dy_s/dx_t for every explained state s, direction and position, from one graph.

    Explained states in different batch rows are independent, so one seed holding every
    state's r-th direction gives all their gradients at once. States that share a row (one
    prompt explained at several positions) would mix, so they go into separate "slots": seed
    (slot, r) holds the r-th direction of the slot's states and zeros elsewhere.

    Args:
        final_state: y at the explained positions [states, d_model], attached to the graph.
        embeddings: the differentiated leaf [batch, pos, d_model].
        vectors: [states, rank, d_model] directions, constants in the backward pass.
        rows: the batch row of each state [states].
        per_pass: seeds per backward pass (None: :func:`resolve_directions_per_pass`'s default).
            The result does not depend on it beyond floating-point rounding.

    Returns:
        [states, rank, pos, d_model]: the gradient of v_{s,r}^T y_s with respect to x_{row(s), t}.
    """
    n_states, rank, d_model = vectors.shape
    rows = rows.to(torch.long).cpu()
    slots = _slots(rows)
    n_slots = int(slots.max()) + 1
    vectors = vectors.detach().to(final_state.dtype)
    # seeds[slot, r, s] = v_{s,r} where s is in that slot, else 0.
    in_slot = torch.nn.functional.one_hot(slots, n_slots).T.to(vectors)  # [slots, states]
    seeds = torch.einsum("js,srd->jrsd", in_slot, vectors).reshape(
        n_slots * rank, n_states, d_model
    )
    per_pass = resolve_directions_per_pass(embeddings.shape[:2].numel(), per_pass)
    grads = pull_back_seeds(final_state, embeddings, seeds, per_pass)
    grads = grads.reshape(n_slots, rank, *embeddings.shape)  # [slots, rank, batch, pos, d]
    device_rows, device_slots = rows.to(grads.device), slots.to(grads.device)
    grads = grads[device_slots, :, device_rows]  # [states, rank, pos, d]
    check_finite(grads)
    return grads


def _slots(rows: Tensor) -> Tensor:
    """For each state, how many earlier states share its row: states in one slot differ in row."""
    slots = torch.zeros_like(rows)
    seen: dict[int, int] = {}
    for index, row in enumerate(rows.tolist()):
        slots[index] = seen.get(row, 0)
        seen[row] = int(slots[index]) + 1
    return slots


def check_finite(grads: Tensor) -> None:
    finite = torch.isfinite(grads).flatten(start_dim=-1).all(dim=-1)  # [..., pos]
    if not bool(finite.all()):
        bad = (~finite).nonzero()[:5].tolist()
        raise FloatingPointError(
            f"non-finite embedding gradients at (state, direction, position) {bad}; the model "
            "produced NaN/inf in the backward pass (try float32/float64 instead of half precision)"
        )


def combine(grads: Tensor, weights: DirectionWeights) -> TokenScores:
    """sqrt(sum_r w_r ||g_{r,t}||^2) per token: one direction with weight 1 gives ||g_t||.

    Half-precision gradients are summed in float32, so scores of float16 / bfloat16 models are
    float32 (their error is then the model's own rounding, not the sum's).
    """
    if grads.dtype not in (torch.float32, torch.float64):
        grads = grads.float()
    squared = grads.pow(2).sum(dim=-1)  # [batch, rank, pos]
    return (squared * weights.to(squared.dtype)[:, :, None]).sum(dim=1).sqrt()


def attribute(
    model: TransformerLensModel,
    inputs: Inputs,
    scope: Scope,
    *,
    position: int = -1,
    top_k: int = 10,
    directions_per_pass: int | None = None,
) -> Attribution:
    """Scores every input token by ||v^T J_t||_2 for the scope's direction(s) v (paper eq. 1-2).

    Args:
        model: a HookedTransformer or TransformerBridge with unprocessed weights.
        inputs: a string, a list of strings (right-padded into one batch; each prompt's result
            equals its unbatched result), or token ids [pos] or [batch, pos].
        scope: a SemanticScope, FisherScope, TemperatureScope or DirectionScope.
        position: the position whose next-token prediction is explained (-1: the last token of
            each prompt).
        top_k: how many of the predicted next tokens to keep in the result.
        directions_per_pass: directions pulled back per backward pass for a scope of rank > 1
            (None: the measured default, see :func:`resolve_directions_per_pass`); speed only.

    Returns:
        An Attribution with scores [batch, pos]; positions after the explained one (and pads)
        score 0 because a causal model cannot be influenced by them.

    Example:
        >>> result = attribute(model, "The capital of France is", FisherScope())  # doctest: +SKIP
        >>> result.top(3)  # doctest: +SKIP
    """
    (result,) = attribute_many(
        model,
        inputs,
        [scope],
        position=position,
        top_k=top_k,
        directions_per_pass=directions_per_pass,
    )
    return result


def attribute_many(
    model: TransformerLensModel,
    inputs: Inputs,
    scopes: Sequence[Scope],
    *,
    position: int = -1,
    top_k: int = 10,
    directions_per_pass: int | None = None,
) -> list[Attribution]:
    """Several scopes from one forward pass.

    The directions of all scopes are stacked and pulled back through the one recorded graph
    (:func:`pull_back`), so three scopes cost one forward pass and three input-only backward
    passes, not three of each. Results are identical to calling :func:`attribute` once per
    scope. `directions_per_pass` as in :func:`attribute`.

    Returns:
        One Attribution per scope, in order.

    Example:
        >>> fisher, temperature = attribute_many(  # doctest: +SKIP
        ...     model, "The capital of France is", [FisherScope(), TemperatureScope()]
        ... )
    """
    scopes = list(scopes)
    if not scopes:
        raise ValueError("scopes is empty; pass at least one scope")
    for scope in scopes:
        if not isinstance(scope, Scope):
            raise TypeError(f"scope must be a tlscopes Scope, got {type(scope).__name__}")
    check_top_k(top_k)
    prepared = prepare_inputs(model, inputs, position)
    passed = scope_gradients(
        model,
        prepared.tokens,
        scopes,
        positions=prepared.positions,
        directions_per_pass=directions_per_pass,
    )
    return [
        build_attribution(
            model,
            prepared,
            passed.scores(index),
            method=scope.name,
            logits=passed.logits,
            target_ids=passed.directions[index].target_ids,
            details=passed.directions[index].details,
            top_k=top_k,
            scope=scope,
            parameters={"position": position},
        )
        for index, scope in enumerate(scopes)
    ]
