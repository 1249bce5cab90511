"""attribute_features: exact against torch.func on tiny float64 models, for SAEs written in each
file format (Gemma Scope 2, sparsify, SAELens), every nonlinearity and hook point."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.unit.sae.cases import CASES, TEXT, attached_hooks, firing_and_silent, norms, reference
from tlscopes.sae.features import active_features, check_sae_fits


def assert_scores(actual, expected):
    peak = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual.double(), expected, rtol=1e-6, atol=1e-9 * max(peak, 1.0))


@pytest.mark.parametrize("case", sorted(CASES))
def test_active_features_are_exact(model, case, tmp_path):
    writer, hook = CASES[case]
    written = writer(tmp_path, model)
    sae = ts.load_sae(written.path)
    assert sae.hook == hook
    tokens = model.to_tokens(TEXT)[0]
    position = len(tokens) - 3
    pre, activations, gradient = reference(model, tokens, position, written, hook)
    result = ts.attribute_features(model, tokens, sae, position=position)
    expected_ids = (activations > 0).nonzero().flatten()
    expected_ids = expected_ids[torch.argsort(activations[expected_ids], descending=True)]
    assert result.features.tolist() == expected_ids.tolist()
    torch.testing.assert_close(result.pre_activations, pre[expected_ids], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(result.activations, activations[expected_ids], rtol=1e-9, atol=1e-10)
    assert bool(result.fires.all())
    assert_scores(result.scores, norms(gradient)[expected_ids])
    assert bool((result.scores[:, position + 1 :] == 0).all())
    assert attached_hooks(model) == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_given_ids_include_a_feature_that_does_not_fire(model, case, tmp_path):
    writer, hook = CASES[case]
    written = writer(tmp_path, model)
    sae = ts.load_sae(written.path)
    tokens = model.to_tokens(TEXT)[0]
    position = len(tokens) - 1
    pre, activations, gradient = reference(model, tokens, position, written, hook)
    firing, silent = firing_and_silent(activations)
    result = ts.attribute_features(model, TEXT, sae, [silent, firing], directions_per_pass=1)
    assert result.features.tolist() == [silent, firing]
    assert result.fires.tolist() == [False, True]
    assert float(result.activations[0]) == 0.0
    torch.testing.assert_close(result.pre_activations, pre[[silent, firing]], rtol=1e-9, atol=1e-10)
    assert_scores(result.scores, norms(gradient)[[silent, firing]])
    # The batched passes give what one pass per feature gives.
    batched = ts.attribute_features(model, TEXT, sae, [silent, firing], directions_per_pass=2)
    torch.testing.assert_close(batched.scores, result.scores, rtol=1e-9, atol=1e-12)


def test_each_row_equals_a_feature_scope_attribution(model, tmp_path):
    writer, _ = CASES["gemma-jumprelu-resid_post"]
    sae = ts.load_sae(writer(tmp_path, model).path)
    result = ts.attribute_features(model, TEXT, sae, list(range(sae.d_sae)))
    for row, feature in enumerate(result.features.tolist()[:6]):
        single = ts.attribute(model, TEXT, ts.FeatureScope(sae, feature))
        torch.testing.assert_close(result.scores[row], single.scores[0], rtol=1e-9, atol=1e-12)
        assert single.details["fires"] == [bool(result.fires[row])]


def test_bos_is_a_sink_left_out_of_the_default_views(model, tmp_path):
    writer, _ = CASES["sparsify-topk-resid_post"]
    sae = ts.load_sae(writer(tmp_path, model).path)
    result = ts.attribute_features(model, TEXT, sae)
    kept = ts.attribute_features(model, TEXT, sae, include_bos=True)
    torch.testing.assert_close(result.scores, kept.scores)
    tokens = model.to_tokens(TEXT)[0]
    bos = getattr(model.tokenizer, "bos_token_id", None)
    if bos is not None and int(tokens[0]) == bos:
        assert result.sink_positions == [0]
        assert 0 not in result.top_tokens(int(result.features[0]), k=100)["position"].tolist()
        assert 0 in kept.top_tokens(int(kept.features[0]), k=100)["position"].tolist()
        sinks = result.sink_scores()
        assert len(sinks) == len(result) and bool((sinks["position"] == 0).all())
        assert torch.isnan(result.token_map(int(result.features[0]))[0])
    else:
        assert result.sink_positions == []


def test_nothing_fires_gives_an_empty_result(model, tmp_path):
    writer, _ = CASES["saelens-relu-hook_z"]
    written = writer(tmp_path, model)
    sae = ts.load_sae(written.path)
    silent = ts.SAE.from_tensors(
        W_enc=sae.W_enc, b_enc=sae.b_enc - 1e3, hook=sae.hook, activation="relu"
    )
    result = ts.attribute_features(model, TEXT, silent)
    assert len(result) == 0 and result.scores.shape == (0, len(result.tokens))
    assert result.top_features(-1).empty


def test_refusals(model, tmp_path):
    writer, _ = CASES["gemma-jumprelu-resid_post"]
    sae = ts.load_sae(writer(tmp_path, model).path)
    with pytest.raises(ValueError, match="'active' or a list"):
        ts.attribute_features(model, TEXT, sae, "all")
    with pytest.raises(ValueError, match=r"outside this SAE's \[0, 24\)"):
        ts.attribute_features(model, TEXT, sae, [24])
    with pytest.raises(ValueError, match="repeated"):
        ts.attribute_features(model, TEXT, sae, [1, 1])
    with pytest.raises(ValueError, match="one prompt"):
        ts.attribute_features(model, [TEXT, TEXT], sae)
    wide = ts.SAE.from_tensors(
        W_enc=torch.zeros(model.cfg.d_model + 3, 4), b_enc=torch.zeros(4), hook=sae.hook
    )
    message = rf"d_in = {model.cfg.d_model + 3}.*is {model.cfg.d_model} wide"
    with pytest.raises(ValueError, match=message):
        check_sae_fits(model, wide)
    with pytest.raises(ValueError, match=message):
        ts.attribute_features(model, TEXT, wide)
    elsewhere = ts.SAE.from_tensors(
        W_enc=torch.zeros(model.cfg.d_model, 4),
        b_enc=torch.zeros(4),
        hook="blocks.9.hook_resid_post",
    )
    with pytest.raises(ValueError, match="reads blocks.9.hook_resid_post, which .* does not have"):
        ts.attribute_features(model, TEXT, elsewhere)
    assert attached_hooks(model) == 0


def test_active_features_follow_each_nonlinearity():
    pre = torch.tensor([0.5, -1.0, 2.0, 0.1, 3.0])
    relu = ts.SAE.from_tensors(W_enc=torch.zeros(2, 5), b_enc=torch.zeros(5), hook="h")
    assert active_features(relu, pre).tolist() == [4, 2, 0, 3]
    topk = ts.SAE.from_tensors(
        W_enc=torch.zeros(2, 5), b_enc=torch.zeros(5), hook="h", activation="topk", k=2
    )
    assert active_features(topk, pre).tolist() == [4, 2]
    jump = ts.SAE.from_tensors(
        W_enc=torch.zeros(2, 5),
        b_enc=torch.zeros(5),
        hook="h",
        activation="jumprelu",
        threshold=torch.tensor([0.6, 0.0, 1.0, 0.0, 5.0]),
    )
    assert active_features(jump, pre).tolist() == [2, 3]
