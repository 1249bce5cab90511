"""HookedTransformer configs for a local Hugging Face directory, built offline from its config.

TransformerLens 3.x converts most families' Hugging Face configs itself
(``convert_hf_model_config`` on a directory), but two cases fail offline:

* GPT-2: its converter reads ``n_ctx``, which transformers 5 no longer puts in ``GPT2Config``
  (``n_positions`` holds the same number), so it is added back;
* Gemma, Gemma 2 and Gemma 3: TransformerLens knows these only by registered name (its config
  dicts are written out per checkpoint), so a directory is refused with ``NotImplementedError``
  whatever its name. :func:`gemma_config_dict` builds the same dict from the Hugging Face config;
  on Gemma-3-270M it equals the registered ``google/gemma-3-270m`` dict in every field but
  ``n_ctx`` (there the registered dict caps 32,768 at 8,192; tested).

The weights then go through TransformerLens' own converter (``get_pretrained_state_dict`` with
``hf_model=``), which needs nothing but ``original_architecture``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

GEMMA_ARCHITECTURES = ("GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM")

# Hugging Face's names for its two attention layer types, and TransformerLens' names for them.
_ATTENTION_TYPES = {"sliding_attention": "local", "full_attention": "global"}


def architecture_of(hf_config: Any) -> str:
    architectures = getattr(hf_config, "architectures", None) or []
    if not architectures:
        raise ValueError(
            f"The Hugging Face config of model type {hf_config.model_type!r} names no "
            "architecture; set config.architectures (e.g. ['LlamaForCausalLM']) in config.json"
        )
    return architectures[0]


def hooked_config_dict(hf_config: Any, config_dir: Path) -> dict[str, Any]:
    """The HookedTransformerConfig fields for a Hugging Face config, without network access.

    Args:
        hf_config: the model's Hugging Face config.
        config_dir: an empty scratch directory (TransformerLens reads configs from a directory).

    Raises:
        ValueError: TransformerLens has no HookedTransformer conversion for the family, or the
            Gemma config uses a feature this conversion does not reproduce.
    """
    architecture = architecture_of(hf_config)
    if architecture in GEMMA_ARCHITECTURES:
        return gemma_config_dict(hf_config)
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    fields = json.loads(hf_config.to_json_string(use_diff=False))
    if architecture == "GPT2LMHeadModel":
        fields.setdefault("n_ctx", fields["n_positions"])
    (config_dir / "config.json").write_text(json.dumps(fields))
    try:
        return convert_hf_model_config(str(config_dir))
    except NotImplementedError as error:
        raise ValueError(
            f"HookedTransformer (kind='hooked') cannot load {architecture}: the installed "
            f"TransformerLens has no conversion for this family ({error}); load it with "
            "kind='bridge' (TransformerBridge)"
        ) from error


def gemma_config_dict(hf_config: Any) -> dict[str, Any]:
    """HookedTransformerConfig fields for a Gemma, Gemma 2 or Gemma 3 Hugging Face config.

    The fields follow TransformerLens' registered Gemma configs: RMSNorm (its (1 + w) scale is
    added into the weights by TransformerLens' converter), rotary positions over the whole head,
    gated MLP, attention scores divided by sqrt(query_pre_attn_scalar); Gemma 2 and 3 add
    norms after attention and MLP and alternate sliding-window ("local") and global layers;
    Gemma 2 soft-caps attention scores and logits; Gemma 3 normalises queries and keys and
    rotates local layers with their own base.
    """
    architecture = architecture_of(hf_config)
    head_dim = hf_config.head_dim
    scale_base = getattr(hf_config, "query_pre_attn_scalar", None) or head_dim
    fields: dict[str, Any] = {
        "d_model": hf_config.hidden_size,
        "d_head": head_dim,
        "n_heads": hf_config.num_attention_heads,
        "n_key_value_heads": hf_config.num_key_value_heads,
        "d_mlp": hf_config.intermediate_size,
        "n_layers": hf_config.num_hidden_layers,
        "n_ctx": hf_config.max_position_embeddings,
        "eps": hf_config.rms_norm_eps,
        "d_vocab": hf_config.vocab_size,
        "act_fn": getattr(hf_config, "hidden_activation", None) or hf_config.hidden_act,
        "initializer_range": hf_config.initializer_range,
        "normalization_type": "RMS",
        "final_rms": True,
        "gated_mlp": True,
        "positional_embedding_type": "rotary",
        "rotary_dim": head_dim,
        "use_attn_scale": True,
        "attn_scale": math.sqrt(scale_base),
        "original_architecture": architecture,
    }
    fields.update(_rotary_bases(hf_config, architecture))
    if architecture == "GemmaForCausalLM":
        return fields
    if getattr(hf_config, "use_bidirectional_attention", False):
        raise ValueError(
            f"{architecture} with use_bidirectional_attention=True cannot be loaded as a "
            "HookedTransformer (kind='hooked'), which is causal only; use kind='bridge'"
        )
    layer_types = getattr(hf_config, "layer_types", None) or [
        "sliding_attention" if index % 2 == 0 else "full_attention"
        for index in range(hf_config.num_hidden_layers)
    ]
    fields.update(
        use_normalization_before_and_after=True,
        use_local_attn=True,
        window_size=hf_config.sliding_window,
        attn_types=[_ATTENTION_TYPES[layer_type] for layer_type in layer_types],
    )
    for hf_field, field in (
        ("attn_logit_softcapping", "attn_scores_soft_cap"),
        ("final_logit_softcapping", "output_logits_soft_cap"),
    ):
        cap = getattr(hf_config, hf_field, None)
        if cap is not None:
            fields[field] = float(cap)
    if architecture == "Gemma3ForCausalLM":
        fields["use_qk_norm"] = True
    return fields


def _rotary_bases(hf_config: Any, architecture: str) -> dict[str, Any]:
    """rotary_base (global layers), rotary_base_local (Gemma 3's sliding layers) and a linear
    scaling factor for global layers, from the config's rope parameters."""
    parameters = getattr(hf_config, "rope_parameters", None) or {
        "rope_theta": getattr(hf_config, "rope_theta", 10000.0)
    }
    per_type = "full_attention" in parameters
    global_rope = parameters["full_attention"] if per_type else parameters
    fields: dict[str, Any] = {"rotary_base": global_rope["rope_theta"]}
    if per_type:
        local_rope = parameters["sliding_attention"]
        fields["rotary_base_local"] = local_rope["rope_theta"]
        if local_rope.get("rope_type", "default") != "default":
            _refuse_rope(architecture, local_rope)
    rope_type = global_rope.get("rope_type", "default")
    if rope_type == "linear":
        fields["rotary_scaling_factor"] = float(global_rope["factor"])
    elif rope_type != "default":
        _refuse_rope(architecture, global_rope)
    return fields


def _refuse_rope(architecture: str, rope: dict[str, Any]) -> None:
    raise ValueError(
        f"{architecture} with rope_type {rope.get('rope_type')!r} cannot be loaded as a "
        "HookedTransformer (kind='hooked'): only default and linear rotary scaling are "
        "converted; use kind='bridge'"
    )
