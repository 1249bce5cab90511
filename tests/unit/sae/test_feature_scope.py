"""FeatureScope: exact against torch.func through attribute and attribute_layers (heads
included), composing with attribute_many and attribute_generation, saved with the SAE's source
and hash; a feature that does not fire is explained all the same."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.unit.sae.cases import CASES, TEXT, attached_hooks, firing_and_silent, norms, reference
from tlscopes.core.hooks import block_of


def is_bridge(model):
    return type(model).__name__ == "TransformerBridge"


def close(actual, expected):
    peak = max(float(expected.abs().max()), 1.0)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-6, atol=1e-9 * peak)


@pytest.mark.parametrize("case", sorted(CASES))
def test_attribute_is_exact_for_firing_and_silent_features(model, case, tmp_path):
    writer, hook = CASES[case]
    written = writer(tmp_path, model)
    sae = ts.load_sae(written.path)
    tokens = model.to_tokens(TEXT)[0]
    position = len(tokens) - 2
    pre, activations, gradient = reference(model, tokens, position, written, hook)
    for feature in firing_and_silent(activations):
        result = ts.attribute(model, tokens, ts.FeatureScope(sae, feature), position=position)
        close(result.scores[0], norms(gradient)[feature])
        assert result.details["fires"] == [bool(activations[feature] > 0)]
        assert result.details["pre_activation"][0] == pytest.approx(float(pre[feature]), rel=1e-9)
        assert result.details["activation"][0] == pytest.approx(
            float(activations[feature]), rel=1e-9, abs=1e-12
        )
        assert result.details["sae"]["sha256"] == sae.sha256
    assert attached_hooks(model) == 0


@pytest.mark.parametrize(
    "case",
    ["gemma-jumprelu-hook_z", "saelens-jumprelu-layer_norm-resid_post", "sparsify-topk-mlp_out"],
)
def test_attribute_layers_with_heads_is_exact(model, case, tmp_path):
    writer, hook = CASES[case]
    written = writer(tmp_path, model)
    sae = ts.load_sae(written.path)
    tokens = model.to_tokens(TEXT)[0]
    position = len(tokens) - 1
    _, activations, _ = reference(model, tokens, position, written, hook)
    _, silent = firing_and_silent(activations)
    result = ts.attribute_layers(model, tokens, ts.FeatureScope(sae, silent), heads=True)
    block = block_of(hook, model.cfg.n_layers)
    n_heads = model.cfg.n_heads
    for layer in range(model.cfg.n_layers):
        if layer > block:
            assert bool((result.scores[0, layer] == 0).all())
            assert bool((result.head_scores[0, layer] == 0).all())
            continue
        resid = f"blocks.{layer}.hook_resid_pre"
        _, _, gradient = reference(model, tokens, position, written, hook, input_hook=resid)
        close(result.scores[0, layer], norms(gradient)[silent])
        z = f"blocks.{layer}.attn.hook_z"
        _, _, gradient = reference(model, tokens, position, written, hook, input_hook=z)
        per_head = gradient[silent].reshape(len(tokens), n_heads, -1).norm(dim=-1)  # [pos, head]
        close(result.head_scores[0, layer], per_head.T)
    assert attached_hooks(model) == 0


def test_attribute_many_equals_one_call_each(model, tmp_path):
    gemma = ts.load_sae(CASES["gemma-jumprelu-hook_z"][0](tmp_path / "a", model).path)
    topk = ts.load_sae(CASES["sparsify-topk-resid_post"][0](tmp_path / "b", model).path)
    scopes = [ts.FeatureScope(gemma, 3), ts.FeatureScope(topk, 4), ts.FeatureScope(gemma, 7)]
    scopes.append(ts.FisherScope())
    together = ts.attribute_many(model, TEXT, scopes)
    for scope, result in zip(scopes, together, strict=True):
        alone = ts.attribute(model, TEXT, scope)
        torch.testing.assert_close(result.scores, alone.scores, rtol=1e-9, atol=1e-12)
        assert result.details == alone.details


def test_generation_steps_equal_attribute_at_their_positions(model, tmp_path):
    sae = ts.load_sae(CASES["gemma-jumprelu-mlp_out"][0](tmp_path, model).path)
    scope = ts.FeatureScope(sae, 2)
    generated = ts.attribute_generation(model, "the person grew up in", scope, max_new_tokens=3)
    ids = generated.token_ids[0]
    prompt_length = int(generated.prompt_lengths[0])
    for step in range(int(generated.generated_lengths[0])):
        position = prompt_length + step - 1
        single = ts.attribute(model, ids[: len(generated.tokens[0])], scope, position=position)
        torch.testing.assert_close(
            generated.scores[0, step, : len(generated.tokens[0])],
            single.scores[0],
            rtol=1e-6,
            atol=1e-10,
        )


def test_save_and_load_keep_the_sae_source_and_hash(model, tmp_path):
    sae = ts.load_sae(CASES["sparsify-topk-mlp_out"][0](tmp_path, model).path)
    result = ts.attribute(model, TEXT, ts.FeatureScope(sae, 5))
    result.save(tmp_path / "result.json")
    loaded = ts.Attribution.load(tmp_path / "result.json")
    assert loaded.details["sae"]["sha256"] == sae.sha256
    assert loaded.details["sae"]["source"] == sae.source
    assert loaded.info["scope"]["name"] == "FeatureScope" and loaded.info["scope"]["feature"] == 5
    assert sae.sha256[:16] in loaded.info["scope"]["sae"]
    torch.testing.assert_close(loaded.scores, result.scores)
    html = result.to_html().html
    assert "feature" in html and sae.sha256 in html


def test_refusals_leave_no_hook_behind(model, tmp_path):
    sae = ts.load_sae(CASES["gemma-jumprelu-resid_post"][0](tmp_path, model).path)
    with pytest.raises(ValueError, match=r"outside this SAE's \[0, 24\)"):
        ts.FeatureScope(sae, 24)
    with pytest.raises(TypeError, match="integer index"):
        ts.FeatureScope(sae, "3")
    with pytest.raises(TypeError, match="tlscopes SAE"):
        ts.FeatureScope(object(), 1)
    wide = ts.SAE.from_tensors(
        W_enc=torch.zeros(model.cfg.d_model + 1, 4), b_enc=torch.zeros(4), hook=sae.hook
    )
    with pytest.raises(
        ValueError, match=rf"d_in = {model.cfg.d_model + 1}.*{model.cfg.d_model} wide"
    ):
        ts.attribute(model, TEXT, ts.FeatureScope(wide, 0))
    elsewhere = ts.SAE.from_tensors(
        W_enc=sae.W_enc, b_enc=sae.b_enc, hook="blocks.0.hook_resid_pots"
    )
    with pytest.raises(ValueError, match="no hook point 'blocks.0.hook_resid_pots'"):
        ts.attribute(model, TEXT, ts.FeatureScope(elsewhere, 0))
    assert attached_hooks(model) == 0
