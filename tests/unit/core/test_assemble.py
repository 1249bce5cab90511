"""Packing engine output into a result: top_k, scores that overflow."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import VARIANTS

TEXT = "the person grew up in the south and studied at columbia . the person is"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True])
def test_top_k_must_be_positive(model, top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        ts.attribute(model, TEXT, ts.TemperatureScope(), top_k=top_k)
    assert attached_hooks(model) == 0


def test_a_direction_whose_scores_overflow_is_an_error_not_inf():
    model = helpers.build_bridge(dtype=torch.float32)
    with pytest.raises(FloatingPointError, match="overflowed"):
        ts.attribute(model, TEXT, ts.DirectionScope(torch.full((16,), 1e30)))
    assert attached_hooks(model) == 0
    # A large but representable direction works, and scores scale linearly with it.
    base = ts.attribute(model, TEXT, ts.DirectionScope(torch.ones(16)))
    big = ts.attribute(model, TEXT, ts.DirectionScope(torch.full((16,), 1e15)))
    torch.testing.assert_close(big.scores / 1e15, base.scores, rtol=1e-5, atol=0)
