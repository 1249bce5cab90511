"""Streaming products with W_U for the Fisher solver (:mod:`tlscopes.fisher.solver`): the pass
over the tail's columns, products with the head's gathered rows, and W_U's column norms.

At Gemma-3's shape (640 x 262,144, 671 MB in float32) a pass is memory-bound in principle,
but a skinny product (a block of 4-8 vectors) through the BLAS is not: measured on one core,
`W_E @ U` for a [640, 4] block took ~380 ms where streaming W_E once (a sum) took ~100 ms.
Two things recover most of it, both here:

* Orientation: the first product is taken as U^T W_c (a [b, d_model] x [d_model, c] product)
  rather than W_c^T U, which MKL runs ~1.5x faster on a block of W_U's rows.
* Cache-sized chunks: each chunk of columns is used by both products of the pass
  (U^T W_c, then (p * .) W_c^T) while it is still in the core's cache, so W_U is read from
  memory once, not twice. With one thread chunks are 256 columns; with more threads larger
  chunks keep each parallel region worth its synchronisation.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

# Columns per chunk with one thread (about 160 KiB-650 KiB of W_U: in cache for the second
# product), and bytes per chunk with several threads: there every chunk is a parallel region,
# and on a loaded machine each region waits for the slowest thread (measured on 2 shared
# cores at Gemma-3's shape: 2,048-column chunks made a pass 6x slower than 64 MiB ones).
_CACHE_COLUMNS = 256
_CHUNK_BYTES = 1 << 27
# The column norms of the last W_U seen (see column_norms): a cache, not state; results do
# not depend on it.
_NORM_CACHE: dict[str, tuple] = {}


def chunks(length: int, W: Tensor) -> list[slice]:
    """Slices of `length` columns of W, sized for the thread count (module docstring)."""
    if torch.get_num_threads() == 1:
        size = _CACHE_COLUMNS
    else:
        size = max(2048, _CHUNK_BYTES // (W.shape[0] * W.element_size()))
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


def columns_of(W: Tensor, index: Tensor) -> Tensor:
    """W[:, index] as a new tensor. `index_select` on dim 1 of a strided view is ~30x slower
    than a row gather on W^T (columns contiguous, an lm_head weight transposed) or `gather`."""
    if W.stride(0) == 1:
        return W.T.index_select(0, index).T
    return torch.gather(W, 1, index.expand(W.shape[0], -1))


def tail_pass(
    W: Tensor, columns: Tensor, p: Tensor, U: Tensor, centre: Tensor | None = None
) -> tuple[Tensor, Tensor | None, float]:
    """W_T (p * (W_T^T U)) over the columns T = `columns` (ascending) for a float64 block U
    [d_model, b], in one pass; given a `centre` c, also W_T p and sum_T p_i w_i^T c.

    Chunk by chunk, the columns are read (or gathered, when T is less than half of W) and used
    by both products; when T is most of W, all of W is streamed, the other columns weighted by
    zero. Products run in W's dtype and are accumulated over chunks in float64 (p
    unnormalised); each w_i^T c is one product in W's dtype, summed in float64, so its rounding
    is bounded per column.

    >>> W, U = torch.randn(3, 50), torch.eye(3, dtype=torch.float64)
    >>> p = torch.full((50,), 0.02)
    >>> moment, _, _ = tail_pass(W, torch.arange(50), p, U)
    >>> torch.allclose(moment, ((W * p) @ W.T).double(), atol=1e-5)
    True
    """
    sums = centre is not None
    block = (torch.cat([U, centre[:, None]], dim=1) if sums else U).T.to(W.dtype).contiguous()
    result = torch.zeros(U.shape[1] + sums, W.shape[0], dtype=torch.float64, device=W.device)
    cross = torch.zeros((), dtype=torch.float64, device=W.device)
    if 2 * columns.numel() > W.shape[1]:
        p = torch.zeros(W.shape[1], dtype=p.dtype, device=p.device).index_copy_(0, columns, p)
        columns = None
    for chunk in chunks(W.shape[1] if columns is None else columns.numel(), W):
        part = W[:, chunk] if columns is None else columns_of(W, columns[chunk])
        weights = p[chunk]
        weighted = block @ part  # [b (+1), chunk]
        if sums:
            cross += weighted[-1].double() @ weights.double()
            weighted[-1] = 1
        result += (weighted.mul_(weights) @ part.T).double()
    if not sums:
        return result.T, None, 0.0
    return result[:-1].T, result[-1], float(cross)


def rows_sandwich(rows: Float[Tensor, "n d_model"], X: Tensor) -> Float[Tensor, "d_model b"]:
    """rows^T (rows X) in float64 for a float64 block X [d_model, b], `rows` in its own dtype:
    the head's product in the Krylov search, chunked like a pass (each chunk of rows used by
    both products while in cache) and accumulated in float64.

    >>> rows, X = torch.randn(10, 3), torch.randn(3, 2, dtype=torch.float64)
    >>> torch.allclose(rows_sandwich(rows, X), rows.double().T @ (rows.double() @ X), atol=1e-4)
    True
    """
    block = X.T.to(rows.dtype).contiguous()
    result = torch.zeros(X.shape[1], rows.shape[1], dtype=torch.float64, device=rows.device)
    for chunk in chunks(rows.shape[0], rows.T):
        part = rows[chunk]
        result += ((block @ part.T) @ part).double()
    return result.T


def column_norms(W: Tensor) -> Tensor:
    """||w_i||^2 for every column, in W's dtype; computed once per W_U and remembered.

    The deep-tail bound needs them for columns that are otherwise never read. The one entry
    kept is keyed by W's memory, layout and version counter (bumped by in-place writes), and
    checked against a fresh computation of a fixed sample of columns, so a new tensor that
    reuses freed memory is not mistaken for the old one.

    >>> W = torch.tensor([[3.0, 0.0], [4.0, 1.0]])
    >>> column_norms(W).tolist()
    [25.0, 1.0]
    """
    probe = torch.linspace(0, W.shape[1] - 1, 61, device=W.device).long()
    probe_norms = torch.linalg.vector_norm(columns_of(W, probe), dim=0)
    key = (W.data_ptr(), tuple(W.shape), W.stride(), W.dtype, W.device, W._version)
    cached = _NORM_CACHE.get("last")
    if cached is not None and cached[0] == key and torch.equal(cached[1], probe_norms):
        return cached[2]
    norms = torch.empty(W.shape[1], dtype=W.dtype, device=W.device)
    for chunk in chunks(W.shape[1], W):
        norms[chunk] = torch.linalg.vector_norm(W[:, chunk].T, dim=1)
    _NORM_CACHE["last"] = (key, probe_norms, norms.square_())
    return norms
