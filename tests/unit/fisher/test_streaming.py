"""Streaming products with W_U: every chunking and orientation equals the plain products."""

from __future__ import annotations

import pytest
import torch

from tlscopes.fisher import streaming as fisher_streaming
from tlscopes.fisher.streaming import column_norms, rows_sandwich, tail_pass


@pytest.fixture(params=[1, 2], ids=["one-thread", "two-threads"])
def threads(request, monkeypatch):
    """Both chunkings: cache-sized (one thread) and byte-sized (several), made small here."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    monkeypatch.setattr(fisher_streaming, "_CACHE_COLUMNS", 7)
    monkeypatch.setattr(fisher_streaming, "_CHUNK_BYTES", 8 * 16 * 3)
    yield request.param
    torch.set_num_threads(previous)


def unembeddings(d_model: int = 8, d_vocab: int = 101) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    W = torch.randn(d_model, d_vocab, generator=generator, dtype=torch.float64)
    # The same matrix as a row-major W_U and as the transposed view of a tied W_E.
    return {"row-major": W, "tied view": W.T.contiguous().T}


@pytest.mark.parametrize("layout", ["row-major", "tied view"])
@pytest.mark.parametrize("subset", ["all", "most", "few"])
def test_tail_pass_equals_the_plain_products(threads, layout, subset):
    W = unembeddings()[layout]
    d_model, d_vocab = W.shape
    generator = torch.Generator().manual_seed(1)
    p = torch.rand(d_vocab, generator=generator, dtype=torch.float64)
    count = {"all": d_vocab, "most": 80, "few": 13}[subset]
    columns = torch.randperm(d_vocab, generator=generator)[:count].sort().values
    U = torch.linalg.qr(torch.randn(d_model, 3, generator=generator, dtype=torch.float64))[0]
    centre = torch.randn(d_model, generator=generator, dtype=torch.float64)
    W_T, p_T = W[:, columns], p[columns]
    moment, weighted_sum, cross = tail_pass(W, columns, p_T, U, centre)
    torch.testing.assert_close(moment, (W_T * p_T) @ W_T.T @ U)
    torch.testing.assert_close(weighted_sum, W_T @ p_T)
    assert cross == pytest.approx(float(p_T @ (W_T.T @ centre)), rel=1e-12)
    plain, none, zero = tail_pass(W, columns, p_T, U)
    torch.testing.assert_close(plain, moment)
    assert none is None and zero == 0.0


def test_tail_pass_in_float32_accumulates_in_float64(threads):
    W = unembeddings()["tied view"].float()
    p = torch.full((W.shape[1],), 1 / W.shape[1])
    U = torch.eye(W.shape[0], dtype=torch.float64)
    moment, _, _ = tail_pass(W, torch.arange(W.shape[1]), p, U)
    assert moment.dtype == torch.float64
    torch.testing.assert_close(
        moment, ((W.double() * p.double()) @ W.double().T), rtol=1e-6, atol=1e-7
    )


def test_rows_sandwich_equals_the_plain_products(threads):
    rows = unembeddings()["row-major"].T.contiguous()  # [d_vocab, d_model]
    X = torch.randn(rows.shape[1], 5, dtype=torch.float64)
    torch.testing.assert_close(rows_sandwich(rows, X), rows.T @ (rows @ X))
    empty = rows[:0]
    assert rows_sandwich(empty, X).abs().max() == 0


def test_chunks_cover_every_column_once(threads):
    W = unembeddings()["row-major"]
    covered = torch.cat(
        [torch.arange(W.shape[1])[chunk] for chunk in fisher_streaming.chunks(W.shape[1], W)]
    )
    assert covered.tolist() == list(range(W.shape[1]))


def test_column_norms_are_remembered_and_notice_in_place_changes(monkeypatch):
    monkeypatch.setattr(fisher_streaming, "_NORM_CACHE", {})
    W = torch.randn(8, 300, dtype=torch.float64)
    first = column_norms(W)
    torch.testing.assert_close(first, W.square().sum(dim=0))
    assert column_norms(W) is first  # the cached tensor
    W[:, 5] *= 2  # bumps W's version counter
    torch.testing.assert_close(column_norms(W), W.square().sum(dim=0))
