"""The Fisher solver's bookkeeping: support restriction without copies, the column-norm cache."""

from __future__ import annotations

import torch

from tlscopes import fisher_solver


def test_support_restriction_is_a_view_for_a_contiguous_support():
    W = torch.randn(8, 100, dtype=torch.float64)
    probs = torch.zeros(100, dtype=torch.float64)
    probs[10:30] = 1 / 20
    restricted, p = fisher_solver._restrict_to_support(W, probs)
    assert restricted.data_ptr() == W[:, 10:30].data_ptr() and p.shape == (20,)
    full, same = fisher_solver._restrict_to_support(W, torch.full((100,), 0.01).double())
    assert full is W


def test_column_norms_are_remembered_and_notice_in_place_changes(monkeypatch):
    monkeypatch.setattr(fisher_solver, "_NORM_CACHE", {})
    W = torch.randn(8, 300, dtype=torch.float64)
    first = fisher_solver._column_norms(W)
    torch.testing.assert_close(first, W.square().sum(dim=0))
    assert fisher_solver._column_norms(W) is first  # the cached tensor
    W[:, 5] *= 2  # bumps W's version counter
    torch.testing.assert_close(fisher_solver._column_norms(W), W.square().sum(dim=0))
