"""Fisher information of the next-token distribution in hidden space (paper eq. 5, appendix A.8-A.9).

Jacobian Scopes (arXiv 2601.16407) define F = W^T (diag p - p p^T) W in the paper's
[d_vocab, d_model] orientation. Here W_U is in TransformerLens' [d_model, d_vocab] orientation, so
F = W_U (diag p - p p^T) W_U^T, and, with w_i the i-th column of W_U and w_bar = W_U p,

    F = sum_i p_i (w_i - w_bar)(w_i - w_bar)^T = B B^T,   B = (W_U - w_bar 1^T) diag(sqrt(p)),

a p-weighted covariance of the unembedding columns. Fisher Scope needs its leading eigenvectors.
p is renormalised to sum to exactly 1 first, so F stays positive semi-definite under rounding.

Why not form F. Forming F costs d_vocab * d_model^2 flops and its eigendecomposition d_model^3:
seconds per explained prompt at LLaMA-3.2-1B shapes, far more than the forward pass it serves.
Plain Lanczos on the product F u = W_U (p * W_U^T u) - w_bar (w_bar^T u) is little better on a
CPU: every product streams all of W_U from memory for a handful of flops per byte, and it needs
dozens of products from a random start.

`fisher_directions` instead uses the structure of F, and reads W_U about once.

1. Split. For any centre c, sum_i p_i (w_i - c)(w_i - c)^T = F + delta delta^T with
   delta = w_bar - c, so F = G_head + G_tail + G_deep - delta delta^T, each G_X the
   p-weighted scatter of a set X of columns about c (positive semi-definite, ||G_X|| <= its
   trace). c is the head's mean. The head is the K largest p_i (as many as leave a tail of
   mass about sqrt(tol) lambda_1 / spread, at most max(4,096, d_vocab / 16), or d_vocab / 4
   on a second try when the tail proves too heavy), gathered once; the largest 64 are kept
   in float64. The deep tail is the smallest p_i whose shares, bounded
   by p_i (||w_i|| + ||c||)^2, add up to at most tol lambda_1 / 4: it is never read, only its
   column norms, which are computed once per W_U and remembered. The tail is the rest.

2. One pass. Block Krylov on the head alone (cheap) gives its leading eigenvectors, close
   to F's: the block V. One streaming pass over the tail's columns, in W_U's memory
   order, gives G_tail V, the tail's part of w_bar and its trace t; its cost grows with the
   width of V, so V holds only the wanted vectors and the next two. Then F = F~ + E, where F~ replaces G_tail by the part the pass saw,
   G - (1 - P) G (1 - P) (P the projector on V), and ||E|| <= t' + d: t' = t - trace(V^T G V)
   bounds what the pass did not see, d the deep tail (with its unread part of delta).

3. Krylov on F~. F~ is the head plus low-rank terms, so its products cost a fraction of a
   pass; block Krylov with full Rayleigh-Ritz from the head's rank + 4 leading vectors and
   two fixed pseudo-random guard vectors (each expanded at least once, in the head's search
   or here) gives Ritz pairs (theta_j, x_j) with residuals rho~_j.

4. Certificate. ||F x_j - theta_j x_j|| <= rho~_j + t' ||(1 - P) x_j|| + d, since the unseen
   part acts only outside V; the head's vectors are close to F's, so ||(1 - P) x_j|| is about
   t / gap and one pass leaves a residual of about t^2 / gap. Accepted when every wanted
   residual bound is <= tol theta_1 and, by Weyl (F <= F~ + (t' + d) I), nothing hidden in
   the unseen part can reach the wanted eigenvalues: theta_{rank+1} + t' + d <
   theta_rank - residual bound. Otherwise another pass shows G_tail what the answer still
   lacks (the Ritz vectors' parts outside V, and G_tail's next power on V, where an
   eigenvector the head cannot see grows) and 3-4 repeat, at most 6 passes.

So the residual and the tail's share of the ordering are certified; that the Krylov search
on F~ found F~'s leading eigenvalues is what every Krylov eigensolver assumes (a start block
orthogonal to a wanted eigenvector would miss it; the guards make that practically
impossible). A tail too heavy for the split (trace above lambda_1 / 10, e.g. a flat p) or a
certificate not met within 6 passes (a near-degenerate cluster) falls back to forming F on
the support of p, as the reference does: as slow, and as accurate. Columns with p_i = 0 add nothing to F
and are dropped first.

tol is 1e-5 for float32 inputs and 1e-10 for float64. Products with W_U run in its dtype (the
head's 64 largest p_i excepted); the small matrices (Gram, Rayleigh-Ritz, bases) and all
accumulations across chunks are float64. Rounding in W_U's dtype is bounded where the bounds
rest on it (the traces t and d are padded), and otherwise sets the floor of the certificate,
8 eps times the trace of the part of F multiplied in W_U's dtype.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from tlscopes._types import Probabilities, Unembedding
from tlscopes.fisher.krylov import _fix_signs
from tlscopes.fisher.solver import _fisher_directions_fast, _normalised

EigenPairs = tuple[Float[Tensor, "rank"], Float[Tensor, "d_model rank"]]

# How far sum(probs) may stray from 1: softmax in float32 over 10^5 tokens is off by ~1e-5;
# larger deviations mean the caller passed logits or an unnormalised vector.
_PROBABILITY_SUM_TOLERANCE = 1e-3


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def _check(W_U: Tensor, probs: Tensor, rank: int) -> None:
    if W_U.ndim != 2:
        raise ValueError(f"W_U must be [d_model, d_vocab], got shape {tuple(W_U.shape)}")
    if probs.ndim != 1 or probs.shape[0] != W_U.shape[1]:
        raise ValueError(
            f"probs must be [d_vocab] = [{W_U.shape[1]}] to match W_U {tuple(W_U.shape)}, "
            f"got shape {tuple(probs.shape)}; W_U is [d_model, d_vocab] (TransformerLens "
            "orientation), transpose a [d_vocab, d_model] lm_head weight"
        )
    if not W_U.is_floating_point() or not probs.is_floating_point():
        raise TypeError(f"W_U and probs must be floating point, got {W_U.dtype} and {probs.dtype}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= W_U.shape[0]:
        raise ValueError(f"rank must be an int between 1 and d_model={W_U.shape[0]}, got {rank!r}")
    if not bool(torch.isfinite(probs).all()):
        raise ValueError("probs contains NaN or infinite values; pass softmax(logits)")
    if bool((probs < 0).any()):
        raise ValueError(
            f"probs has negative entries (min {float(probs.min()):.3g}); pass softmax(logits), "
            "not logits or log-probabilities"
        )
    total = float(probs.sum(dtype=torch.float64))
    if abs(total - 1.0) > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            f"probs must sum to 1 (within {_PROBABILITY_SUM_TOLERANCE}), got {total:.6g}; "
            "pass softmax(logits) over the whole vocabulary"
        )


def fisher_matrix(W_U: Unembedding, probs: Probabilities) -> Float[Tensor, "d_model d_model"]:
    """Forms F = W_U (diag p - p p^T) W_U^T explicitly (paper eq. 5). Costs d_vocab * d_model^2.

    p is renormalised to sum to 1 first (as (1/s) W diag(p) W^T - w_bar w_bar^T with s = sum p
    and w_bar = W p / s): a softmax that sums to 1 - 1e-7 would otherwise add the indefinite
    term 1e-7 * w_bar w_bar^T, which swamps F when p is peaked.
    """
    _check(W_U, probs, 1)
    probs, total = _normalised(probs, W_U.dtype)
    w_bar = (W_U @ probs) / total
    return (W_U * probs) @ W_U.T / total - torch.outer(w_bar, w_bar)


def fisher_directions_exact(W_U: Unembedding, probs: Probabilities, rank: int = 1) -> EigenPairs:
    """Top eigenpairs of F by forming it and taking a dense symmetric eigendecomposition.

    The reference the matrix-free path is checked against. Eigenvalues descending; each
    vector's sign is fixed so that its largest-magnitude entry is positive.
    """
    _check(W_U, probs, rank)
    eigenvalues, vectors = torch.linalg.eigh(fisher_matrix(W_U, probs))
    eigenvalues = eigenvalues.flip(0)[:rank]
    vectors = vectors.flip(1)[:, :rank]
    return eigenvalues, _fix_signs(vectors)


def fisher_directions(W_U: Unembedding, probs: Probabilities, rank: int = 1) -> EigenPairs:
    """Top-`rank` eigenvalues (descending) and eigenvectors [d_model, rank] of the Fisher matrix.

    Matrix-free: F (paper eq. 5) is never formed; see the module docstring for the algorithm.

    Guarantee: every returned pair (theta_j, u_j) has ||F u_j - theta_j u_j|| <= tol theta_1,
    with tol = 1e-5 for float32 W_U and 1e-10 for float64 (or the rounding floor of products
    in W_U's dtype, 8 eps times the trace of the part of F they form, if larger). So some
    eigenvalue of F lies within tol theta_1 of theta_j, and u_j is within angle
    tol theta_1 / gap_j of its eigenvector, gap_j being the distance from that eigenvalue to
    the rest of the spectrum. That these are the top `rank` eigenvalues, in order, is
    certified for the part of F the method never multiplies (the tail: by Weyl, nothing
    hidden there reaches them), and for the rest rests on the block Krylov search, which
    starts from the head's leading vectors plus two fixed pseudo-random vectors and expands
    each at least once: it would miss a wanted eigenvector only if that start block were
    orthogonal to it. Inside a near-degenerate cluster only the Rayleigh quotient and the
    cluster's subspace are defined. Where the certificate cannot be met (a flat p, a cluster)
    F is formed instead (a block of W_U's columns at a time, so W_U is not copied), with the
    accuracy and the cost of `fisher_directions_exact`. Signs follow
    `fisher_directions_exact` (largest-magnitude entry positive). Costs one streaming pass
    over W_U's tail columns for most real next-token distributions; W_U is read in its own
    memory order and never copied (scripts/benchmark_fisher.py measures it). W_U and probs are
    read as constants: no gradient flows through the directions, and a W_U that requires grad
    records no graph.

    Args:
        W_U: unembedding in TransformerLens orientation [d_model, d_vocab].
        probs: next-token probabilities [d_vocab] (softmax of the logits at the explained
            position); must be non-negative, finite and sum to 1.
        rank: how many leading eigenpairs to return, 1 <= rank <= d_model.

    Returns:
        Eigenvalues [rank], descending, and unit eigenvectors [d_model, rank] in W_U's dtype.

    Raises:
        ValueError: on mismatched shapes, an out-of-range rank, invalid probabilities, or
            non-finite W_U columns where probs > 0.
    """
    _check(W_U, probs, rank)
    W_U, probs = W_U.detach(), probs.detach()
    return _fisher_directions_fast(W_U, probs, rank, _tolerance(W_U.dtype))
