"""The IG path integrand: exact gradients at scaled inputs, batching, summaries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tlscopes as ts
from tlscopes.analysis import PathIntegrand, path_integrand

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


def test_integrand_at_alpha_one_is_the_semantic_scope_gradient(model):
    integrand = path_integrand(model, TEXT, target=" columbia", alphas=(0.3, 1.0))
    semantic = ts.attribute(model, TEXT, ts.SemanticScope(" columbia"))
    torch.testing.assert_close(integrand.norms[1], semantic.scores[0], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(integrand.norms[0], semantic.scores[0])
    assert integrand.target.strip() == "columbia"


def test_integrand_batched_equals_one_alpha_at_a_time(bridge):
    alphas = (0.01, 0.2, 0.7, 1.0)
    batched = path_integrand(bridge, TEXT, alphas=alphas, position=-3)
    single = path_integrand(bridge, TEXT, alphas=alphas, position=-3, batch_size=1)
    torch.testing.assert_close(batched.norms, single.norms, rtol=1e-9, atol=1e-12)
    assert batched.norms.shape == (4, len(batched.tokens))
    assert bool((batched.norms[:, batched.position + 1 :] == 0).all())
    # With no target, the top prediction of the real input is explained at every alpha.
    top = ts.attribute(bridge, TEXT, ts.TemperatureScope(), position=-3).top_token_ids[0, 0]
    assert batched.target_id == int(top)


def test_integrand_equals_the_gradient_at_the_scaled_input(bridge):
    """The integrand at alpha is d z / d x~ evaluated at x~ = alpha x (not d z(alpha x) / d x)."""
    alpha = 0.25
    integrand = path_integrand(bridge, TEXT, target=" south", alphas=(alpha,))
    tokens = bridge.to_tokens(TEXT)
    target = ts.core.scopes.resolve_token(bridge, " south")
    saved = []
    with torch.no_grad(), bridge.hooks(fwd_hooks=[("hook_embed", lambda t, hook: saved.append(t))]):
        bridge(tokens)
    leaf = (saved[0].detach() * alpha).requires_grad_(True)
    with bridge.hooks(fwd_hooks=[("hook_embed", lambda t, hook: leaf)]):
        logits = bridge(tokens)
    (grad,) = torch.autograd.grad(logits[0, -1, target], leaf)
    torch.testing.assert_close(integrand.norms[0], grad[0].norm(dim=-1), rtol=1e-7, atol=1e-10)


def test_integrand_summaries():
    norms = torch.tensor(
        [[1.0, 1.0, 1.0, 1.0, 9.0], [4.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0, 0.0]]
    )
    integrand = PathIntegrand(
        torch.tensor([0.1, 0.5, 1.0]), norms, ["a"] * 5, torch.arange(5), 3, 0, "a"
    )
    # Position 3 is explained; the 9 after it is ignored.
    torch.testing.assert_close(
        integrand.centre_of_mass(), torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        integrand.early_share(2), torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64)
    )


def test_integrand_refuses_bad_alphas(bridge):
    for alphas in ((), (0.0, 1.0), (1.5,)):
        with pytest.raises(ValueError, match="alphas"):
            path_integrand(bridge, TEXT, alphas=alphas)
