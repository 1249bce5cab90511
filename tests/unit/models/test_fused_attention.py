"""HookedTransformer: the fused attention path gives TransformerLens' own attention, and steps
aside where it can't. (TransformerBridge: test_fused_attention_bridge.py.)"""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED
from tlscopes.models.fused_attention import fused_attention, module_supports_fusion

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


def left_padding_model():
    # Gemma's tokenizer pads on the left; TransformerLens then passes a padding mask on every
    # forward pass, all ones when nothing is padded.
    model = helpers.build_hooked(normalization_type="RMS", positional_embedding_type="rotary")
    model.tokenizer.padding_side = "left"
    return model


def test_an_all_ones_padding_mask_is_no_mask(monkeypatch):
    model = left_padding_model()
    calls = helpers.kernel_calls(monkeypatch)
    actual, expected = helpers.fused_and_explicit_logits(model, PROMPTS[0])
    assert len(calls) == model.cfg.n_layers
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    fused = ts.attribute(model, PROMPTS, ts.FisherScope(rank=2))
    with helpers.explicit_attention(model):
        explicit = ts.attribute(model, PROMPTS, ts.FisherScope(rank=2))
    torch.testing.assert_close(fused.scores, explicit.scores, rtol=1e-10, atol=1e-12)


def test_a_padding_mask_that_hides_a_token_keeps_the_explicit_attention(monkeypatch):
    model = left_padding_model()
    tokens = model.to_tokens(PROMPTS)  # the shorter prompt is padded on the left
    assert int(tokens[1, 0]) == model.tokenizer.pad_token_id
    calls = helpers.kernel_calls(monkeypatch)
    with torch.no_grad():
        with fused_attention(model) as switched:
            fused = model(tokens)
        explicit = model(tokens)
    assert switched == model.cfg.n_layers and calls == []
    torch.testing.assert_close(fused, explicit, rtol=0, atol=0)


def attention_subclasses() -> set[type]:
    """Every attention class TransformerLens defines."""
    import transformer_lens.components as components

    return helpers.subclasses_in(components, components.AbstractAttention)


FUSABLE_CLASSES = {"Attention", "GroupedQueryAttention"}


def test_no_attention_class_beyond_the_allow_list_is_fused():
    model = helpers.build_hooked(normalization_type="RMS", positional_embedding_type="rotary")
    attention = model.blocks[0].attn
    original = type(attention)
    classes = attention_subclasses()
    assert {cls.__name__ for cls in classes} >= FUSABLE_CLASSES
    try:
        for cls in classes:
            attention.__class__ = cls
            assert module_supports_fusion(attention) == (cls.__name__ in FUSABLE_CLASSES), cls
    finally:
        attention.__class__ = original


# Every HookedTransformerConfig field as of TransformerLens 3.9, each reviewed for what it does
# to attention: checked by module_supports_fusion (attention_dir, positional_embedding_type,
# use_local_attn / attn_types / window_size, clip_qkv, use_logn_attn, use_attention_sinks,
# attn_scores_soft_cap, use_attn_result, load_in_4bit, original_architecture for OLMo's inline
# norms), reproduced by the fused forward through the module's own pieces (q/k/v and QK norms in
# calculate_qkv_matrices, every rotary variant in apply_rotary, attn_scale with its
# per-layer factor, grouped keys), or not about attention. A new field may be a new variant.
REVIEWED_CONFIG_FIELDS = set(
    """d_model d_head n_layers n_ctx n_heads d_mlp d_vocab device use_attn_result
    use_split_qkv_input default_prepend_bos positional_embedding_type n_key_value_heads
    attn_only gated_mlp uses_rms_norm eps layer_norm_folding act_fn normalization_type
    num_experts experts_per_token final_rms dtype model_name use_attn_scale attn_scale
    use_hook_mlp_in use_attn_in use_qk_norm clip_qkv use_logn_attn train_seq_length
    use_dynamic_ntk_rope use_local_attn ungroup_grouped_query_attention original_architecture
    from_checkpoint checkpoint_index checkpoint_label_type checkpoint_value tokenizer_name
    window_size attn_types init_mode n_devices attention_dir seed initializer_range
    init_weights scale_attn_by_inverse_layer_idx d_vocab_out parallel_attn_mlp rotary_dim
    n_params use_hook_tokens tokenizer_prepends_bos post_embedding_ln rotary_base
    rotary_base_local rotary_scaling_factor trust_remote_code rotary_adjacent_pairs
    load_in_4bit quantization_method relative_attention_max_distance
    relative_attention_num_buckets decoder_start_token_id tie_word_embeddings
    use_normalization_before_and_after attn_scores_soft_cap output_logits_soft_cap
    use_NTK_by_parts_rope NTK_by_parts_low_freq_factor NTK_by_parts_high_freq_factor
    NTK_by_parts_factor NTK_original_ctx_len use_yarn_rope yarn_factor yarn_attention_factor
    yarn_beta_fast yarn_beta_slow yarn_original_max_position_embeddings yarn_truncate
    yarn_global_attn_only use_attention_sinks norm_topk_prob""".split()
)


def test_every_config_field_has_been_reviewed_for_the_fused_path():
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    fields = {field.name for field in dataclasses.fields(HookedTransformerConfig)}
    unreviewed = sorted(fields - REVIEWED_CONFIG_FIELDS)
    assert not unreviewed, (
        f"HookedTransformerConfig has new fields {unreviewed}: check whether each changes "
        "attention; if so make module_supports_fusion refuse it (or the fused forward compute "
        "it), then add it to REVIEWED_CONFIG_FIELDS"
    )
