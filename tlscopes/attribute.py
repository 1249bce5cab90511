"""The engine: one forward pass, then input-only backward passes; every method goes through here.

For a batch of prompts, right-padded, the forward pass runs with two hooks (see
:mod:`tlscopes.hooks`): the token embeddings become a leaf that requires grad, and y is taken
at each prompt's explained position. Right padding is exact for causal models: pads come after
every real token, so they never reach an explained position, and positions are unchanged.
The directions of a scope are then pulled back to the embeddings through the one recorded graph
with parameter gradients off: several directions at a time with ``is_grads_batched`` (a
vmapped backward pass) while the batch is short, one backward pass each (``retain_graph``) once
it is long, where the vmapped pass was measured slower on CPU
(:func:`resolve_directions_per_pass`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tlscopes._types import DirectionWeights, Embeddings, HiddenStates, Logits, TokenScores
from tlscopes.hooks import Capture, EmbeddingTransform, frozen_parameters, run_hooked
from tlscopes.models import context_length, logit_softcap, unembedding, weight_processing
from tlscopes.results import Attribution
from tlscopes.scopes import Scope, ScopeInputs
from tlscopes.tokens import check_token_ids, require_tokenizer, token_string, token_strings

Inputs = str | Sequence[str] | Tensor


@dataclass(frozen=True)
class PreparedInputs:
    """Token ids of a right-padded batch, each prompt's length and its explained position."""

    tokens: Tensor
    lengths: Tensor
    positions: Tensor


def prepare_inputs(model: Any, inputs: Inputs, position: int = -1) -> PreparedInputs:
    """Tokenizes (with the model's BOS convention) and right-pads; resolves `position` per prompt.

    Args:
        inputs: a string, a list of strings, or token ids [pos] or [batch, pos] (used as given).
        position: the position whose next-token prediction is explained. Negative counts from
            each prompt's last real token (-1: the last); non-negative is an absolute index.
    """
    # Tensors made here enter the recorded graph, so never as inference tensors, even when the
    # caller is inside torch.inference_mode().
    with torch.inference_mode(False):
        return _prepare_inputs(model, inputs, position)


def _prepare_inputs(model: Any, inputs: Inputs, position: int) -> PreparedInputs:
    if isinstance(inputs, Tensor):
        tokens = _token_tensor(inputs)
        check_token_ids(tokens, int(model.cfg.d_vocab))
        lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)
    else:
        if not isinstance(inputs, (str, Sequence)):
            raise TypeError(
                f"inputs must be a string, a list of strings or a tensor of token ids, got "
                f"{type(inputs).__name__}"
            )
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise ValueError("inputs is an empty list; pass at least one prompt")
        require_tokenizer(model, "the input")
        rows = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"prompt {index} is {type(text).__name__}, expected str")
            if not text.strip():
                raise ValueError(f"prompt {index} is empty text; there is nothing to attribute")
            rows.append(model.to_tokens(text, truncate=False)[0].cpu())
        tokens, lengths = _right_pad(rows, _pad_id(model))
    n_ctx = context_length(model)
    if tokens.shape[1] > n_ctx:
        longest = int(lengths.argmax())
        raise ValueError(
            f"prompt {longest} is {int(lengths[longest])} tokens, longer than the model's "
            f"context of {n_ctx} tokens; shorten it"
        )
    positions = _resolve_positions(position, lengths)
    return PreparedInputs(tokens, lengths, positions)


def _token_tensor(tokens: Tensor) -> Tensor:
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise TypeError(f"token ids must be an integer tensor, got dtype {tokens.dtype}")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[1] == 0 or tokens.shape[0] == 0:
        raise ValueError(
            f"token ids must be [pos] or [batch, pos] and non-empty, got {tuple(tokens.shape)}"
        )
    # A copy, so ids made under torch.inference_mode() can enter the recorded graph.
    return tokens.detach().to("cpu", torch.long, copy=True)


def _pad_id(model: Any) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    for attribute_name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attribute_name, None)
        if value is not None:
            return int(value)
    return 0


def _right_pad(rows: list[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = row
    return tokens, lengths


def _resolve_positions(position: int, lengths: Tensor) -> Tensor:
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError(f"position must be an int, got {type(position).__name__}")
    resolved = lengths + position if position < 0 else torch.full_like(lengths, position)
    bad = ((resolved < 0) | (resolved >= lengths)).nonzero().flatten().tolist()
    if bad:
        index = bad[0]
        raise IndexError(
            f"position {position} is out of range for prompt {index} of {int(lengths[index])} "
            f"tokens (valid: {-int(lengths[index])} to {int(lengths[index]) - 1})"
        )
    return resolved


@dataclass
class ForwardState:
    """What one hooked forward pass leaves behind.

    Attributes:
        embeddings: the leaf token embeddings [batch, pos, d_model] (after any transform).
        final_state: y at the explained positions [batch, d_model], attached to the graph.
        logits: y W_U + b_U at those positions [batch, d_vocab], detached.
    """

    embeddings: Embeddings
    final_state: HiddenStates
    logits: Logits


def final_logits(model: Any, final_state: HiddenStates) -> Logits:
    """Logits at the explained positions from y: y W_U + b_U, soft-capped where the model caps."""
    W_U, b_U = unembedding(model)
    logits = final_state @ W_U + b_U
    cap = logit_softcap(model)
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    return logits


def forward_state(
    model: Any,
    tokens: Tensor,
    positions: Tensor,
    *,
    transform: EmbeddingTransform | None = None,
    hooks_for: Callable[[Capture], list] | None = None,
) -> ForwardState:
    """Runs one hooked forward pass up to y (call inside `frozen_parameters` to skip param grads).

    Args:
        tokens: [batch, pos] token ids.
        positions: the explained position of each prompt [batch].
        transform: applied to the token embeddings before they become the differentiated leaf.
        hooks_for: builds the hook list from the capture (a scope's `hooks`); default: the
            capture's own two hooks.
    """
    device = model.W_U.device
    capture = Capture(positions, transform)
    hooks = capture.hooks() if hooks_for is None else hooks_for(capture)
    run_hooked(model, tokens.to(device), hooks)
    if capture.embeddings is None or capture.final_state is None:
        raise RuntimeError(
            "the forward pass did not reach hook_embed and unembed.hook_in; tlscopes needs a "
            "TransformerLens HookedTransformer or TransformerBridge"
        )
    with torch.no_grad():
        logits = final_logits(model, capture.final_state.detach())
    return ForwardState(capture.embeddings, capture.final_state, logits)


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


def pull_back(state: ForwardState, vectors: Tensor, per_pass: int | None = None) -> Tensor:
    """v^T J_t for every direction and position, from the one recorded forward pass.

    Args:
        vectors: [batch, rank, d_model] directions, constants in the backward pass.
        per_pass: directions per backward pass (None: :func:`resolve_directions_per_pass`'s default).
            The result does not depend on it beyond floating-point rounding.

    Returns:
        [batch, rank, pos, d_model]: the gradient of v_r^T y_b with respect to x_{b,t}. Prompts
        in a batch are independent, so one backward pass of the summed outputs serves them all.
    """
    seeds = vectors.detach().transpose(0, 1).to(state.final_state.dtype)
    per_pass = resolve_directions_per_pass(state.embeddings.shape[:2].numel(), per_pass)
    grads = pull_back_seeds(state.final_state, state.embeddings, seeds, per_pass)
    grads = grads.transpose(0, 1)
    check_finite(grads)
    return grads


def check_finite(grads: Tensor) -> None:
    finite = torch.isfinite(grads).flatten(start_dim=-1).all(dim=-1)  # [..., pos]
    if not bool(finite.all()):
        bad = (~finite).nonzero()[:5].tolist()
        raise FloatingPointError(
            f"non-finite embedding gradients at (batch, [direction,] position) {bad}; the model "
            "produced NaN/inf in the backward pass (try float32/float64 instead of half precision)"
        )


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
    model: Any,
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
    model: Any,
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
    """
    scopes = list(scopes)
    if not scopes:
        raise ValueError("scopes is empty; pass at least one scope")
    for scope in scopes:
        if not isinstance(scope, Scope):
            raise TypeError(f"scope must be a tlscopes Scope, got {type(scope).__name__}")
    prepared = prepare_inputs(model, inputs, position)
    processing = weight_processing(model)
    for scope in scopes:
        scope.check_model(processing)
    with frozen_parameters(model):
        # Every scope returns the same two capture hooks; the first scope's list serves all.
        state = forward_state(model, prepared.tokens, prepared.positions, hooks_for=scopes[0].hooks)
        W_U, _ = unembedding(model)
        inputs_for_scopes = ScopeInputs(
            state.final_state.detach(), state.logits, W_U.detach(), model
        )
        all_directions = [scope.directions(inputs_for_scopes) for scope in scopes]
        ranks = [directions.vectors.shape[1] for directions in all_directions]
        vectors = torch.cat([d.vectors for d in all_directions], dim=1)
        grads = pull_back(state, vectors, directions_per_pass)
    results = []
    for directions, grads_for_scope, scope in zip(
        all_directions, grads.split(ranks, dim=1), scopes, strict=True
    ):
        scores = combine(grads_for_scope, directions.weights).detach()
        results.append(
            build_attribution(
                model,
                prepared,
                scores,
                method=scope.name,
                logits=state.logits,
                target_ids=directions.target_ids,
                details=directions.details,
                top_k=top_k,
            )
        )
    return results


def build_attribution(
    model: Any,
    prepared: PreparedInputs,
    scores: Tensor,
    *,
    method: str,
    logits: Logits,
    target_ids: Tensor | None,
    details: dict[str, Any],
    top_k: int = 10,
) -> Attribution:
    """Packs scores with tokens and the prediction being explained into an Attribution."""
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
    )
