"""Fisher information of the next-token distribution in hidden space (paper eq. 5, appendix A.8-A.9).

F = W_U^T (diag p - p p^T) W_U in the paper's [d_vocab, d_model] orientation. Here W_U is in
TransformerLens' [d_model, d_vocab] orientation, so F = W_U (diag p - p p^T) W_U^T, and, with
w_i the i-th column of W_U and w_bar = W_U p,

    F = sum_i p_i (w_i - w_bar)(w_i - w_bar)^T,

a p-weighted covariance of the unembedding columns.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from tlscopes._types import Probabilities, Unembedding


def _check(W_U: Tensor, probs: Tensor, rank: int) -> None:
    if W_U.ndim != 2:
        raise ValueError(f"W_U must be [d_model, d_vocab], got shape {tuple(W_U.shape)}")
    if probs.ndim != 1 or probs.shape[0] != W_U.shape[1]:
        raise ValueError(
            f"probs must be [d_vocab] = [{W_U.shape[1]}] to match W_U {tuple(W_U.shape)}, "
            f"got shape {tuple(probs.shape)}"
        )
    if not 1 <= rank <= W_U.shape[0]:
        raise ValueError(f"rank must be between 1 and d_model={W_U.shape[0]}, got {rank}")


def fisher_matrix(W_U: Unembedding, probs: Probabilities) -> Float[Tensor, "d_model d_model"]:
    """Forms F = W_U (diag p - p p^T) W_U^T explicitly (paper eq. 5). Costs d_vocab * d_model^2."""
    _check(W_U, probs, 1)
    probs = probs.to(W_U.dtype)
    w_bar = W_U @ probs
    return (W_U * probs) @ W_U.T - torch.outer(w_bar, w_bar)


def fisher_directions_exact(
    W_U: Unembedding, probs: Probabilities, rank: int = 1
) -> tuple[Float[Tensor, "rank"], Float[Tensor, "d_model rank"]]:
    """Top eigenpairs of F by forming it and taking a dense symmetric eigendecomposition.

    The reference the matrix-free path is checked against. Eigenvalues descending; each
    vector's sign is fixed so that its largest-magnitude entry is positive.
    """
    _check(W_U, probs, rank)
    eigenvalues, vectors = torch.linalg.eigh(fisher_matrix(W_U, probs))
    eigenvalues = eigenvalues.flip(0)[:rank]
    vectors = vectors.flip(1)[:, :rank]
    return eigenvalues, _fix_signs(vectors)


def _fix_signs(vectors: Float[Tensor, "d_model rank"]) -> Float[Tensor, "d_model rank"]:
    # An eigenvector is defined up to sign; scores use |u^T J| so the sign never matters for
    # attribution, but a fixed convention makes results reproducible and comparable.
    index = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors.gather(0, index[None, :]))
    signs[signs == 0] = 1
    return vectors * signs


def fisher_directions(
    W_U: Unembedding, probs: Probabilities, rank: int = 1
) -> tuple[Float[Tensor, "rank"], Float[Tensor, "d_model rank"]]:
    """Top-`rank` eigenvalues (descending) and eigenvectors [d_model, rank] of the Fisher matrix.

    Args:
        W_U: unembedding in TransformerLens orientation [d_model, d_vocab].
        probs: next-token probabilities [d_vocab] (softmax of the logits at the explained position).
        rank: how many leading eigenpairs to return.
    """
    return fisher_directions_exact(W_U, probs, rank)
