"""Exact references, computed independently of the engine: full Jacobians through torch.func.

For checking any attribution path on a small model (the tests do so on tiny float64 models):
J[:, t, :] = dy/dx_t from :func:`exact_jacobian`, scores from :func:`scores_for`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import jacrev


def final_state_fn(model: Any, tokens: torch.Tensor, position: int):
    """y(x): the input to the unembedding at `position`, as a function of the token embeddings."""

    def fn(embeddings: torch.Tensor) -> torch.Tensor:
        captured = {}

        def replace(tensor, *, hook):
            return embeddings[None]

        def take(tensor, *, hook):
            captured["y"] = tensor[0, position]
            return tensor

        with model.hooks(fwd_hooks=[("hook_embed", replace), ("unembed.hook_in", take)]):
            model(tokens[None])
        return captured["y"]

    return fn


def embeddings_of(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    captured = {}

    def take(tensor, *, hook):
        captured["x"] = tensor[0].detach().clone()
        return tensor

    with torch.no_grad(), model.hooks(fwd_hooks=[("hook_embed", take)]):
        model(tokens[None])
    return captured["x"]


def exact_jacobian(model: Any, tokens: torch.Tensor, position: int):
    """(y [d_model], J [d_model, pos, d_model]) with J[:, t, :] = dy/dx_t."""
    x = embeddings_of(model, tokens)
    fn = final_state_fn(model, tokens, position)
    with torch.no_grad():
        y = fn(x)
    return y, jacrev(fn)(x)


def activation_of(model: Any, tokens: torch.Tensor, hook_name: str) -> torch.Tensor:
    """The activation at `hook_name` for one prompt [pos, ...], detached."""
    captured = {}

    def take(tensor, *, hook):
        captured["a"] = tensor[0].detach().clone()
        return tensor

    with torch.no_grad(), model.hooks(fwd_hooks=[(hook_name, take)]):
        model(tokens[None])
    return captured["a"]


def activation_jacobian(
    model: Any,
    tokens: torch.Tensor,
    position: int,
    hook_name: str,
    output_hook: str = "unembed.hook_in",
):
    """(out, J) with J[..., t, ...] = d out / d a_t, a the activation at `hook_name` (substituted
    by a hook, so everything downstream of it is a function of it alone) and out the activation
    at `output_hook` at `position` (default y)."""
    a = activation_of(model, tokens, hook_name)

    def fn(activation: torch.Tensor) -> torch.Tensor:
        captured = {}

        def replace(tensor, *, hook):
            return activation[None].reshape(tensor.shape)

        def take(tensor, *, hook):
            captured["out"] = tensor[0, position]
            return tensor

        with model.hooks(fwd_hooks=[(hook_name, replace), (output_hook, take)]):
            model(tokens[None])
        return captured["out"]

    with torch.no_grad():
        out = fn(a)
    return out, jacrev(fn)(a)


def fisher_eig(W_U: torch.Tensor, logits: torch.Tensor):
    """Eigenvalues (descending) and eigenvectors of F = W_U (diag p - p p^T) W_U^T, formed."""
    p = torch.softmax(logits.double(), dim=-1)
    W = W_U.double()
    F = W @ torch.diag(p) @ W.T - torch.outer(W @ p, W @ p)
    values, vectors = torch.linalg.eigh(F)
    return values.flip(0), vectors.flip(1)


def scores_for(J: torch.Tensor, vectors: torch.Tensor, weights: torch.Tensor | None = None):
    """sqrt(sum_r w_r ||v_r^T J_t||^2) for vectors [d_model, r]."""
    projected = torch.einsum("dr,dte->rte", vectors.double(), J.double())  # [r, pos, d_model]
    squared = projected.pow(2).sum(-1)
    if weights is None:
        weights = torch.ones(vectors.shape[1], dtype=torch.float64, device=vectors.device)
    return (weights[:, None] * squared).sum(0).sqrt()
