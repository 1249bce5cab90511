"""Attribution while generating: every generated token's prediction explained by a scope.

:func:`attribute_generation` first generates a continuation of each prompt (greedy, or sampling
that a seed makes reproducible), with plain forward passes and no cache. Then one forward pass
over the whole text captures y at every position where a generated token was predicted, and the
scope's directions at all those positions are pulled back through that one graph (the engine of
:func:`tlscopes.core.matrix.attribution_matrix`, :func:`tlscopes.core.engine.scope_gradients`, with one
explained state per (prompt, step) and states of one prompt seeded apart). Step s of prompt b
explains the prediction of generated token s, made at position ``prompt_length[b] + s - 1``;
its row equals ``attribute(model, text_ids, scope, position=prompt_length[b] + s - 1)``.
Generating is :mod:`tlscopes.generation.decoding`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from tlscopes.core.assemble import check_finite_scores, check_top_k
from tlscopes.core.checkpointing import Checkpoint
from tlscopes.core.engine import scope_gradients
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.core.scopes import DirectionScope, Scope, SemanticScope
from tlscopes.generation.decoding import Sampler, generate_ids
from tlscopes.models.facts import context_length
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.generation_attribution import GenerationAttribution
from tlscopes.results.provenance import provenance
from tlscopes.tokens import eos_token_id, has_tokenizer, padding_id, token_strings

__all__ = [
    "attribute_generation",
]


def _per_state_scope(scope: Scope, rows: Tensor, targets: Tensor, batch: int) -> Scope:
    """The scope with per-prompt arguments repeated for each of a prompt's steps; a
    SemanticScope without a target explains each step's generated token."""
    if isinstance(scope, SemanticScope):
        if scope.target is None:
            return dataclasses.replace(scope, target=tuple(int(t) for t in targets))
        single = isinstance(scope.target, (int, str)) and not isinstance(scope.target, bool)
        if not single and not (isinstance(scope.target, Tensor) and scope.target.ndim == 0):
            given = list(scope.target)
            if len(given) != batch:
                raise ValueError(
                    f"SemanticScope has {len(given)} targets for {batch} prompts; pass one per "
                    "prompt, one for all, or none (each step's generated token)"
                )
            return dataclasses.replace(scope, target=tuple(given[int(r)] for r in rows))
    if isinstance(scope, DirectionScope) and scope.vector.ndim == 2:
        if scope.vector.shape[0] != batch:
            raise ValueError(
                f"DirectionScope has {scope.vector.shape[0]} vectors for {batch} prompts"
            )
        return dataclasses.replace(scope, vector=scope.vector[rows])
    return scope


def _check_arguments(max_new_tokens: int, stop_at_eos: bool, top_predictions: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not isinstance(stop_at_eos, bool):
        raise TypeError(f"stop_at_eos must be True or False, got {stop_at_eos!r}")
    check_top_k(top_predictions)


def attribute_generation(
    model: TransformerLensModel,
    prompt: Inputs,
    scope: Scope,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_at_eos: bool = True,
    top_predictions: int = 10,
    directions_per_pass: int | None = None,
    checkpoint: Checkpoint = "auto",
    progress: bool = True,
) -> GenerationAttribution:
    """Generates a continuation and explains every generated token's prediction with a scope.

    Args:
        model: a HookedTransformer or TransformerBridge with unprocessed weights.
        prompt: a string, a list of strings (right-padded into one batch; each prompt's result
            equals its unbatched result), or token ids [pos] / [batch, pos].
        scope: FisherScope and TemperatureScope need no target; ``SemanticScope()`` explains
            each step's generated token (a target, or one per prompt, is used as given);
            DirectionScope as everywhere (a [batch, d] vector gives one per prompt).
        max_new_tokens: how many tokens to generate at most per prompt.
        do_sample: sample (seeded) instead of taking the most likely token.
        temperature: sampling from softmax(logits / temperature); only with do_sample.
        top_k: sampling over the top_k most likely tokens (None: all); only with do_sample.
        seed: seeds each prompt's own torch.Generator, so sampling is reproducible.
        stop_at_eos: a prompt stops after generating the tokenizer's eos token (the eos step is
            kept); the others go on. A model without a tokenizer has no eos and never stops early.
        top_predictions: how many of each step's most likely tokens to keep.
        directions_per_pass: as in :func:`tlscopes.core.engine.attribute`; speed and memory only.
        checkpoint: as in :func:`tlscopes.core.engine.attribute`, for the decoding steps' forward
            passes (chunked attention on a long prompt, no T x T tensor) and the attribution's
            backward passes; ``"auto"`` decides from the length. Results are the same either way.
        progress: as in :func:`tlscopes.core.engine.attribute`.

    Returns:
        A GenerationAttribution: ``scores`` [batch, step, pos], 0 after each step's explained
        position, on steps a prompt did not generate and on padding.

    Example:
        >>> result = attribute_generation(model, "The capital of France is", FisherScope())
        ... # doctest: +SKIP
        >>> result.generated_text[0], result.scores.shape  # doctest: +SKIP
    """
    if not isinstance(scope, Scope):
        raise TypeError(f"scope must be a tlscopes Scope, got {type(scope).__name__}")
    _check_arguments(max_new_tokens, stop_at_eos, top_predictions)
    sampler = Sampler(do_sample, temperature, top_k, seed)
    prepared = prepare_inputs(model, prompt)
    longest, n_ctx = int(prepared.lengths.max()), context_length(model)
    if longest + max_new_tokens > n_ctx:
        raise ValueError(
            f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
            f"model's context of {n_ctx} tokens; lower max_new_tokens or shorten the prompt"
        )
    stop_id = eos_token_id(model) if stop_at_eos else None
    pad_id = padding_id(model)
    generated, counts = generate_ids(
        model,
        prepared,
        max_new_tokens=max_new_tokens,
        sampler=sampler,
        eos_id=stop_id,
        pad_id=pad_id,
        checkpoint=checkpoint,
    )
    batch, n_steps = len(counts), int(counts.max())
    generated = generated[:, :n_steps]
    lengths = prepared.lengths + counts
    text = torch.full((batch, int(lengths.max())), pad_id, dtype=torch.long)
    for index in range(batch):
        length = int(prepared.lengths[index])
        text[index, :length] = prepared.tokens[index, :length]
        text[index, length : int(lengths[index])] = generated[index, : int(counts[index])]
    rows = torch.cat([torch.full((int(n),), b, dtype=torch.long) for b, n in enumerate(counts)])
    steps = torch.cat([torch.arange(int(n)) for n in counts])
    positions = prepared.lengths[rows] + steps - 1
    state_scope = _per_state_scope(scope, rows, generated[rows, steps], batch)
    passed = scope_gradients(
        model,
        text,
        [state_scope],
        positions=positions,
        rows=rows,
        directions_per_pass=directions_per_pass,
        checkpoint=checkpoint,
        progress=progress,
    )
    state_scores = passed.scores(0).cpu()
    check_finite_scores(state_scores)
    scores = torch.zeros((batch, n_steps, text.shape[1]), dtype=state_scores.dtype)
    scores[rows, steps] = state_scores
    # Causal models give exactly 0 after the explained position; written so on every kind.
    after = torch.arange(text.shape[1])[None, None, :] > (
        prepared.lengths[:, None, None] + torch.arange(n_steps)[None, :, None] - 1
    )
    scores[after.expand_as(scores)] = 0.0
    records = _step_records(passed.logits, passed.final_state, generated[rows, steps])
    directions = passed.directions[0]
    details = dict(directions.details)
    if directions.target_ids is not None:  # a Semantic target per step, and its probability
        targets = directions.target_ids.cpu()
        details["target_ids"] = targets.tolist()
        details["target_probs"] = records["distribution"].gather(1, targets[:, None])[:, 0].tolist()
        details["target_tokens"] = token_strings(model, targets)
    parameters = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "temperature": temperature,
        "top_k": top_k,
        "seed": seed,
        "stop_at_eos": stop_at_eos,
    }
    return _assemble(
        model,
        text=text,
        lengths=lengths,
        prompt_lengths=prepared.lengths,
        generated=generated,
        counts=counts,
        scores=scores,
        grid=(rows, steps),
        records=records,
        top_predictions=top_predictions,
        details=details,
        scope=scope,
        info=provenance(model, scope.name, scope=scope, parameters=parameters),
    )


def _step_records(logits: Tensor, final_state: Tensor, chosen: Tensor) -> dict[str, Tensor]:
    """Per state: the chosen token's probability, the entropy (nats) of the next-token
    distribution and beta_eff = ||y||, all at temperature 1 (the model's own distribution)."""
    probs = torch.softmax(logits.detach().double().cpu(), dim=-1)
    return {
        "probs": probs.gather(1, chosen[:, None])[:, 0],
        "entropy": torch.special.entr(probs).sum(dim=-1),
        "beta_eff": final_state.detach().double().cpu().norm(dim=-1),
        "distribution": probs,
    }


def _decode(model: TransformerLensModel, ids: Tensor) -> str:
    """Token ids as text: the tokenizer's decoding, or the ``<id>`` strings joined."""
    if has_tokenizer(model):
        return str(model.tokenizer.decode(ids.tolist()))
    return "".join(token_strings(model, ids))


def _per_prompt(value: Any, rows: Tensor, steps: Tensor, counts: Tensor) -> Any:
    """A per-state list regrouped into one list per prompt (other values as they are)."""
    if not isinstance(value, list) or len(value) != len(rows):
        return value
    grouped: list[list[Any]] = [[] for _ in counts]
    for item, row in zip(value, rows.tolist(), strict=True):
        grouped[row].append(item)
    return grouped


def _assemble(
    model: TransformerLensModel,
    *,
    text: Tensor,
    lengths: Tensor,
    prompt_lengths: Tensor,
    generated: Tensor,
    counts: Tensor,
    scores: Tensor,
    grid: tuple[Tensor, Tensor],
    records: dict[str, Tensor],
    top_predictions: int,
    details: dict[str, Any],
    scope: Scope,
    info: dict[str, Any],
) -> GenerationAttribution:
    rows, steps = grid
    batch, n_steps = generated.shape
    k = min(top_predictions, records["distribution"].shape[-1])
    top_probs, top_ids = records["distribution"].topk(k, dim=-1)
    per_step = {
        name: torch.zeros((batch, n_steps), dtype=torch.float64)
        for name in ("probs", "entropy", "beta_eff")
    }
    for name, values in per_step.items():
        values[rows, steps] = records[name]
    grid_ids = torch.zeros((batch, n_steps, k), dtype=torch.long)
    grid_probs = torch.zeros((batch, n_steps, k), dtype=torch.float64)
    grid_ids[rows, steps], grid_probs[rows, steps] = top_ids, top_probs
    top_tokens = [
        [token_strings(model, grid_ids[b, s]) for s in range(int(counts[b]))] for b in range(batch)
    ]
    prompts = [text[b, : int(prompt_lengths[b])] for b in range(batch)]
    continuations = [generated[b, : int(counts[b])] for b in range(batch)]
    generated_tokens = [token_strings(model, ids) for ids in continuations]
    return GenerationAttribution(
        scores=scores,
        tokens=[token_strings(model, text[b, : int(lengths[b])]) for b in range(batch)],
        token_ids=text,
        prompt_lengths=prompt_lengths.clone(),
        generated_ids=generated.clone(),
        generated_lengths=counts.clone(),
        generated_tokens=generated_tokens,
        prompt_text=[_decode(model, ids) for ids in prompts],
        generated_text=[_decode(model, ids) for ids in continuations],
        probs=per_step["probs"],
        entropy=per_step["entropy"],
        beta_eff=per_step["beta_eff"],
        top_token_ids=grid_ids,
        top_tokens=top_tokens,
        top_probs=grid_probs,
        method=scope.name,
        details={key: _per_prompt(v, rows, steps, counts) for key, v in details.items()},
        model_name=str(getattr(model.cfg, "model_name", "")),
        info=info,
    )
