"""TransformerBridge: fused attention gives the bridge's own attention, and steps aside where it
can't."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tlscopes.models.fused_attention import bridge_module_supports_fusion, fused_attention

PROMPTS = ["the capital of france is paris and the capital of italy is", "one two three four"]


@pytest.fixture(scope="module")
def bridge():
    # Tiny Llama (RMSNorm, rotary, grouped-query attention) in float32: the bridge takes its
    # softmax in float32, so that is the precision both paths share.
    return helpers.build_bridge(helpers.build_hf_llama(dtype=torch.float32))


def test_every_llama_attention_is_switched_and_restored(bridge):
    with fused_attention(bridge) as switched:
        assert switched == bridge.cfg.n_layers
    assert not any("forward" in block.attn.__dict__ for block in bridge.blocks)


def test_logits_equal_the_bridge_attention(bridge):
    actual, expected = helpers.fused_and_explicit_logits(bridge, PROMPTS[0])
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "scope", [ts.FisherScope(rank=2), ts.TemperatureScope(), ts.SemanticScope(" rome")]
)
def test_scores_equal_the_bridge_attention_path(bridge, scope):
    fused = ts.attribute(bridge, PROMPTS, scope)
    with helpers.explicit_attention(bridge):
        explicit = ts.attribute(bridge, PROMPTS, scope)
    torch.testing.assert_close(fused.scores, explicit.scores, rtol=1e-5, atol=1e-7)


def record_hook_names(bridge, hook_filter) -> list[str]:
    seen = []

    def record(tensor, *, hook):
        seen.append(hook.name)
        return tensor

    with torch.no_grad(), bridge.hooks(fwd_hooks=[(hook_filter, record)]):
        with fused_attention(bridge):
            bridge(bridge.to_tokens(PROMPTS[0]))
    return seen


def test_every_hook_but_scores_and_pattern_fires_as_on_the_bridge_path(bridge):
    # A hook on every point, the pattern included, keeps the bridge's own attention everywhere.
    everything = record_hook_names(bridge, lambda name: True)
    internals = ("hook_pattern", "hook_attn_scores")
    assert any(name.endswith(internals) for name in everything)
    fused = record_hook_names(bridge, lambda name: not name.endswith(internals))
    assert fused == [name for name in everything if not name.endswith(internals)]
    assert any(name.endswith("hook_rot_q") for name in fused)


def test_padding_masks_keep_the_bridge_attention(bridge):
    # A mask that hides a key the causal mask would show is not the plain causal mask.
    from tlscopes.models.fused_attention import _is_plain_causal_mask

    length = 5
    causal = torch.zeros(1, 1, length, length)
    causal.masked_fill_(torch.ones(length, length, dtype=torch.bool).triu(1), torch.finfo().min)
    assert _is_plain_causal_mask(causal, length)
    assert _is_plain_causal_mask(None, length)
    padded = causal.clone()
    padded[..., 0] = float("-inf")
    assert not _is_plain_causal_mask(padded, length)
    assert not _is_plain_causal_mask(causal[..., :4], length)
    assert _is_plain_causal_mask(causal == 0, length)


def test_the_mask_check_remembers_only_an_unchanged_mask():
    from tlscopes.models.fused_attention import CausalMaskCheck

    length = 5
    mask = torch.zeros(1, 1, length, length)
    mask.masked_fill_(torch.ones(length, length, dtype=torch.bool).triu(1), torch.finfo().min)
    check = CausalMaskCheck()
    assert check(mask, length) and check(mask, length)
    assert not check(mask, length + 1)
    mask[..., 0] = float("-inf")  # modified in place after passing: checked again
    assert not check(mask, length)
    assert not check(mask.clone(), length)
    assert check(None, length)


def test_a_float64_bridge_keeps_its_own_attention():
    # Switched, but every call runs the bridge's own forward (its float32 softmax included), so
    # scores are bit-identical to the explicit path: the exactness tests see the bridge itself.
    bridge64 = helpers.build_bridge()
    plain = ts.attribute(bridge64, PROMPTS, ts.TemperatureScope())
    with helpers.explicit_attention(bridge64):
        explicit = ts.attribute(bridge64, PROMPTS, ts.TemperatureScope())
    torch.testing.assert_close(plain.scores, explicit.scores, rtol=0, atol=0)


def test_a_gpt2_bridge_keeps_its_own_attention():
    gpt2 = helpers.build_bridge(helpers.build_hf_gpt2())
    assert not bridge_module_supports_fusion(gpt2.blocks[0].attn)
    with fused_attention(gpt2) as switched:
        assert switched == 0


def test_restored_after_an_error_inside_the_forward_pass(bridge):
    def fail(tensor, *, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with bridge.hooks(fwd_hooks=[("blocks.1.attn.hook_z", fail)]):
            ts.attribute(bridge, PROMPTS[0], ts.TemperatureScope())
    assert not any("forward" in block.attn.__dict__ for block in bridge.blocks)


def bridge_attention_classes() -> set[type]:
    """Every attention bridge class TransformerLens defines."""
    import transformer_lens.model_bridge.generalized_components as components
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    return helpers.subclasses_in(components, AttentionBridge)


def test_no_attention_bridge_class_beyond_the_allow_list_is_fused(bridge):
    attention = bridge.blocks[0].attn
    original = type(attention)
    assert bridge_module_supports_fusion(attention)
    classes = bridge_attention_classes()
    assert original in classes
    try:
        for cls in classes:
            object.__setattr__(attention, "__class__", cls)
            expected = cls.__name__ == "PositionEmbeddingsAttentionBridge"
            assert bridge_module_supports_fusion(attention) == expected, cls
    finally:
        object.__setattr__(attention, "__class__", original)


def test_a_hugging_face_attention_beyond_the_allow_list_keeps_its_own_forward(bridge):
    hf_attention = bridge.blocks[0].attn.original_component
    original = type(hf_attention)
    # A subclass may compute attention its own way, like Qwen3's q/k norms on LlamaAttention.
    hf_attention.__class__ = type("CustomAttention", (original,), {})
    try:
        assert not bridge_module_supports_fusion(bridge.blocks[0].attn)
        with fused_attention(bridge) as switched:
            assert switched == bridge.cfg.n_layers - 1
    finally:
        hf_attention.__class__ = original


def test_a_left_padding_tokenizer_still_fuses(monkeypatch):
    # Without padding in the batch, the mask the bridge builds is the plain causal one.
    model = helpers.build_bridge(helpers.build_hf_llama(dtype=torch.float32))
    model.tokenizer.padding_side = "left"
    calls = helpers.kernel_calls(monkeypatch)
    actual, expected = helpers.fused_and_explicit_logits(model, PROMPTS[0])
    assert len(calls) == model.cfg.n_layers
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
