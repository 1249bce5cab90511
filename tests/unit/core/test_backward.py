"""The backward passes: states sharing a row never mix, unused leaves give zeros, chunking does
not change the result."""

from __future__ import annotations

import torch

from tlscopes.core.backward import pull_back


def test_states_in_one_row_are_seeded_apart_and_unused_leaves_are_zero():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    unused = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 5, dtype=torch.float64)
    h = torch.tanh(x @ weights).cumsum(dim=1)  # position t depends on positions <= t
    rows = torch.tensor([0, 0, 1])
    positions = torch.tensor([1, 2, 2])
    outputs = h[rows, positions]  # [3 states, 5]
    vectors = torch.randn(3, 2, 5, dtype=torch.float64)
    grads, zeros = pull_back(outputs, [x, unused], vectors, rows, per_pass=1, keep_graph=True)
    assert grads.shape == (3, 2, 3, 4) and bool((zeros == 0).all())
    for state in range(3):
        for r in range(2):
            (expected,) = torch.autograd.grad(
                outputs[state] @ vectors[state, r], x, retain_graph=True
            )
            torch.testing.assert_close(grads[state, r], expected[rows[state]])
    batched, _ = pull_back(outputs, [x, unused], vectors, rows, per_pass=4, keep_graph=True)
    torch.testing.assert_close(batched, grads)
