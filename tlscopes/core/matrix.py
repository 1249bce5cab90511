"""One prompt explained at many positions: a scope's attribution matrix from one forward pass.

For a teacher-forced sequence (a translation, a time series) every target position has its own
prediction to explain. y is captured at all those positions in one forward pass; then every
position's directions are pulled back through that one graph, several per vmapped backward
pass, each direction seeded only at its own position's y (the engine,
:func:`tlscopes.core.engine.scope_gradients`, with every explained position in batch row 0). Row i equals ``attribute(model, text, scope, position=positions[i])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tlscopes.core.assemble import build_attribution, check_top_k
from tlscopes.core.checkpointing import Checkpoint
from tlscopes.core.engine import scope_gradients
from tlscopes.core.inputs import Inputs, PreparedInputs, prepare_inputs
from tlscopes.core.scopes import Scope
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.attribution import Attribution


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
    model: TransformerLensModel,
    inputs: Inputs,
    scope: Scope,
    positions: Sequence[int],
    *,
    top_k: int = 10,
    directions_per_pass: int | None = None,
    checkpoint: Checkpoint = "auto",
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
            :func:`tlscopes.core.engine.resolve_directions_per_pass`. Speed and memory only.
        checkpoint: recompute activations a block at a time in the backward pass (True,
            False or ``"auto"``, as in :func:`tlscopes.core.engine.scope_gradients`); speed and
            memory only.

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
    check_top_k(top_k)
    explained = resolve_matrix_positions(positions, int(prepared.lengths[0]))
    n_rows = len(explained)
    # Every explained position is a state of batch row 0: the engine seeds each one alone.
    passed = scope_gradients(
        model,
        prepared.tokens,
        [scope],
        positions=explained,
        rows=torch.zeros(n_rows, dtype=torch.long),
        directions_per_pass=directions_per_pass,
        checkpoint=checkpoint,
    )
    repeated = PreparedInputs(
        prepared.tokens.expand(n_rows, -1), prepared.lengths.expand(n_rows), explained
    )
    directions = passed.directions[0]
    return build_attribution(
        model,
        repeated,
        passed.scores(0),
        method=scope.name,
        logits=passed.logits,
        target_ids=directions.target_ids,
        details=directions.details,
        top_k=top_k,
        scope=scope,
        parameters={"positions": explained.tolist()},
    )


__all__ = ["attribution_matrix", "resolve_matrix_positions"]
