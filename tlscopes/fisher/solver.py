"""The matrix-free Fisher solver behind :func:`tlscopes.fisher.directions.fisher_directions`: the head /
tail split of F, its certificate, the streaming passes over W_U (the algorithm is described in
:mod:`tlscopes.fisher.directions`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor

from tlscopes.fisher.krylov import (
    _GUARDS,
    _block_krylov,
    _finish,
    _gram_eigenpairs,
    _guard_vectors,
    _orthonormal_complement,
)
from tlscopes.fisher.streaming import column_norms, columns_of, rows_sandwich, tail_pass

EigenPairs = tuple[Float[Tensor, "rank"], Float[Tensor, "d_model rank"]]

# The head is the largest p_i, at least _MIN_HEAD of them and at most 1/_HEAD_FRACTION of the
# vocabulary (its products cost that share of a pass); the top _GRAM_HEAD of it are kept in
# float64 and give the start vectors through their Gram matrix (k^3, so k stays small).
_MIN_HEAD = 4096
_HEAD_FRACTION = 16
_HEAVY_HEAD_FRACTION = 4
# A tail whose trace exceeds the head's top eigenvalue (a flat p) is not retried, and one
# estimated (mass x spread) at over _FLAT_TAIL times it is not even taken a pass over.
_RETRY_LIMIT = 1.0
_FLAT_TAIL = 10.0
_GRAM_HEAD = 64
# The tail left beyond the head: its trace is aimed at _ONE_PASS sqrt(tol) lambda_1, so that
# one pass certifies; a tail trace above _HEAVY_TAIL lambda_1 makes the split not pay.
_ONE_PASS = 0.5
_HEAVY_TAIL = 0.1
# Extra Ritz vectors carried beyond `rank`, and pseudo-random guard vectors in every start.
_OVERSAMPLE = 4
_MAX_PASSES = 6
# Columns of W_U per product in the dense fallback (8,192 x 640 float32: 20 MiB).
_FALLBACK_COLUMNS = 8192
# The deep tail's share of F may reach this fraction of tolerance * lambda_1.
_DEEP_TAIL = 0.25
# How closely the head's own eigenvectors are found before the first pass (relative).
_START_TOLERANCE = 1e-3


def _check_finite(*tensors: Tensor) -> None:
    if not all(bool(torch.isfinite(tensor).all()) for tensor in tensors):
        raise ValueError("W_U has NaN or infinite entries in columns where probs > 0")


@dataclass
class _Problem:
    """F = G_head + G_tail - delta delta^T, with G_X = sum_X p_i (w_i - c)(w_i - c)^T and
    delta = w_bar - c (module docstring, step 1); all float64 unless noted.

    G_head is applied exactly from its gathered columns; G_tail only through the products
    G_tail V that passes over W have taken, and is bounded elsewhere by the trace of what no
    pass has seen.
    """

    W: Float[Tensor, "d_model support"]  # W's dtype
    tail: Tensor  # indices of the tail's columns (ascending), read by each pass
    tail_p: Float[Tensor, "tail"]  # their p_i in W's dtype (unnormalised: sum(p) = total)
    total: float
    centre: Float[Tensor, "d_model"]  # c, exactly representable in W's dtype
    top: Float[Tensor, "d_model top"]  # (w_i - c) sqrt(p_i) for the largest p_i
    rest: Float[Tensor, "others d_model"]  # the same for the rest of the head, W's dtype, rows
    delta: Float[Tensor, "d_model"]
    tail_sum: Float[Tensor, "d_model"]  # r = sum_tail p_i w_i
    tail_mass: float
    tail_trace: float  # t = trace(G_tail) >= ||G_tail||, padded for rounding
    deep_bound: float  # >= the norm of the deep tail's part of F, which is never read
    floor: float  # the smallest residual products in W's dtype resolve
    seen: Float[Tensor, "d_model seen"]  # orthonormal V
    seen_images: Float[Tensor, "d_model seen"]  # G_tail V
    start: Float[Tensor, "d_model block"]  # orthonormal start of the Krylov search

    def apply(self, X: Tensor) -> Tensor:
        """F~ X, where F~ is F with G_tail replaced by its seen part G - (1 - P) G (1 - P)."""
        result = self.top @ (self.top.T @ X) - torch.outer(self.delta, self.delta @ X)
        if self.rest.shape[0]:
            result += rows_sandwich(self.rest, X)
        V, images = self.seen, self.seen_images
        if V.shape[1]:
            coordinates = V.T @ X
            result += V @ (images.T @ X) + images @ coordinates
            result -= V @ ((V.T @ images) @ coordinates)
        return result

    def unseen_trace(self) -> float:
        """t' = trace((1 - P) G_tail (1 - P)) >= its norm, G_tail being positive semidefinite."""
        return max(self.tail_trace - float((self.seen * self.seen_images).sum()), 0.0)

    def see(self, U: Tensor) -> None:
        """One pass over W: G_tail U for an orthonormal U orthogonal to the seen V."""
        second_moment, _, _ = tail_pass(self.W, self.tail, self.tail_p, U)
        images = self._centred(second_moment / self.total, U)
        _check_finite(images)
        self.seen = torch.cat([self.seen, U], dim=1)
        self.seen_images = torch.cat([self.seen_images, images], dim=1)

    def _centred(self, second_moment: Tensor, U: Tensor) -> Tensor:
        # G_tail U = M U - r c^T U - c r^T U + m c c^T U, M the tail's second moment.
        centre, tail_sum = self.centre, self.tail_sum
        return (
            second_moment
            - torch.outer(tail_sum, centre @ U)
            - torch.outer(centre, tail_sum @ U)
            + self.tail_mass * torch.outer(centre, centre @ U)
        )


def _split(
    W: Tensor, p: Tensor, total: float, rank: int, count: int, tolerance: float, cap: int
) -> tuple[_Problem | None, float]:
    """Chooses the head (at most `cap` columns) and the deep tail, takes the first pass over the
    tail between them, and returns the split problem (None when the tail is too heavy for the
    split to pay) and the tail's trace over the head's top eigenvalue (inf for a flat p)."""
    d_model, support = W.shape
    sorted_p, order = torch.topk(p, cap)
    weights = sorted_p.double() / total
    first = min(cap, _GRAM_HEAD)
    first_columns = columns_of(W, order[:first]).double()
    centre = first_columns @ weights[:first] / weights[:first].sum()
    centred_first = first_columns - centre[:, None]
    values, vectors = _gram_eigenpairs(centred_first * weights[:first].sqrt(), count)
    estimate = float(values[0])
    head_size = cap
    if cap < support:
        # The residual one pass leaves is about t^2 / gap (module docstring), so a tail trace
        # t of about sqrt(tolerance) lambda_1 is what the head must leave; t ~ mass x spread.
        spread = max(float(centred_first.square().sum(0).median()), 1e-300)
        mass = _ONE_PASS * math.sqrt(tolerance) * estimate / spread
        beyond = 1 - torch.cumsum(weights, 0)
        if float(beyond[-1]) * spread > _FLAT_TAIL * estimate:
            return None, math.inf  # a flat p: not worth a pass
        head_size = min(cap, max(first, int((beyond > mass).sum()) + 1))
    head, head_weights = order[:head_size], weights[:head_size]
    columns = columns_of(W, head)
    centre = (columns @ (head_weights / head_weights.sum()).to(W.dtype)).double()
    top = (columns[:, :first].double() - centre[:, None]) * head_weights[:first].sqrt()
    scale = (sorted_p[first:head_size] / total).sqrt().to(W.dtype)
    # In place on the gathered copy (`columns` is not used again): one pass over the head.
    rest = columns[:, first:].T.sub_(centre.to(W.dtype)).mul_(scale[:, None])
    head_sum = top @ head_weights[:first].sqrt() + (rest.T @ scale).double()
    eps = torch.finfo(W.dtype).eps
    rest_trace = float(torch.linalg.vector_norm(rest, dim=1).double().square().sum())
    _check_finite(top, torch.tensor(rest_trace))
    start = _orthonormal_complement(torch.cat([vectors, _guard_vectors(vectors)], dim=1), None)
    head_only = _head_only(W, total, centre, top, rest, head_sum, 8 * eps * rest_trace, start)
    if head_size == support:
        return head_only, 0.0

    # The deep tail: the smallest p_i whose share of F, bounded through the column norms by
    # p_i (||w_i|| + ||c||)^2, adds up to at most _DEEP_TAIL tolerance lambda_1. It is never
    # read. Tokens are grouped by the binary exponent of p_i, so no sort is needed; the shares
    # are padded by the rounding of the norms and of their own few operations.
    pad = (1 + 2 * (d_model + 8) * eps) / total
    norms = column_norms(W)
    shares = (norms.double().sqrt() + float(centre.norm())).square_().mul_(p)
    shares[head] = 0
    _, exponent = torch.frexp(p)
    exponent = exponent - int(exponent.min())
    below = torch.cumsum(torch.bincount(exponent, weights=shares), 0) * pad
    levels = int((below <= _DEEP_TAIL * tolerance * estimate).sum())
    deep = exponent < levels
    deep[head] = False
    deep_trace = float(below[levels - 1]) if levels else 0.0
    deep_mass = float(p[deep].sum(dtype=torch.float64)) / total if levels else 0.0
    if not math.isfinite(deep_trace):
        _check_finite(torch.tensor(deep_trace))
    in_tail = ~deep & (p > 0)
    in_tail[head] = False
    tail = torch.nonzero(in_tail).squeeze(1)
    tail_p = p[tail]
    # The head's own leading Ritz vectors (a few products with the head), close to F's. The
    # pass applies G_tail to the wanted ones and the next two (the answer lies near them: the
    # tail mixes in most where gaps are small); the unseen trace bounds the rest for the
    # ordering. A pass costs about its width in products over the tail, so it is kept narrow.
    ritz = _block_krylov(head_only.apply, start, rank, count + _GUARDS, _START_TOLERANCE)
    if ritz is not None:
        leading = ritz[1][:, :count]
        guards = _orthonormal_complement(_guard_vectors(leading), leading)
        start = torch.cat([leading, guards], dim=1)
    seen = start[:, : min(rank + 2, count)]
    second_moment, tail_sum, cross = tail_pass(W, tail, tail_p, seen, centre)
    second_moment, tail_sum, cross = second_moment / total, tail_sum / total, cross / total
    tail_norms = float(norms[tail].double() @ tail_p.double()) / total
    tail_mass = float(tail_p.double().sum()) / total
    centre_norm = float(centre @ centre)
    trace = tail_norms - 2 * cross + tail_mass * centre_norm
    # Rounding in W's dtype: a squared norm carries (d_model + 1) eps, a product w_i^T c
    # (d_model + 2) eps ||w_i|| ||c||, summed by Cauchy-Schwarz to sqrt(m sum p_i ||w_i||^2).
    cross_error = (d_model + 2) * eps * math.sqrt(centre_norm * tail_mass * max(tail_norms, 0))
    slack = (d_model + 1) * eps * tail_norms + 2 * cross_error + 1e-15 * abs(trace)
    tail_trace = max(trace, 0.0) + slack
    if not math.isfinite(tail_trace):
        _check_finite(tail_sum, second_moment, torch.tensor(tail_norms))  # a NaN column
    if tail_trace > _HEAVY_TAIL * estimate:
        return None, tail_trace / max(estimate, 1e-300)
    delta = head_sum + tail_sum - tail_mass * centre
    # The deep tail's part of F, G_deep - delta d^T - d delta^T - d d^T with d its unread part
    # of w_bar - c (||d|| <= sqrt(mass trace) by Cauchy-Schwarz), bounded in norm.
    unread = math.sqrt(deep_mass * deep_trace)
    deep_bound = deep_trace + 2 * float(delta.norm()) * unread + unread**2
    problem = replace(
        head_only,
        tail=tail,
        tail_p=tail_p,
        delta=delta,
        tail_sum=tail_sum,
        tail_mass=tail_mass,
        tail_trace=tail_trace,
        deep_bound=deep_bound,
        floor=8 * eps * (rest_trace + tail_trace),
        start=start,
    )
    images = problem._centred(second_moment, seen)
    _check_finite(images)
    problem.seen, problem.seen_images = seen, images
    return problem, tail_trace / max(estimate, 1e-300)


def _head_only(
    W: Tensor,
    total: float,
    centre: Tensor,
    top: Tensor,
    rest: Tensor,
    head_sum: Tensor,
    floor: float,
    start: Tensor,
) -> _Problem:
    """The problem without a tail: F restricted to the head, nothing unseen."""
    empty = torch.zeros(W.shape[0], 0, dtype=torch.float64, device=W.device)
    no_columns = torch.zeros(0, dtype=torch.long, device=W.device)
    zero = torch.zeros_like(centre)
    return _Problem(
        W, no_columns, W.new_zeros(0), total, centre, top, rest, head_sum, zero, 0.0, 0.0, 0.0,
        floor, empty, empty, start,
    )  # fmt: skip


def _solve(problem: _Problem, rank: int, count: int, tolerance: float) -> EigenPairs | None:
    """Krylov on F~, then passes over the tail until the certificate holds; None if it does
    not within _MAX_PASSES passes or the Krylov search stalls."""
    d_model, basis = problem.top.shape[0], problem.start
    for _ in range(_MAX_PASSES):
        # With a tail, the start was already expanded with the head alone (in _split).
        min_steps = 0 if problem.tail.numel() else 1
        ritz = _block_krylov(problem.apply, basis, rank, count + _GUARDS, tolerance, min_steps)
        if ritz is None:
            return None
        values, vectors, residuals = ritz
        largest = max(float(values[0]), torch.finfo(torch.float64).tiny)
        unseen, V = problem.unseen_trace(), problem.seen
        # ||F x - theta x|| <= ||F~ x - theta x|| + ||(1 - P) G_tail (1 - P) x||.
        wanted = vectors[:, :rank]
        outside = (wanted - V @ (V.T @ wanted)).norm(dim=0)
        bound = residuals[:rank] + unseen * outside + problem.deep_bound
        worst = float(bound.max())
        # F <= F~ + t' I, so lambda_{rank+1}(F) <= lambda_{rank+1}(F~) + t': nothing unseen
        # reaches the wanted eigenvalues' intervals.
        following = float(values[rank]) if values.numel() > rank else 0.0
        hidden = unseen + problem.deep_bound
        separated = hidden == 0 or following + hidden < float(values[rank - 1]) - worst
        if worst <= max(tolerance * largest, problem.floor) and separated:
            return values[:rank], wanted
        if problem.tail_p.numel() == 0 or V.shape[1] >= d_model:
            return None
        # Show G_tail what the answer still lacks: the Ritz vectors' unseen parts, and the
        # next power of G_tail on what it has seen (where a hidden eigenvector grows).
        candidates = torch.cat([vectors, problem.seen_images[:, -count:]], dim=1)
        new = _orthonormal_complement(candidates, V)[:, : d_model - V.shape[1]]
        if new.shape[1] == 0:
            return None
        problem.see(new)
        basis = _orthonormal_complement(torch.cat([vectors, new], dim=1), None)
    return None


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
    return columns_of(W_U, support), probs[support]


def _fisher_directions_fast(W_U: Tensor, probs: Tensor, rank: int, tolerance: float) -> EigenPairs:
    """The algorithm of the module docstring, for validated inputs."""
    probs, total = _normalised(probs, W_U.dtype)
    W, p = _restrict_to_support(W_U, probs)
    count = min(rank + _OVERSAMPLE, W.shape[0])
    cap = min(W.shape[1], max(_MIN_HEAD, W.shape[1] // _HEAD_FRACTION))
    problem, heaviness = _split(W, p, total, rank, count, tolerance, cap)
    larger = W.shape[1] // _HEAVY_HEAD_FRACTION
    if problem is None and cap < larger and heaviness < _RETRY_LIMIT:
        # A heavy tail, but not a flat p: once more with a head of a quarter of the vocabulary.
        problem, _ = _split(W, p, total, rank, count, tolerance, larger)
    if problem is not None:
        result = _solve(problem, rank, count, tolerance)
        if result is not None:
            return _finish(*result, W_U.dtype)
    # As slow as the reference, and as accurate: reached for a tail too heavy for the split
    # (a flat p) or a spectrum the certificate cannot resolve within _MAX_PASSES passes.
    second_moment = _second_moment(W, p) / total
    w_bar = ((W @ p) / total).to(W.dtype)
    values, vectors = torch.linalg.eigh(second_moment - torch.outer(w_bar, w_bar))
    return _finish(values.flip(0)[:rank], vectors.flip(1)[:, :rank], W_U.dtype)


def _second_moment(W: Tensor, p: Tensor) -> Tensor:
    """W diag(p) W^T in W's dtype, _FALLBACK_COLUMNS columns at a time (summed in float64), so
    no copy of W is made: the whole (W * p) was 671 MB at Gemma-3's shape, whatever the
    prompt's length."""
    total = torch.zeros(W.shape[0], W.shape[0], dtype=torch.float64, device=W.device)
    for start in range(0, W.shape[1], _FALLBACK_COLUMNS):
        part = W[:, start : start + _FALLBACK_COLUMNS]
        total += ((part * p[start : start + _FALLBACK_COLUMNS]) @ part.T).double()
    return total.to(W.dtype)


def _normalised(probs: Tensor, dtype: torch.dtype) -> tuple[Tensor, float]:
    """probs / sum(probs) in `dtype`, and the float64 sum of that, which rounding keeps from 1."""
    probs = (probs.double() / probs.sum(dtype=torch.float64)).to(dtype)
    return probs, float(probs.sum(dtype=torch.float64))
