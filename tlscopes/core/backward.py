"""The backward passes of the engine: directions pulled back through one recorded graph.

Several directions go per vmapped backward pass (``is_grads_batched``) while the input is
short, one ``retain_graph`` pass each once it is long, where the vmapped pass was measured
slower on CPU (:func:`resolve_directions_per_pass`). Explained states that share a batch row go
into separate seeds ("slots"), so one prompt explained at many positions never mixes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

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


def pull_back_seeds(
    outputs: Tensor,
    leaves: Sequence[Tensor],
    seeds: Tensor,
    per_pass: int,
    *,
    keep_graph: bool = False,
) -> list[Tensor]:
    """The gradient of <seed_k, outputs> with respect to each leaf, for every seed k.

    Seeds are taken `per_pass` at a time (one vmapped backward pass each; a single seed gets a
    plain one), and the graph is kept until the last pass (or after it, with `keep_graph`), so
    the forward pass is never rerun. A leaf that does not influence `outputs` gets zeros.

    Returns:
        One tensor per leaf: [k, *leaf.shape].
    """
    chunks = seeds.split(per_pass)
    parts: list[list[Tensor]] = [[] for _ in leaves]
    for index, chunk in enumerate(chunks):
        keep = keep_graph or index < len(chunks) - 1
        if chunk.shape[0] == 1:
            grads = torch.autograd.grad(
                outputs, leaves, chunk[0], retain_graph=keep, allow_unused=True
            )
            grads = tuple(None if g is None else g[None] for g in grads)
        else:
            grads = torch.autograd.grad(
                outputs,
                leaves,
                chunk,
                is_grads_batched=True,
                retain_graph=keep,
                allow_unused=True,
            )
        for part, leaf, grad in zip(parts, leaves, grads, strict=True):
            if grad is None:
                grad = leaf.new_zeros((chunk.shape[0], *leaf.shape))
            part.append(grad)
    return [torch.cat(part) for part in parts]


def pull_back(
    outputs: Tensor,
    leaves: Sequence[Tensor],
    vectors: Tensor,
    rows: Tensor,
    per_pass: int | None = None,
    *,
    keep_graph: bool = False,
) -> list[Tensor]:
    """v^T d(outputs_s)/d(leaf) for every explained state s, direction and leaf, from one graph.

    Explained states in different batch rows are independent, so one seed holding every
    state's r-th direction gives all their gradients at once. States that share a row (one
    prompt explained at several positions) would mix, so they go into separate "slots": seed
    (slot, r) holds the r-th direction of the slot's states and zeros elsewhere.

    Args:
        outputs: the explained quantity's vectors at the explained positions [states, d] (y, or
            an internal activation), attached to the graph.
        leaves: what to differentiate with respect to, each [batch, pos, ...]; the first is the
            token embeddings x.
        vectors: [states, rank, d] directions, constants in the backward pass.
        rows: the batch row of each state [states].
        per_pass: seeds per backward pass (None: :func:`resolve_directions_per_pass`'s default).
            The result does not depend on it beyond floating-point rounding.
        keep_graph: keep the graph after the last pass (more pulls from it follow).

    Returns:
        One tensor per leaf, [states, rank, pos, ...]: the gradient of v_{s,r}^T outputs_s with
        respect to that leaf's row(s).
    """
    n_states, rank, d_out = vectors.shape
    rows = rows.to(torch.long).cpu()
    slots = _slots(rows)
    n_slots = int(slots.max()) + 1
    vectors = vectors.detach().to(outputs.dtype)
    # seeds[slot, r, s] = v_{s,r} where s is in that slot, else 0.
    in_slot = torch.nn.functional.one_hot(slots, n_slots).T.to(vectors)  # [slots, states]
    seeds = torch.einsum("js,srd->jrsd", in_slot, vectors).reshape(n_slots * rank, n_states, d_out)
    embeddings = leaves[0]
    per_pass = resolve_directions_per_pass(embeddings.shape[:2].numel(), per_pass)
    all_grads = pull_back_seeds(outputs, leaves, seeds, per_pass, keep_graph=keep_graph)
    results = []
    for leaf, grads in zip(leaves, all_grads, strict=True):
        grads = grads.reshape(n_slots, rank, *leaf.shape)  # [slots, rank, batch, pos, ...]
        device_rows, device_slots = rows.to(grads.device), slots.to(grads.device)
        results.append(grads[device_slots, :, device_rows])  # [states, rank, pos, ...]
    check_finite(results[0])
    return results


def backward_passes(rows: Tensor, rank: int, n_tokens: int, per_pass: int | None = None) -> int:
    """How many backward passes :func:`pull_back` runs for `rank` directions per explained state
    (`rows`: each state's batch row) over `n_tokens` tokens (batch x positions)."""
    seeds = (int(_slots(rows.to(torch.long).cpu()).max()) + 1) * rank
    per_pass = resolve_directions_per_pass(n_tokens, per_pass)
    return -(-seeds // per_pass)


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
