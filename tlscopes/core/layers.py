"""Scopes resolved by layer and head: where in the network the influence on a prediction flows.

The backward pass that scores the input tokens already passes through every layer, so the
gradient of the explained quantity v^T y (or v^T h for an internal direction) with respect to
each layer's residual stream comes from the same passes (:func:`tlscopes.core.engine.
scope_gradients` with ``taps``):

* ``scores[b, l, t] = ||d(v^T y)/d r_{l,t}||_2``, r_{l,t} = ``blocks.{l}.hook_resid_pre`` at t;
  for Fisher rank r > 1 the same sqrt(sum_i lambda_i ||.||^2) combination as the input scores.
  Layer 0's row equals the input scores: the residual stream entering layer 0 is x_t plus
  terms that do not depend on x_t (a learned position embedding, or nothing).
* with ``heads=True``, ``head_scores[b, l, h, t] = ||d(v^T y)/d z_{l,h,t}||_2`` at
  ``blocks.{l}.attn.hook_z``, each head's attention-weighted values before the output
  projection.

For an internal direction (``DirectionScope(v, at="blocks.k....")``), layers after block k do
not influence v^T h and score exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tlscopes.core.assemble import build_attribution, check_top_k
from tlscopes.core.checkpointing import Checkpoint
from tlscopes.core.engine import combine, scope_gradients
from tlscopes.core.hooks import block_of
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.core.scopes import Scope
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.layer_attribution import LayerAttribution

RESID_HOOK = "blocks.{layer}.hook_resid_pre"
HEAD_HOOK = "blocks.{layer}.attn.hook_z"


def _head_gradients(grads: Tensor, n_heads: int) -> Tensor:
    """[states, rank, pos, head_index, d_head] from hook_z gradients, which a bridge may give
    with the heads flattened into the last axis."""
    if grads.ndim == 4:
        grads = grads.unflatten(-1, (n_heads, grads.shape[-1] // n_heads))
    return grads


def attribute_layers(
    model: TransformerLensModel,
    inputs: Inputs,
    scope: Scope,
    *,
    position: int = -1,
    heads: bool = False,
    top_k: int = 10,
    directions_per_pass: int | None = None,
    checkpoint: Checkpoint = "auto",
    progress: bool = True,
) -> LayerAttribution:
    """A scope's scores at every layer's residual stream (and every head), from one forward pass
    and the scope's backward pass(es).

    Args:
        inputs: as in ``tlscopes.attribute``.
        position: as in ``tlscopes.attribute``.
        top_k: as in ``tlscopes.attribute``.
        directions_per_pass: as in ``tlscopes.attribute``.
        checkpoint: as in ``tlscopes.attribute``.
        progress: as in ``tlscopes.attribute``.
        scope: any scope, an internal DirectionScope included.
        heads: also score every head at ``blocks.{l}.attn.hook_z``.

    Returns:
        A LayerAttribution: ``scores`` [batch, layer, pos], ``input_scores`` [batch, pos] (equal
        to ``attribute``'s), ``head_scores`` [batch, layer, head_index, pos] with ``heads``.

    Example:
        >>> layered = attribute_layers(model, "The capital of France is", FisherScope())
        ... # doctest: +SKIP
        >>> layered.scores.shape  # [1, n_layers, pos]  # doctest: +SKIP
    """
    if not isinstance(scope, Scope):
        raise TypeError(f"scope must be a tlscopes Scope, got {type(scope).__name__}")
    check_top_k(top_k)
    n_layers = int(model.cfg.n_layers)
    resid = [RESID_HOOK.format(layer=layer) for layer in range(n_layers)]
    head_hooks = [HEAD_HOOK.format(layer=layer) for layer in range(n_layers)] if heads else []
    for name in resid + head_hooks:
        if name not in model.hook_dict:
            what = "head resolution (heads=True)" if name in head_hooks else "layer resolution"
            raise ValueError(
                f"{type(model).__name__} has no hook point {name!r}, which {what} needs; this "
                "model kind or architecture does not expose it"
            )
    prepared = prepare_inputs(model, inputs, position)
    passed = scope_gradients(
        model,
        prepared.tokens,
        [scope],
        positions=prepared.positions,
        taps=resid + head_hooks,
        directions_per_pass=directions_per_pass,
        checkpoint=checkpoint,
        progress=progress,
    )
    directions = passed.directions[0]
    weights = directions.weights
    taps = passed.tap_gradients[0]
    last_block = (
        n_layers if scope.explained_hook is None else block_of(scope.explained_hook, n_layers)
    )
    layer_scores = torch.stack(
        [combine(taps[name], weights) for name in resid], dim=1
    )  # [batch, layer, pos]
    head_scores = None
    if heads:
        n_heads = int(model.cfg.n_heads)
        per_layer = []
        for name in head_hooks:
            grads = _head_gradients(taps[name], n_heads)  # [S, R, pos, head, d_head]
            if grads.dtype not in (torch.float32, torch.float64):
                grads = grads.float()  # half precision: sums in float32, as combine does
            squared = grads.pow(2).sum(dim=-1)  # [S, R, pos, head]
            weighted = (squared * weights.to(squared)[:, :, None, None]).sum(dim=1).sqrt()
            per_layer.append(weighted.transpose(1, 2))  # [S, head, pos]
        head_scores = torch.stack(per_layer, dim=1).detach().cpu()  # [S, layer, head, pos]
    # Layers after the explained hook point's block do not influence it: exactly 0 (a hook at
    # block k's output is the very tensor that enters block k + 1, which autograd cannot tell
    # apart, so it is set here).
    if last_block < n_layers:
        layer_scores[:, last_block + 1 :] = 0.0
        if head_scores is not None:
            head_scores[:, last_block + 1 :] = 0.0
    layer_scores = layer_scores.detach().cpu().clone()
    for index, length in enumerate(prepared.lengths.tolist()):
        layer_scores[index, :, length:] = 0.0
        if head_scores is not None:
            head_scores[index, :, :, length:] = 0.0
    attribution = build_attribution(
        model,
        prepared,
        passed.scores(0),
        method=scope.name,
        logits=passed.logits,
        target_ids=directions.target_ids,
        details=directions.details,
        top_k=top_k,
        scope=scope,
        parameters={"position": position, "heads": heads},
    )
    return LayerAttribution(layer_scores, attribution, head_scores)


__all__ = ["HEAD_HOOK", "RESID_HOOK", "attribute_layers"]
