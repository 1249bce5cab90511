"""HookedTransformer configs built from a Hugging Face config (tlscopes.models.hooked_configs).

Loading each family's directory end to end is in test_models.py and test_architectures.py.
"""

from __future__ import annotations

import pytest
import transformers

from tests.models import HAS_HOOKED
from tlscopes.models.hooked_configs import gemma_config_dict, hooked_config_dict

needs_hooked = pytest.mark.skipif(
    not HAS_HOOKED,
    reason="needs HookedTransformer (TransformerLens 3.x); CI runs a 3.x environment",
)

GEMMA3_270M = dict(
    vocab_size=262144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    query_pre_attn_scalar=256,
    sliding_window=512,
    max_position_embeddings=32768,
    rope_parameters={
        "full_attention": {"rope_theta": 1e6, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"},
    },
    layer_types=[
        "full_attention" if index % 6 == 5 else "sliding_attention" for index in range(18)
    ],
)


@needs_hooked
@pytest.mark.parametrize(
    ("registered_name", "config_class", "fields"),
    [
        ("google/gemma-2-2b", "Gemma2Config", {}),  # transformers' defaults are Gemma-2-2B's
        ("google/gemma-3-270m", "Gemma3TextConfig", GEMMA3_270M),
    ],
)
def test_gemma_config_from_hugging_face_equals_the_registered_one(
    registered_name, config_class, fields
):
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    hf_config = getattr(transformers, config_class)(**fields)
    hf_config.architectures = ["Gemma3ForCausalLM" if "3" in config_class else "Gemma2ForCausalLM"]
    ours = HookedTransformerConfig(**gemma_config_dict(hf_config)).to_dict()
    # The registered dicts are name-based: TransformerLens reads no file to build them.
    registered = HookedTransformerConfig(**convert_hf_model_config(registered_name)).to_dict()
    # The registered Gemma-3-270M dict caps its 32,768 positions at 8,192 to save memory.
    ours.pop("n_ctx"), registered.pop("n_ctx")
    for field in ("tokenizer_name", "model_name", "quantization_method"):
        ours.pop(field, None), registered.pop(field, None)
    assert ours == registered


def gemma3_config(**fields) -> transformers.Gemma3TextConfig:
    config = transformers.Gemma3TextConfig(**{**GEMMA3_270M, **fields})
    config.architectures = ["Gemma3ForCausalLM"]
    return config


def test_gemma3_linear_rope_scaling_becomes_the_global_scaling_factor():
    rope = dict(GEMMA3_270M["rope_parameters"])
    rope["full_attention"] = {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0}
    fields = gemma_config_dict(gemma3_config(rope_parameters=rope))
    assert fields["rotary_scaling_factor"] == 8.0
    assert (fields["rotary_base"], fields["rotary_base_local"]) == (1e6, 1e4)


def test_a_rope_type_the_conversion_does_not_reproduce_is_refused():
    rope = dict(GEMMA3_270M["rope_parameters"])
    rope["full_attention"] = {"rope_theta": 1e6, "rope_type": "dynamic", "factor": 2.0}
    with pytest.raises(ValueError, match=r"rope_type 'dynamic'.*kind='bridge'"):
        gemma_config_dict(gemma3_config(rope_parameters=rope))


def test_bidirectional_gemma3_is_refused():
    with pytest.raises(ValueError, match=r"bidirectional.*kind='bridge'"):
        gemma_config_dict(gemma3_config(use_bidirectional_attention=True))


def test_a_config_without_architectures_says_how_to_name_one(tmp_path):
    with pytest.raises(ValueError, match=r"config.architectures"):
        hooked_config_dict(transformers.GPT2Config(), tmp_path)


@needs_hooked
def test_gpt2_gets_the_n_ctx_transformers_5_dropped(tmp_path):
    config = transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4)
    config.architectures = ["GPT2LMHeadModel"]
    fields = hooked_config_dict(config, tmp_path)
    assert fields["n_ctx"] == 64 and fields["original_architecture"] == "GPT2LMHeadModel"
