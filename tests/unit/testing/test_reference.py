"""The exact reference itself: its Jacobian matches finite differences."""

from __future__ import annotations

import torch

from tlscopes.testing import toy
from tlscopes.testing.reference import embeddings_of, exact_jacobian, final_state_fn, scores_for


def test_exact_jacobian_matches_central_differences():
    model = toy.build_bridge()
    tokens = model.to_tokens("the cat sat on")[0]
    position = len(tokens) - 1
    y, J = exact_jacobian(model, tokens, position)
    x = embeddings_of(model, tokens)
    fn = final_state_fn(model, tokens, position)
    # The bridge's attention softmax runs in float32 even in a float64 model, so the step is
    # large enough for its rounding (~1e-7) to stay far below the tolerance.
    step = 1e-3
    for t, d in [(0, 0), (1, 3), (position, 7)]:
        bump = torch.zeros_like(x)
        bump[t, d] = step
        with torch.no_grad():
            numeric = (fn(x + bump) - fn(x - bump)) / (2 * step)
        torch.testing.assert_close(J[:, t, d], numeric, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(y, fn(x).detach())


def test_scores_for_one_unit_direction_is_the_row_norm():
    J = torch.randn(4, 3, 4, dtype=torch.float64)
    v = torch.zeros(4, 1, dtype=torch.float64)
    v[2] = 1.0
    torch.testing.assert_close(scores_for(J, v), J[2].norm(dim=-1))
