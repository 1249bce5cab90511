"""Every scope against ||v^T J_t|| from a full torch.func Jacobian, on tiny float64 models."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.reference import exact_jacobian, fisher_eig, scores_for

PROMPT = "the capital of france is paris and the capital of italy is"
RTOL = 1e-6


def reference(model, position):
    tokens = model.to_tokens(PROMPT)[0]
    y, J = exact_jacobian(model, tokens, position)
    return tokens, y, J


def assert_close(actual, expected):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("position", [-1, 5])
def test_semantic_scope_is_target_logit_gradient_norm(model, position):
    tokens, y, J = reference(model, position % len(model.to_tokens(PROMPT)[0]))
    target = ts.core.scopes.resolve_token(model, " rome")
    result = ts.attribute(model, PROMPT, ts.SemanticScope(" rome"), position=position)
    expected = scores_for(J, model.W_U[:, target, None].detach())
    assert_close(result.scores[0], expected)


@pytest.mark.parametrize("position", [-1, 3])
def test_temperature_scope_is_norm_gradient(model, position):
    tokens, y, J = reference(model, position % len(model.to_tokens(PROMPT)[0]))
    result = ts.attribute(model, PROMPT, ts.TemperatureScope(), position=position)
    assert_close(result.scores[0], scores_for(J, (y / y.norm())[:, None]))


@pytest.mark.parametrize("rank", [1, 3])
def test_fisher_scope_matches_formed_fisher_matrix(model, rank):
    tokens, y, J = reference(model, len(tokens_of(model)) - 1)
    logits = y @ model.W_U.detach() + model.b_U.detach()
    values, vectors = fisher_eig(model.W_U.detach(), logits)
    weights = None if rank == 1 else values[:rank]
    expected = scores_for(J, vectors[:, :rank], weights)
    result = ts.attribute(model, PROMPT, ts.FisherScope(rank=rank))
    assert_close(result.scores[0], expected)
    if rank > 1:
        assert_close(torch.tensor(result.details["eigenvalues"][0]), values[:rank])


def test_direction_scope_any_vector(model):
    tokens, y, J = reference(model, len(tokens_of(model)) - 1)
    v = torch.randn(
        model.cfg.d_model, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    result = ts.attribute(model, PROMPT, ts.DirectionScope(v))
    assert_close(result.scores[0], scores_for(J, v[:, None]))


def test_contrast_direction_is_difference_of_semantic_directions(model):
    tokens, y, J = reference(model, len(tokens_of(model)) - 1)
    a, b = (ts.core.scopes.resolve_token(model, t) for t in (" liberal", " conservative"))
    v = ts.contrast_direction(model, " liberal", " conservative")
    torch.testing.assert_close(v, (model.W_U[:, a] - model.W_U[:, b]).detach())
    result = ts.attribute(model, PROMPT, ts.DirectionScope(v, label="liberal-conservative"))
    assert_close(result.scores[0], scores_for(J, v[:, None]))


def tokens_of(model):
    return model.to_tokens(PROMPT)[0]
