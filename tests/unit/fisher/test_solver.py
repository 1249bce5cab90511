"""The Fisher solver's bookkeeping: support restriction without copies."""

from __future__ import annotations

import torch

from tlscopes.fisher import solver as fisher_solver


def test_support_restriction_is_a_view_for_a_contiguous_support():
    W = torch.randn(8, 100, dtype=torch.float64)
    probs = torch.zeros(100, dtype=torch.float64)
    probs[10:30] = 1 / 20
    restricted, p = fisher_solver._restrict_to_support(W, probs)
    assert restricted.data_ptr() == W[:, 10:30].data_ptr() and p.shape == (20,)
    full, same = fisher_solver._restrict_to_support(W, torch.full((100,), 0.01).double())
    assert full is W
