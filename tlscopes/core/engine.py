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
(:mod:`tlscopes.methods.baselines`), several methods at once (:mod:`tlscopes.methods.registry`) and the
attribution matrix (:mod:`tlscopes.core.matrix`) are thin callers of it. Explained positions are
given as (row, position) pairs, so one prompt explained at many positions and many prompts
explained at one position each are the same computation.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from tlscopes._types import DirectionWeights, Logits, TokenScores
from tlscopes.core.assemble import build_attribution, check_top_k
from tlscopes.core.backward import backward_passes, pull_back
from tlscopes.core.checkpointing import (
    BlockProgress,
    Checkpoint,
    Recomputing,
    observer,
    resolve_checkpoint,
)
from tlscopes.core.hooks import (
    Capture,
    EmbeddingTransform,
    HookList,
    block_of,
    frozen_parameters,
    hooked_forward,
)
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.core.scopes import Scope, ScopeDirections, ScopeInputs
from tlscopes.models.facts import EMBED_HOOK, logit_softcap, unembedding, weight_processing
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.attribution import Attribution

__all__ = [
    "ScopeGradients",
    "attribute",
    "attribute_many",
    "combine",
    "final_logits",
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
        tap_gradients: for each scope, the gradient of v^T y (or v^T h) with respect to each
            tapped activation, by hook name [states, rank, pos, ...] (exactly zero where the
            activation does not influence the explained quantity).
    """

    embeddings: Tensor
    final_state: Tensor
    logits: Logits
    rows: Tensor
    directions: list[ScopeDirections]
    gradients: list[Tensor]
    tap_gradients: list[dict[str, Tensor]] = field(default_factory=list)

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
    taps: Sequence[str] = (),
    checkpoint: Checkpoint = "auto",
    progress: bool = True,
) -> ScopeGradients:
    """The engine: every scope's v^T J_t at every explained position, from one forward pass.

    Args:
        tokens: token ids [batch, pos] (see :func:`tlscopes.core.inputs.prepare_inputs`).
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
        taps: hook point names whose activations are differentiated too (in the same backward
            passes): each scope's gradients with respect to them are in ``tap_gradients``.
        checkpoint: True recomputes activations in the backward pass a block at a time, with
            attention that keeps no T x T tensor (:mod:`tlscopes.core.checkpointing`): memory
            linear in the length, about one more forward pass of time (with no scopes, the
            forward pass alone runs chunked); False keeps every
            activation (faster for short prompts); ``"auto"`` checkpoints once the plain path's
            estimated memory passes half the free memory
            (:func:`tlscopes.core.checkpointing.resolve_checkpoint`). Results are equal either
            way, to floating-point rounding.
        progress: while the pass checkpoints (long prompts), show a progress bar on stderr of
            the blocks run in the forward pass and recomputed in each backward pass
            (:class:`tlscopes.core.checkpointing.BlockProgress`); False hides it.

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
    taps = list(dict.fromkeys(taps))
    check_hook_names(model, [s.explained_hook for s in scopes if s.explained_hook] + taps)
    with frozen_parameters(model), contextlib.ExitStack() as running:
        rows = torch.arange(len(positions)) if rows is None else rows.clone()
        capture = Capture(positions.clone(), transform, rows=rows)
        scope_hooks = _scope_hooks(scopes, capture)
        # Taps go before the scopes' captures at a shared hook point: a TransformerBridge hands
        # each hook a converted copy of what the previous one returned, so a tap registered
        # after a capture would keep a tensor downstream of it and read a zero gradient.
        hooks = (
            [hook for hook in scope_hooks if hook[0] == EMBED_HOOK]
            + [(name, capture.tap_hook(name)) for name in taps]
            + [hook for hook in scope_hooks if hook[0] != EMBED_HOOK]
        )
        long_prompt = resolve_checkpoint(checkpoint, model, tokens.numel())
        # Without scopes there is no backward pass to recompute for; a long prompt's forward
        # pass alone (generation, ablation) still runs chunked, with no T x T tensor.
        recompute = bool(scopes) and long_prompt
        blocks = BlockProgress(len(getattr(model, "blocks", ())), recompute and bool(progress))
        running.callback(blocks.close)
        recomputing = Recomputing(blocks)
        observers = [(n, observer(fn, recomputing)) for n, fn in observe] if recompute else observe
        running.enter_context(
            hooked_forward(
                model,
                tokens.to(model.W_U.device),
                hooks + list(observers),
                grad=bool(scopes),
                checkpoint=long_prompt,
                recomputing=recomputing,
            )
        )
        if not recompute:
            # Nothing reruns the forward pass: hooks and attention paths go before the backward.
            running.close()
        if capture.embeddings is None or capture.final_state is None:
            raise RuntimeError(
                "the forward pass did not reach hook_embed and unembed.hook_in; tlscopes needs a "
                "TransformerLens HookedTransformer or TransformerBridge"
            )
        _check_captured(scopes, capture, taps)
        final_state = capture.final_state
        with torch.no_grad():
            logits = final_logits(model, final_state.detach())
        W_U, _ = unembedding(model)
        explained = {name: value.detach() for name, value in capture.explained.items()}
        scope_inputs = ScopeInputs(final_state.detach(), logits, W_U.detach(), model, explained)
        directions = [scope.directions(scope_inputs) for scope in scopes]
        leaves = [capture.embeddings, *(capture.tapped[name] for name in taps)]
        gradients: list[Tensor] = [torch.empty(0)] * len(scopes)
        tap_gradients: list[dict[str, Tensor]] = [{} for _ in scopes]
        # Scopes explaining the same quantity (y, or one hook point's h) share backward passes.
        groups: dict[str | None, list[int]] = {}
        for index, scope in enumerate(scopes):
            groups.setdefault(scope.explained_hook, []).append(index)
        stacked = {
            hook: torch.cat([directions[i].vectors for i in members], dim=1)
            for hook, members in groups.items()
        }
        n_tokens = capture.embeddings.shape[:2].numel()
        n_blocks = len(getattr(model, "blocks", ()))
        blocks.backward(
            [
                (
                    backward_passes(rows, vectors.shape[1], n_tokens, directions_per_pass),
                    n_blocks - 1 if hook is None else block_of(hook, n_blocks),
                )
                for hook, vectors in stacked.items()
            ]
        )
        for number, (hook, members) in enumerate(groups.items()):
            outputs = final_state if hook is None else capture.explained[hook]
            vectors = stacked[hook]
            grads = pull_back(
                outputs,
                leaves,
                vectors,
                rows,
                directions_per_pass,
                keep_graph=number < len(groups) - 1,
            )
            ranks = [directions[i].vectors.shape[1] for i in members]
            split = [g.detach().split(ranks, dim=1) for g in grads]
            for position, index in enumerate(members):
                gradients[index] = split[0][position]
                tap_gradients[index] = {name: split[1 + k][position] for k, name in enumerate(taps)}
    return ScopeGradients(
        embeddings=capture.embeddings.detach(),
        final_state=final_state.detach(),
        logits=logits,
        rows=rows,
        directions=directions,
        gradients=gradients,
        tap_gradients=tap_gradients,
    )


def check_hook_names(model: TransformerLensModel, names: Sequence[str]) -> None:
    """Refuses hook point names the model does not have, suggesting close ones."""
    known = getattr(model, "hook_dict", {})
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=4)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(
                f"{type(model).__name__} has no hook point {name!r}{hint} "
                "(model.hook_dict lists them all)"
            )


def _check_captured(scopes: Sequence[Scope], capture: Capture, taps: Sequence[str]) -> None:
    missing = [s.explained_hook for s in scopes if s.explained_hook]
    missing = [name for name in missing if name not in capture.explained]
    missing += [name for name in taps if name not in capture.tapped]
    if missing:
        raise ValueError(
            f"the forward pass never reached hook point(s) {missing}: tlscopes stops at the "
            "unembedding (unembed.hook_in), so pick hook points before it"
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
    checkpoint: Checkpoint = "auto",
    progress: bool = True,
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
        checkpoint: recompute activations a block at a time in the backward pass, for long
            prompts (True, False, or ``"auto"``: see :func:`scope_gradients`); memory and speed
            only.
        progress: while a long prompt's pass checkpoints, show the blocks done on stderr
            (False hides it).

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
        checkpoint=checkpoint,
        progress=progress,
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
    checkpoint: Checkpoint = "auto",
    progress: bool = True,
) -> list[Attribution]:
    """Several scopes from one forward pass.

    The directions of all scopes are stacked and pulled back through the one recorded graph
    (:func:`pull_back`), so three scopes cost one forward pass and three input-only backward
    passes, not three of each. Results are identical to calling :func:`attribute` once per
    scope. `directions_per_pass`, `checkpoint` and `progress` as in :func:`attribute`.

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
        checkpoint=checkpoint,
        progress=progress,
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
