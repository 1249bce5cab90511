"""Layer and head resolution: exact against torch.func Jacobians with respect to each layer's
residual stream and each head's z, on every tiny variant (both kinds, LN and RMS, absolute and
rotary positions), at the last and an earlier position."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.models import VARIANTS
from tests.reference import activation_jacobian, fisher_eig
from tlscopes.core.hooks import block_of
from tlscopes.core.layers import attribute_layers

TEXT = "the person grew up in the south and studied at columbia . the person is"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def scope_vectors(model, scope, y):
    """The scope's directions [d, r] and weights [r] from y, computed here independently."""
    W_U = model.W_U.detach().double()
    if isinstance(scope, ts.TemperatureScope):
        return (y / y.norm())[:, None], None
    if isinstance(scope, ts.SemanticScope):
        return W_U[:, [model.to_single_token(scope.target)]], None
    if isinstance(scope, ts.DirectionScope):
        return scope.vector.double()[:, None], None
    values, vectors = fisher_eig(W_U, y.double() @ W_U + model.b_U.detach().double())
    rank = scope.rank
    weights = None if rank == 1 else values[:rank]
    return vectors[:, :rank], weights


def reference_scores(J, vectors, weights):
    """sqrt(sum_r w_r ||v_r^T J_t||^2) with J [d_out, pos, *rest]."""
    projected = torch.einsum("dr,dt...->rt...", vectors.double(), J.double())
    squared = projected.pow(2).flatten(start_dim=2).sum(-1)  # [r, pos]
    if weights is None:
        weights = torch.ones(vectors.shape[1], dtype=torch.float64)
    return (weights[:, None] * squared).sum(0).sqrt()


SCOPES = {
    "semantic": ts.SemanticScope(" columbia"),
    "fisher-1": ts.FisherScope(),
    "fisher-2": ts.FisherScope(rank=2),
    "temperature": ts.TemperatureScope(),
    "direction": ts.DirectionScope(torch.linspace(-1, 1, 16, dtype=torch.float64)),
}


@pytest.mark.parametrize("position", [-1, 5])
@pytest.mark.parametrize("name", sorted(SCOPES))
def test_layer_scores_are_exact(model, name, position):
    scope = SCOPES[name]
    tokens = model.to_tokens(TEXT)[0]
    absolute = position % len(tokens)
    result = attribute_layers(model, tokens, scope, position=position)
    assert result.scores.shape == (1, model.cfg.n_layers, len(tokens))
    for layer in range(model.cfg.n_layers):
        y, J = activation_jacobian(model, tokens, absolute, f"blocks.{layer}.hook_resid_pre")
        vectors, weights = scope_vectors(model, scope, y)
        expected = reference_scores(J, vectors, weights)
        torch.testing.assert_close(
            result.scores[0, layer].double(), expected, rtol=1e-6, atol=1e-10
        )
    assert bool((result.scores[0, :, absolute + 1 :] == 0).all())
    assert attached_hooks(model) == 0


@pytest.mark.parametrize("name", sorted(SCOPES))
def test_input_scores_equal_attribute_and_layer_zero(model, name):
    scope = SCOPES[name]
    result = attribute_layers(model, TEXT, scope)
    plain = ts.attribute(model, TEXT, scope)
    torch.testing.assert_close(result.input_scores, plain.scores, rtol=1e-9, atol=1e-12)
    # The residual stream entering layer 0 is x_t plus terms that do not depend on x_t.
    torch.testing.assert_close(result.scores[:, 0], plain.scores, rtol=1e-9, atol=1e-12)
    assert result.tokens == plain.tokens and result.inputs.info["parameters"]["heads"] is False


@pytest.mark.parametrize("name", ["fisher-2", "semantic", "temperature"])
def test_head_scores_are_exact(model, name):
    scope = SCOPES[name]
    tokens = model.to_tokens(TEXT)[0]
    position = len(tokens) - 1
    result = attribute_layers(model, tokens, scope, heads=True)
    n_heads = model.cfg.n_heads
    assert result.head_scores.shape == (1, model.cfg.n_layers, n_heads, len(tokens))
    for layer in range(model.cfg.n_layers):
        y, J = activation_jacobian(model, tokens, position, f"blocks.{layer}.attn.hook_z")
        J = J.reshape(J.shape[0], len(tokens), n_heads, -1)  # [d_out, pos, head, d_head]
        vectors, weights = scope_vectors(model, scope, y)
        for head in range(n_heads):
            expected = reference_scores(J[:, :, head], vectors, weights)
            # 1e-6 of the largest score: the bridge takes its softmax in float32.
            peak = float(expected.abs().max())
            torch.testing.assert_close(
                result.head_scores[0, layer, head].double(), expected, rtol=1e-6, atol=1e-6 * peak
            )
    assert attached_hooks(model) == 0


def test_batched_layers_equal_unbatched(model):
    # 1e-6: a padded batch runs the bridge's own attention (float32 softmax), one prompt alone
    # may run the fused kernel.
    prompts = [TEXT, "the cat sat on the mat"]
    batched = attribute_layers(model, prompts, ts.FisherScope(rank=2), heads=True)
    for index, prompt in enumerate(prompts):
        single = attribute_layers(model, prompt, ts.FisherScope(rank=2), heads=True)
        length = len(single.tokens[0])
        torch.testing.assert_close(
            batched.scores[index, :, :length], single.scores[0], rtol=1e-6, atol=1e-9
        )
        torch.testing.assert_close(
            batched.head_scores[index, ..., :length], single.head_scores[0], rtol=1e-6, atol=1e-9
        )
        assert bool((batched.scores[index, :, length:] == 0).all())


# Internal directions -----------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_post", "blocks.1.hook_resid_mid"])
def test_an_internal_direction_is_exact_and_later_layers_score_zero(model, hook):
    tokens = model.to_tokens(TEXT)[0]
    position = len(tokens) - 2
    v = torch.linspace(1, -0.5, model.cfg.d_model, dtype=torch.float64)
    scope = ts.DirectionScope(v, at=hook)
    plain = ts.attribute(model, tokens, scope, position=position)
    _, J = activation_jacobian(model, tokens, position, "hook_embed", output_hook=hook)
    torch.testing.assert_close(
        plain.scores[0].double(), reference_scores(J, v[:, None], None), rtol=1e-6, atol=1e-10
    )
    layered = attribute_layers(model, tokens, scope, position=position)
    block = block_of(hook, model.cfg.n_layers)
    for layer in range(model.cfg.n_layers):
        if layer > block:
            assert bool((layered.scores[0, layer] == 0).all())
            continue
        _, J = activation_jacobian(
            model, tokens, position, f"blocks.{layer}.hook_resid_pre", output_hook=hook
        )
        torch.testing.assert_close(
            layered.scores[0, layer].double(),
            reference_scores(J, v[:, None], None),
            rtol=1e-6,
            atol=1e-10,
        )
    assert plain.info["scope"]["at"] == hook and plain.details["at"] == hook


def test_internal_and_output_scopes_share_one_forward_pass(model):
    v = torch.ones(model.cfg.d_model, dtype=torch.float64)
    internal = ts.DirectionScope(v, at="blocks.1.hook_resid_pre")
    together = ts.attribute_many(model, TEXT, [ts.FisherScope(), internal, ts.TemperatureScope()])
    scopes = [ts.FisherScope(), internal, ts.TemperatureScope()]
    for scope, result in zip(scopes, together, strict=True):
        torch.testing.assert_close(result.scores, ts.attribute(model, TEXT, scope).scores)


def test_internal_direction_errors(model):
    v = torch.ones(model.cfg.d_model, dtype=torch.float64)
    with pytest.raises(ValueError, match="no hook point 'blocks.0.hook_resid_pots'.*did you mean"):
        ts.attribute(model, TEXT, ts.DirectionScope(v, at="blocks.0.hook_resid_pots"))
    with pytest.raises(ValueError, match="vector has 5 entries; blocks.0.hook_resid_post's last"):
        ts.attribute(model, TEXT, ts.DirectionScope(torch.ones(5), at="blocks.0.hook_resid_post"))
    with pytest.raises(ValueError, match="shape"):
        ts.attribute(model, TEXT, ts.DirectionScope(v, at="blocks.0.attn.hook_z"))
    assert attached_hooks(model) == 0


def test_the_internal_direction_works_in_the_matrix_and_by_name(model):
    from tlscopes.core.matrix import attribution_matrix

    v = torch.ones(model.cfg.d_model, dtype=torch.float64)
    scope = ts.DirectionScope(v, at="blocks.1.hook_resid_pre")
    matrix = attribution_matrix(model, TEXT, scope, positions=[3, 6])
    row = ts.attribute(model, TEXT, scope, position=6)
    torch.testing.assert_close(matrix.scores[1], row.scores[0], rtol=1e-9, atol=1e-12)


# The result object -------------------------------------------------------------------------------


def test_heads_need_hook_z(monkeypatch):
    from tlscopes.testing import toy

    model = toy.build_bridge()
    hooks = dict(model.hook_dict)
    hooks.pop("blocks.1.attn.hook_z")
    monkeypatch.setattr(type(model), "hook_dict", property(lambda self: hooks), raising=False)
    with pytest.raises(ValueError, match="no hook point 'blocks.1.attn.hook_z'.*heads=True"):
        attribute_layers(model, TEXT, ts.TemperatureScope(), heads=True)
