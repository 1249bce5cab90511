"""HookedTransformer: the fused attention path gives TransformerLens' own attention, and steps
aside where it can't. (TransformerBridge: test_fused_attention_bridge.py.)"""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED
from tlscopes.fused_attention import fused_attention, module_supports_fusion

pytestmark = pytest.mark.skipif(
    not HAS_HOOKED, reason="HookedTransformer needs TransformerLens 3.x"
)

PROMPTS = ["the capital of france is paris and the capital of italy is", "one two three four"]

HOOKED_VARIANTS = {
    "ln-standard": dict(),
    "rms-rotary": dict(normalization_type="RMS", positional_embedding_type="rotary"),
    "rms-rotary-grouped-query": dict(
        normalization_type="RMS", positional_embedding_type="rotary", n_key_value_heads=1
    ),
    "ln-shortformer": dict(positional_embedding_type="shortformer"),
}


@pytest.fixture(scope="module", params=sorted(HOOKED_VARIANTS))
def hooked(request):
    return helpers.build_hooked(**HOOKED_VARIANTS[request.param])


def test_every_module_of_a_plain_causal_model_is_switched_and_restored(hooked):
    with fused_attention(hooked) as switched:
        assert switched == hooked.cfg.n_layers
        assert all("forward" in block.attn.__dict__ for block in hooked.blocks)
    assert not any("forward" in block.attn.__dict__ for block in hooked.blocks)


def test_logits_equal_the_explicit_attention(hooked):
    actual, expected = helpers.fused_and_explicit_logits(hooked, PROMPTS[0])
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "scope", [ts.FisherScope(rank=2), ts.TemperatureScope(), ts.SemanticScope(" rome")]
)
def test_scores_equal_the_explicit_attention_path(hooked, scope):
    fused = ts.attribute(hooked, PROMPTS, scope)
    with helpers.explicit_attention(hooked):
        explicit = ts.attribute(hooked, PROMPTS, scope)
    torch.testing.assert_close(fused.scores, explicit.scores, rtol=1e-10, atol=1e-12)


def test_hooks_on_the_pattern_still_fire():
    model = helpers.build_hooked(normalization_type="RMS", positional_embedding_type="rotary")
    seen = []

    def record(tensor, *, hook):
        seen.append(hook.name)
        return tensor

    with model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"), record)]):
        ts.attribute(model, PROMPTS[0], ts.TemperatureScope())
    assert seen == [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]


def test_other_attention_hooks_fire_on_the_fused_path():
    model = helpers.build_hooked(normalization_type="RMS", positional_embedding_type="rotary")
    seen = []

    def record(tensor, *, hook):
        seen.append(hook.name.split(".")[-1])
        return tensor

    names = ("hook_q", "hook_rot_k", "hook_z")
    with model.hooks(fwd_hooks=[(lambda name: name.split(".")[-1] in names, record)]):
        with fused_attention(model) as switched:
            assert switched == model.cfg.n_layers
            model(model.to_tokens(PROMPTS[0]))
    assert sorted(seen) == sorted(names * model.cfg.n_layers)


def test_variants_the_kernel_cannot_express_keep_their_own_forward():
    alibi = helpers.build_hooked(positional_embedding_type="alibi")
    assert not module_supports_fusion(alibi.blocks[0].attn)
    local = helpers.build_hooked(
        use_local_attn=True,
        attn_types=["global", "local"],
        window_size=3,
        positional_embedding_type="rotary",
    )
    assert [module_supports_fusion(block.attn) for block in local.blocks] == [True, False]
    with fused_attention(local) as switched:
        assert switched == 1
    actual, expected = helpers.fused_and_explicit_logits(local, PROMPTS[0])
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_restored_after_an_error_inside_the_forward_pass():
    model = helpers.build_hooked()

    def fail(tensor, *, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", fail)]):
            ts.attribute(model, PROMPTS[0], ts.TemperatureScope())
    assert not any("forward" in block.attn.__dict__ for block in model.blocks)
    assert not any(hook_point._forward_hooks for hook_point in model.hook_dict.values())


def test_an_attention_subclass_keeps_its_own_forward():
    from transformer_lens.components import Attention

    model = helpers.build_hooked()

    class Custom(Attention):
        pass

    block = model.blocks[0]
    original_class = type(block.attn)
    block.attn.__class__ = Custom
    try:
        assert not module_supports_fusion(block.attn)
        with fused_attention(model) as switched:
            assert switched == model.cfg.n_layers - 1
    finally:
        block.attn.__class__ = original_class
