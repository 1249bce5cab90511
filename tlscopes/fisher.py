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

`fisher_directions` instead uses the structure of F.

1. Concentration. Next-token distributions put most of their mass on a few tokens, and a
   column's share of F is p_i ||w_i - w_bar||^2. Splitting the vocabulary into a head H (the
   highest-p tokens) and the tail T gives F = F_H + F_T with both parts positive semi-definite,
   and ||F_T|| <= trace(F_T) = t = sum_T p_i ||w_i - w_bar||^2, which needs the column norms
   and w_bar = W_U p (both taken in the pass of step 2's first product) but no product with F
   of its own. The head's eigenpairs
   (mu_j, v_j) come from the small k x k Gram matrix B_H^T B_H (k <= 512 << d_vocab), in
   float64. Weyl's inequality gives mu_j <= lambda_j <= mu_j + t, the residual of v_j is
   ||F v_j - mu_j v_j|| = ||F_T v_j|| <= t, and Davis-Kahan gives
   sin angle(v_j, u_j) <= t / (gap_j - t). When t <= tol * mu_1 (growing the head if the tail
   estimate says a larger one would do) the head answer is returned after that single pass,
   provably exact to the tolerance: t is padded by the rounding of its inputs so that it stays
   an upper bound. This decides very peaked distributions. The column norms cost a few ms in
   that pass, so they are taken only when the tail beyond the 512 largest p_i, times a typical
   ||w_i - w_bar||^2 of the head, comes within 10x of tol * mu_1 (a guess that only decides
   whether the certificate is tried; real next-token distributions rarely get that close).

2. Warm-started block Krylov. Real distributions mostly carry a few percent of their mass in a
   long tail, too much for that bound but little enough that the head's leading vectors are
   close to F's. They, plus one fixed pseudo-random vector (so that no direction the head misses
   can hide from the search), start a block Krylov method with full Rayleigh-Ritz. Each step
   applies F to a block of b = rank + 4 vectors (the residuals of the top Ritz pairs) in one
   streaming pass over W_U, chunk by chunk so that both products on a chunk reuse it from
   cache: matrix-matrix work instead of 2b matrix-vector passes. From the head's start the
   residual falls 20-50x per step, so real distributions take 2-4 steps; the first step's pass
   also yields w_bar. It stops when every wanted Ritz pair (theta_j, x_j) has
   ||F x_j - theta_j x_j|| <= max(tol * theta_1, 8 eps (theta_1 + ||w_bar||^2)), the second
   term being what products in W_U's dtype can resolve. That is the same certificate as in 1:
   an eigenvalue lies within the residual of theta_j (and theta_j <= lambda_j by interlacing),
   and sin angle(x_j, u_j) <= residual / gap_j. Unlike 1 it cannot prove that this eigenvalue
   is the j-th (a direction orthogonal to the whole search space would go unseen); the start
   vectors make that practically impossible, as in any Krylov eigensolver.

Nearly degenerate spectra (a flat p over many tokens: the top eigenvalues of F crowd at the
Marchenko-Pastur edge) converge slowly, and a single eigenvector is ill-defined there anyway;
the residual still pins the Rayleigh quotient and the cluster's invariant subspace. So after
about the flops of forming F the search stops and accepts a residual of 1e-4 * theta_1, and
only past that falls back to forming F on the support of p. Columns with p_i = 0 add nothing
to F and are dropped first, so a p on a few hundred tokens is solved exactly by the Gram matrix.

tol is 1e-5 for float32 inputs and 1e-10 for float64. Products with W_U run in its dtype; the
small matrices (Gram, Rayleigh-Ritz, bases) and all accumulations across chunks are float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from tlscopes._types import Probabilities, Unembedding

EigenPairs = tuple[Float[Tensor, "rank"], Float[Tensor, "d_model rank"]]

# How far sum(probs) may stray from 1: softmax in float32 over 10^5 tokens is off by ~1e-5;
# larger deviations mean the caller passed logits or an unnormalised vector.
_PROBABILITY_SUM_TOLERANCE = 1e-3
# Columns of W_U per chunk of a streaming pass: 2048 columns of a 2048-row float32 W_U are
# 16 MiB, small enough to stay in a server CPU's last-level cache between the two products.
_CHUNK_COLUMNS = 2048
# The head starts at this many tokens and may grow to the maximum when the tail bound says a
# larger head would be certified; the Gram matrix's eigendecomposition is k^3, so k stays small.
_HEAD_SIZE = 128
_MAX_HEAD_SIZE = 512
# Extra Ritz vectors carried beyond `rank`: they widen the block so a product costs one
# matrix-matrix pass, and separate the wanted eigenvalues from the rest of the spectrum.
_OVERSAMPLE = 4
_MAX_STEPS = 60
# Tail mass beyond the largest head above which the head certificate is never tried (see the
# module docstring), sparing the column norms in the first pass over W_U.
_LIGHT_TAIL = 1e-2
_LOOSE_TOLERANCE = 1e-4


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


def _normalised(probs: Tensor, dtype: torch.dtype) -> tuple[Tensor, float]:
    """probs / sum(probs) in `dtype`, and the float64 sum of that, which rounding keeps from 1."""
    probs = (probs.double() / probs.sum(dtype=torch.float64)).to(dtype)
    return probs, float(probs.sum(dtype=torch.float64))


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


def _fix_signs(vectors: Float[Tensor, "d_model rank"]) -> Float[Tensor, "d_model rank"]:
    # An eigenvector is defined up to sign; scores use |u^T J| so the sign never matters for
    # attribution, but a fixed convention makes results reproducible and comparable.
    index = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors.gather(0, index[None, :]))
    signs[signs == 0] = 1
    return vectors * signs


def fisher_directions(W_U: Unembedding, probs: Probabilities, rank: int = 1) -> EigenPairs:
    """Top-`rank` eigenvalues (descending) and eigenvectors [d_model, rank] of the Fisher matrix.

    Matrix-free: F (paper eq. 5) is never formed; see the module docstring for the algorithm.
    Each returned pair (lambda, u) has residual ||F u - lambda u|| <= tol * lambda_1, with
    tol = 1e-5 for float32 inputs and 1e-10 for float64 (or the dtype's rounding floor, if
    larger). So each eigenvalue is within tol * lambda_1 of an exact one, and u is within angle
    tol * lambda_1 / gap of its exact eigenvector, gap being the distance from lambda to the
    rest of the spectrum; inside a near-degenerate cluster only the Rayleigh quotient and the
    cluster's subspace are defined (a flat p may only reach 1e-4, and is slower). Signs follow
    `fisher_directions_exact` (largest-magnitude entry positive). Costs 3-5 streaming passes
    over W_U for real next-token distributions (scripts/benchmark_fisher.py measures it).

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
    return _fisher_directions_fast(W_U, probs, rank, _tolerance(W_U.dtype))


def _fisher_directions_fast(W_U: Tensor, probs: Tensor, rank: int, tolerance: float) -> EigenPairs:
    """The algorithm of the module docstring, for validated inputs."""
    probs, total = _normalised(probs, W_U.dtype)
    W, p = _restrict_to_support(W_U, probs)
    order = torch.argsort(p, descending=True)
    leading = order[:_MAX_HEAD_SIZE]
    weights = p.double() / total
    # The largest p_i are summed in float64: for a peaked p, w_bar is close to the top token's
    # column and F is a small difference, so their rounding would dominate the tail bound.
    leading_columns = _columns(W, leading).double()
    leading_sum = leading_columns @ weights[leading]
    rest = p.clone()
    rest[leading] = 0
    count = min(rank + _OVERSAMPLE, W.shape[0])

    # The warm start is centred on the head's own mean (w_bar is not known yet). One pass over
    # W then gives F's second moment times the start, the rest of w_bar, and, where the tail is
    # light enough for the head certificate to be worth trying, the column norms it needs.
    centre = leading_sum / weights[leading].sum()
    head_values, vectors = _head_eigenpairs(W, weights, centre, order[:_HEAD_SIZE], count)
    basis = _starting_basis(vectors)
    try_head = _head_may_certify(
        leading_columns, weights[leading], centre, float(head_values[0]), tolerance
    )
    second_moment, rest_sum, column_norms = _second_moment_times(
        W, p, basis, rest, column_norms=try_head
    )
    rest_sum = rest_sum / total
    problem = _Problem(W, p, total, weights, order, leading_sum + rest_sum, rest_sum)
    _check_finite(problem.w_bar, second_moment)
    if column_norms is not None:
        _check_finite(column_norms)
        certified = _certified_head(problem, column_norms, count, tolerance)
        if certified is not None:
            # Weyl: mu_j <= lambda_j <= mu_j + t; every head vector's residual is <= t.
            return _finish(certified[0][:rank], certified[1][:, :rank], W_U.dtype)
    images = second_moment / total - torch.outer(problem.w_bar, problem.w_bar @ basis)

    result = _block_krylov(problem, basis, images, rank, tolerance)
    if result is None:
        # As slow as the reference, and as exact: reached only when Krylov has spent about
        # what forming F costs without converging.
        second_moment = (W * p) @ W.T / total
        w_bar = problem.w_bar.to(W.dtype)
        values, vectors = torch.linalg.eigh(second_moment - torch.outer(w_bar, w_bar))
        result = values.flip(0)[:rank], vectors.flip(1)[:, :rank]
    return _finish(*result, W_U.dtype)


def _head_may_certify(
    leading_columns: Tensor, leading_weights: Tensor, centre: Tensor, top: float, tolerance: float
) -> bool:
    """Whether the head certificate is worth its column norms (speed only, never correctness).

    The tail beyond the largest head holds mass m; its trace is about m times a typical
    ||w_i - w_bar||^2, estimated from the head's columns. The certificate needs that trace
    below tolerance * lambda_1, so it is tried only when the estimate is within 10x of it.
    """
    tail_mass = max(1 - float(leading_weights.sum()), 0.0)
    if tail_mass > _LIGHT_TAIL:
        return False
    spread = (leading_columns - centre[:, None]).square().sum(dim=0)
    return tail_mass * float(spread.median()) <= 10 * tolerance * top


def _certified_head(
    problem: _Problem, column_norms: Tensor, count: int, tolerance: float
) -> tuple[Tensor, Tensor] | None:
    """The head's eigenpairs (F_H with the exact w_bar) if the tail trace certifies them.

    Starts from the _HEAD_SIZE largest p_i and grows the head while the tail estimate says a
    larger one (at most _MAX_HEAD_SIZE) would pass; None when none does.
    """
    head_size = min(problem.p.numel(), _HEAD_SIZE)
    while True:
        head = problem.order[:head_size]
        values, vectors = _head_eigenpairs(problem.W, problem.weights, problem.w_bar, head, count)
        if _tail_trace(problem, column_norms, head_size) <= tolerance * float(values[0]):
            return values, vectors
        grown = _grown_head_size(problem, column_norms, tolerance * float(values[0]) / 2)
        if grown <= head_size or grown > _MAX_HEAD_SIZE:
            return None
        head_size = grown


def _finish(values: Tensor, vectors: Tensor, dtype: torch.dtype) -> EigenPairs:
    return values.to(dtype), _fix_signs(vectors).to(dtype)


def _check_finite(*tensors: Tensor) -> None:
    if not all(bool(torch.isfinite(tensor).all()) for tensor in tensors):
        raise ValueError("W_U has NaN or infinite entries in columns where probs > 0")


def _chunks(length: int) -> list[slice]:
    starts = range(0, length, _CHUNK_COLUMNS)
    return [slice(start, min(start + _CHUNK_COLUMNS, length)) for start in starts]


@dataclass(frozen=True)
class _Problem:
    """F = (1/s) W diag(p) W^T - w_bar w_bar^T on the support of p (zero columns add nothing)."""

    W: Float[Tensor, "d_model support"]  # W_U's columns with p_i > 0, W_U's dtype
    p: Float[Tensor, "support"]  # normalised probabilities in W_U's dtype, for the products
    total: float  # s = sum(p) in float64; rounding keeps it from exactly 1
    weights: Float[Tensor, "support"]  # p / s in float64: the weights F is defined with
    order: Tensor  # support indices by descending p
    w_bar: Float[Tensor, "d_model"]  # W p / s in float64
    # The part of w_bar from all but the _MAX_HEAD_SIZE largest p_i, summed directly (not as
    # w_bar minus the head) so that a light tail's sum keeps its relative precision.
    rest_sum: Float[Tensor, "d_model"]


def _columns(W: Tensor, index: Tensor) -> Tensor:
    """W[:, index] as a new tensor. `index_select` on dim 1 of a strided view is ~30x slower
    than a row gather on W^T (columns contiguous, an lm_head weight transposed) or `gather`."""
    if W.stride(0) == 1:
        return W.T.index_select(0, index).T
    return torch.gather(W, 1, index.expand(W.shape[0], -1))


def _restrict_to_support(W_U: Tensor, probs: Tensor) -> tuple[Tensor, Tensor]:
    """Drops the columns with p_i = 0; a view, not a copy, when the rest are contiguous."""
    support = torch.nonzero(probs > 0).squeeze(1)
    count = support.numel()
    if count == probs.numel():
        return W_U, probs
    first, last = int(support[0]), int(support[-1])
    if last - first + 1 == count:
        return W_U[:, first : last + 1], probs[first : last + 1]
    if 4 * count > 3 * probs.numel():
        # Copying nearly all of W_U costs more than multiplying its few zero-weight columns.
        return W_U, probs
    return _columns(W_U, support), probs[support]


def _head_eigenpairs(
    W: Tensor, weights: Tensor, centre: Tensor, head: Tensor, count: int
) -> tuple[Float[Tensor, "count"], Float[Tensor, "d_model count"]]:
    """Leading `count` eigenpairs of B_H B_H^T, B_H = (W_H - centre) diag(sqrt(p_H)), float64.

    With centre = w_bar this is F_H. Eigenvalues descending, zero past the rank of F_H;
    vectors orthonormal (arbitrary where the eigenvalue is zero).
    """
    d_model = W.shape[0]
    B = (_columns(W, head).double() - centre[:, None]) * weights[head].sqrt()
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


def _tail_trace(problem: _Problem, column_norms: Tensor, head_size: int) -> float:
    """t = trace(F_T) = sum over the tail of p_i ||w_i - w_bar||^2 >= ||F_T||, for the head of
    the `head_size` largest p_i (at most _MAX_HEAD_SIZE).

    Expanded as sum_T p_i ||w_i||^2 - 2 w_bar^T (sum_T p_i w_i) + (sum_T p_i) ||w_bar||^2, it
    needs the column norms but no pass over W.
    """
    weights, order = problem.weights, problem.order
    in_tail = torch.ones_like(weights, dtype=torch.bool)
    in_tail[order[:head_size]] = False
    tail_norms = float((weights * column_norms)[in_tail].sum())
    tail_mass = float(weights[in_tail].sum())
    between = order[head_size:_MAX_HEAD_SIZE]
    tail_sum = problem.rest_sum + _columns(problem.W, between).double() @ weights[between]
    w_bar = problem.w_bar
    mean_norm, cross = float(w_bar @ w_bar), float(w_bar @ tail_sum)
    trace = tail_norms - 2 * cross + tail_mass * mean_norm
    # Pad by the rounding of the inputs so that the bound stays an upper bound. A column norm
    # is a sum of d_model squares in W's dtype: relative error <= (d_model + 1) eps. The rest
    # of w_bar is a chunked product in W's dtype: error delta <= chunk eps sum_T p_i ||w_i||,
    # which is <= chunk eps sqrt(tail_mass tail_norms); it enters the cross term, and F
    # differs from F_H + F_T by -delta delta^T. The float64 sums add 4 eps64 of their terms.
    eps = torch.finfo(problem.W.dtype).eps
    delta = _CHUNK_COLUMNS * eps * math.sqrt(max(tail_mass * tail_norms, 0.0))
    slack = (
        (problem.W.shape[0] + 1) * eps * tail_norms
        + 2 * math.sqrt(mean_norm) * delta
        + delta**2
        + 4 * torch.finfo(torch.float64).eps * (tail_norms + 2 * abs(cross) + tail_mass * mean_norm)
    )
    return max(trace, 0.0) + slack


def _grown_head_size(problem: _Problem, column_norms: Tensor, target: float) -> int:
    """Smallest head whose tail trace, estimated by p_i (||w_i||^2 + ||w_bar||^2), is <= target.

    Returns a size past _MAX_HEAD_SIZE when no head that small would do.
    """
    limit = min(problem.weights.numel(), _MAX_HEAD_SIZE)
    share = problem.weights * (column_norms + float(problem.w_bar @ problem.w_bar))
    remaining = float(share.sum()) - torch.cumsum(share[problem.order[:limit]], 0)
    small_enough = torch.nonzero(remaining <= target).squeeze(1)
    return int(small_enough[0]) + 1 if small_enough.numel() else _MAX_HEAD_SIZE + 1


def _second_moment_times(
    W: Tensor,
    p: Tensor,
    U: Tensor,
    extra: Tensor | None = None,
    *,
    column_norms: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """W (p * (W^T U)) for a float64 block U [d_model, b], in one pass over W.

    In the same pass, optionally: W extra (a weighted sum of the columns) and ||w_i||^2 for
    every column. Products run chunk by chunk, so each chunk of W is read from memory once and
    reused from cache; the small dimension b leads (U^T W), the shape BLAS handles best.
    Products are in W's dtype, accumulated over chunks in float64.

    Returns:
        The product [d_model, b], W extra [d_model] (or None) and the column norms [support]
        (or None), all float64.
    """
    U_t = U.T.to(W.dtype).contiguous()
    rows = U.shape[1] + (extra is not None)
    result = torch.zeros(rows, W.shape[0], dtype=torch.float64, device=W.device)
    norms = None
    if column_norms:
        norms = torch.empty(W.shape[1], dtype=torch.float64, device=W.device)
    for chunk in _chunks(W.shape[1]):
        block = W[:, chunk]
        weighted = (U_t @ block).mul_(p[chunk])
        if extra is not None:
            weighted = torch.cat([weighted, extra[None, chunk]])
        result += (weighted @ block.T).double()
        if norms is not None:
            norms[chunk] = block.square().sum(dim=0).double()
    if extra is None:
        return result.T, None, norms
    return result[:-1].T, result[-1], norms


def _apply_fisher(problem: _Problem, U: Tensor) -> Tensor:
    """F U = W (p * (W^T U)) / s - w_bar (w_bar^T U), one pass over W."""
    second_moment, _, _ = _second_moment_times(problem.W, problem.p, U)
    return second_moment / problem.total - torch.outer(problem.w_bar, problem.w_bar @ U)


def _starting_basis(vectors: Tensor) -> Tensor:
    # One fixed pseudo-random vector joins the head's: a head blind to some direction of F
    # cannot then hide it from the Krylov space. Seeded, so results are reproducible.
    generator = torch.Generator(device=vectors.device).manual_seed(0)
    shape = (vectors.shape[0], 1)
    guard = torch.randn(shape, generator=generator, dtype=torch.float64, device=vectors.device)
    return _orthonormal_complement(torch.cat([vectors, guard], dim=1), None)


def _orthonormal_complement(vectors: Tensor, basis: Tensor | None) -> Tensor:
    """An orthonormal basis of span(vectors) with span(basis) projected out (float64).

    Two rounds of projection and Gram-matrix orthonormalisation; directions that vanish in the
    projection (already in the basis, or dependent) are dropped, so it may return fewer columns.
    """
    scale = float(vectors.norm(dim=0).max()) if vectors.numel() else 0.0
    for threshold in (1e-20 * scale**2, 0.25):
        if basis is not None:
            vectors = vectors - basis @ (basis.T @ vectors)
        gram_values, gram_vectors = torch.linalg.eigh(vectors.T @ vectors)
        keep = gram_values > threshold
        vectors = vectors @ (gram_vectors[:, keep] / gram_values[keep].sqrt())
    return vectors


def _block_krylov(
    problem: _Problem, basis: Tensor, images: Tensor, rank: int, tolerance: float
) -> tuple[Tensor, Tensor] | None:
    """Leading `rank` eigenpairs of F by block Krylov with Rayleigh-Ritz.

    Starts from an orthonormal `basis` [d_model, b + 1] and `images` = F basis. Each step adds
    the residuals of the current top-b Ritz pairs to the basis (their span is one more
    block-Krylov power) and keeps F times the basis, so Ritz vectors, their images and
    residuals cost no extra product. Returns None if it does not converge within about the
    flops of forming F.
    """
    d_model, block = basis.shape[0], basis.shape[1] - 1
    max_basis = max(8 * block, 64)
    # A step costs 4 * support * d_model * block flops, forming F support * d_model^2.
    max_steps = max(16, min(_MAX_STEPS, d_model // (4 * block)))
    # Products in W's dtype cannot resolve residuals much below eps * ||W diag(p) W^T / s||,
    # and that norm is at most lambda_1 + ||w_bar||^2.
    eps = torch.finfo(problem.W.dtype).eps
    mean_norm = float(problem.w_bar @ problem.w_bar)
    for step in range(max_steps + 1):
        projected = basis.T @ images
        ritz_values, coordinates = torch.linalg.eigh((projected + projected.T) / 2)
        ritz_values, coordinates = ritz_values.flip(0), coordinates.flip(1)
        wanted = coordinates[:, :block]
        ritz_vectors, ritz_images = basis @ wanted, images @ wanted
        residuals = ritz_images - ritz_vectors * ritz_values[:block]
        largest_residual = float(residuals[:, :rank].norm(dim=0).max())
        top = max(float(ritz_values[0]), torch.finfo(torch.float64).tiny)
        threshold = max(tolerance * top, 8 * eps * (top + mean_norm))
        converged = largest_residual <= threshold
        if converged or basis.shape[1] >= d_model or step == max_steps:
            break
        if basis.shape[1] + block > max_basis and max_basis < d_model:
            # Thick restart on the leading Ritz vectors; their images come for free.
            keep = coordinates[:, : 2 * block]
            basis, images = basis @ keep, images @ keep
        new = _orthonormal_complement(residuals, basis)[:, : d_model - basis.shape[1]]
        if new.shape[1] == 0:
            break  # the basis spans an invariant subspace: Ritz pairs are exact
        basis = torch.cat([basis, new], dim=1)
        images = torch.cat([images, _apply_fisher(problem, new)], dim=1)
    if step == max_steps and largest_residual > _LOOSE_TOLERANCE * top:
        return None
    return ritz_values[:rank], ritz_vectors[:, :rank]
