"""Small dense linear algebra for the Fisher solver: block Krylov iteration on the matrix-free
product, Gram eigenpairs of the head, guard vectors, sign convention (for :mod:`tlscopes.fisher.directions`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

_MAX_STEPS = 60
# Pseudo-random guard vectors in every start block.
_GUARDS = 2

EigenPairs = tuple[Float[Tensor, "rank"], Float[Tensor, "d_model rank"]]


def _orthonormal_complement(vectors: Tensor, basis: Tensor | None) -> Tensor:
    """An orthonormal basis of span(vectors) with span(basis) projected out (float64).

    Two rounds of projection and Gram-matrix orthonormalisation; directions that vanish in the
    projection (already in the basis, or dependent) are dropped, so it may return fewer columns.
    """
    scale = float(vectors.norm(dim=0).max()) if vectors.numel() else 0.0
    for threshold in (1e-20 * scale**2, 0.25):
        if basis is not None and basis.shape[1]:
            vectors = vectors - basis @ (basis.T @ vectors)
        gram_values, gram_vectors = torch.linalg.eigh(vectors.T @ vectors)
        keep = gram_values > threshold
        vectors = vectors @ (gram_vectors[:, keep] / gram_values[keep].sqrt())
    return vectors


def _block_krylov(
    apply: Callable[[Tensor], Tensor],
    basis: Tensor,
    rank: int,
    block: int,
    tolerance: float,
    min_steps: int = 1,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Leading eigenpairs of the operator `apply` (F~) by block Krylov with Rayleigh-Ritz.

    Starts from an orthonormal `basis`; each step adds the residuals of the top `block` Ritz
    pairs (their span is one more block-Krylov power) and keeps the operator times the basis,
    so Ritz vectors, their images and residuals cost no extra product. It takes at least
    `min_steps` steps (one expands every start vector, the guards among them) and stops when
    the `rank` wanted residuals are below tolerance / 4 of the top Ritz value.

    Returns all Ritz values of the final basis (descending), the top `block` Ritz vectors and
    their residual norms; None if it does not converge within _MAX_STEPS steps.
    """
    d_model = basis.shape[0]
    block = min(block, d_model)
    max_basis = max(6 * block, 48)
    images = apply(basis)
    for step in range(_MAX_STEPS + 1):
        projected = basis.T @ images
        ritz_values, coordinates = torch.linalg.eigh((projected + projected.T) / 2)
        ritz_values, coordinates = ritz_values.flip(0), coordinates.flip(1)
        wanted = coordinates[:, :block]
        ritz_vectors, ritz_images = basis @ wanted, images @ wanted
        residuals = (ritz_images - ritz_vectors * ritz_values[: wanted.shape[1]]).norm(dim=0)
        top = max(float(ritz_values[0]), torch.finfo(torch.float64).tiny)
        small = float(residuals[:rank].max()) <= tolerance * top / 4
        if (small and step >= min_steps) or basis.shape[1] >= d_model:
            return ritz_values, ritz_vectors, residuals
        if step == _MAX_STEPS:
            return None
        if basis.shape[1] + block > max_basis:
            # Thick restart on the leading Ritz vectors; their images come for free.
            keep = coordinates[:, : 2 * block]
            basis, images = basis @ keep, images @ keep
        residual_vectors = ritz_images - ritz_vectors * ritz_values[: wanted.shape[1]]
        new = _orthonormal_complement(residual_vectors, basis)[:, : d_model - basis.shape[1]]
        if new.shape[1] == 0:
            return ritz_values, ritz_vectors, residuals  # an invariant subspace: exact pairs
        basis = torch.cat([basis, new], dim=1)
        images = torch.cat([images, apply(new)], dim=1)
    return None


def _gram_eigenpairs(
    B: Float[Tensor, "d_model k"], count: int
) -> tuple[Float[Tensor, "count"], Float[Tensor, "d_model count"]]:
    """Leading `count` eigenpairs of B B^T (float64), from the k x k Gram matrix when k is the
    smaller side. Eigenvalues descending, zero past the rank; vectors orthonormal."""
    d_model = B.shape[0]
    if B.shape[1] < d_model:
        # Eigenvectors of B B^T are B s / sqrt(mu) for the Gram matrix's eigenpairs (mu, s).
        gram_values, gram_vectors = torch.linalg.eigh(B.T @ B)
        values = gram_values.flip(0)[:count].clamp_min(0)
        vectors = B @ gram_vectors.flip(1)[:, :count]
        vectors = vectors / vectors.norm(dim=0).clamp_min(torch.finfo(B.dtype).tiny)
    else:
        values, vectors = torch.linalg.eigh(B @ B.T)
        values, vectors = values.flip(0)[:count].clamp_min(0), vectors.flip(1)[:, :count]
    missing = count - values.numel()
    values = torch.cat([values, values.new_zeros(missing)])
    vectors = torch.cat([vectors, vectors.new_zeros(d_model, missing)], dim=1)
    # Directions with (near-)zero eigenvalue are noise; QR keeps the leading columns and
    # completes the rest to an orthonormal set.
    vectors, _ = torch.linalg.qr(vectors)
    return values, vectors


def _guard_vectors(like: Tensor) -> Tensor:
    # Fixed pseudo-random vectors join every start block and are expanded like the rest, so
    # that a head blind to some direction of F cannot hide it from the search. Seeded, so
    # results are reproducible and the global random state is untouched.
    generator = torch.Generator(device=like.device).manual_seed(0)
    shape = (like.shape[0], _GUARDS)
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=like.device)


def _finish(values: Tensor, vectors: Tensor, dtype: torch.dtype) -> EigenPairs:
    return values.to(dtype), _fix_signs(vectors).to(dtype)


def _fix_signs(vectors: Float[Tensor, "d_model rank"]) -> Float[Tensor, "d_model rank"]:
    # An eigenvector is defined up to sign; scores use |u^T J| so the sign never matters for
    # attribution, but a fixed convention makes results reproducible and comparable.
    index = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors.gather(0, index[None, :]))
    signs[signs == 0] = 1
    return vectors * signs
