"""Fused causal attention for the forward passes tlscopes runs itself.

TransformerLens computes attention explicitly so that ``hook_attn_scores`` and ``hook_pattern``
can see the [batch, head, query, key] tensors: scores = q k^T / scale, a causal mask, a
softmax, a NaN scrub, then pattern @ v. At 1,024 tokens those elementwise passes over
head x pos x pos tensors, and their backward passes, cost about as much as every other part of
a layer together. :func:`torch.nn.functional.scaled_dot_product_attention` computes the same
z in one fused kernel (forward and backward) and skips the masked half.

:func:`fused_attention` swaps each attention module's ``forward`` for one that does that, for
the duration of a ``with`` block, on the attention modules where it is exact:

* HookedTransformer: TransformerLens' own ``Attention`` and ``GroupedQueryAttention`` (not
  subclasses), causal, with none of the variants TransformerLens implements inside the explicit
  path (ALiBi, relative bias, sliding windows, soft-capping, attention sinks, QK clipping or
  OLMo norms, log-n scaling, per-head results, 4-bit weights);
* TransformerBridge: the plain rotary attention of Llama-like models (Llama, Mistral, Qwen2:
  :func:`bridge_module_supports_fusion`), in float32 or lower precision.

On each call it also needs no KV cache and no attention mask beyond the causal one (an all-ones
padding mask, which a HookedTransformer with a left-padding tokenizer passes on every call, is
no mask). Everywhere else, and whenever a hook is attached to ``hook_attn_scores`` or
``hook_pattern`` (which the fused kernel would silently skip), the module's own forward runs. Every other hook point
(``hook_q``, ``hook_k``, ``hook_v``, ``hook_rot_q``, ``hook_rot_k``, ``hook_z`` and all outside
attention) fires as usual.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import einops
import torch
import torch.nn.functional as F
from torch import Tensor

from tlscopes.protocols import TransformerLensModel

# Architectures whose QK norm TransformerLens applies inside the explicit forward pass.
_INLINE_QK_NORM = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
_POSITIONAL = ("standard", "rotary", "shortformer")
# The Hugging Face attention classes whose computation the bridge's fused forward reproduces
# (q/k/v/o projections, rotary, grouped keys, scaling; a sliding window shows up in the mask,
# which is checked on each call). Any other class (QK norms, soft-capping, ...) keeps its own.
BRIDGE_FUSABLE_HF_ATTENTION = ("LlamaAttention", "MistralAttention", "Qwen2Attention")


def _has_hooks(hook_point: Any) -> bool:
    return any(
        bool(getattr(hook_point, name, None))
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        )
    )


def _scores_or_pattern_hooked(attention: Any) -> bool:
    # The fused kernel never forms scores or pattern, so hooks there need the module's own path.
    return _has_hooks(attention.hook_attn_scores) or _has_hooks(attention.hook_pattern)


def module_supports_fusion(attention: Any) -> bool:
    """Whether the fused kernel gives exactly this module's attention (hooks aside).

    Checks the configuration only; per-call conditions (a cache, a mask, hooks on the score and
    pattern hook points) are checked on each call.
    """
    from transformer_lens.components import Attention, GroupedQueryAttention

    # Subclasses may compute attention their own way; only these two are known to be mirrored.
    if type(attention) not in (Attention, GroupedQueryAttention):
        return False
    cfg = attention.cfg
    direction = getattr(attention, "_attention_dir_override", None) or cfg.attention_dir
    softcap = getattr(cfg, "attn_scores_soft_cap", None)
    return (
        direction == "causal"
        and cfg.positional_embedding_type in _POSITIONAL
        and getattr(attention, "attn_type", "global") != "local"
        and cfg.original_architecture not in _INLINE_QK_NORM
        and getattr(cfg, "clip_qkv", None) is None
        and not getattr(cfg, "use_logn_attn", False)
        and not getattr(cfg, "use_attention_sinks", False)
        and (softcap is None or softcap <= 0)
        and not cfg.use_attn_result
        and not getattr(cfg, "load_in_4bit", False)
    )


def _fused_forward(
    mask_check: AllOnesMaskCheck,
    attention: Any,
    original: Any,
    query_input: Tensor,
    key_input: Tensor,
    value_input: Tensor,
    past_kv_cache_entry: Any = None,
    additive_attention_mask: Tensor | None = None,
    attention_mask: Tensor | None = None,
    position_bias: Tensor | None = None,
) -> Tensor:
    if (
        past_kv_cache_entry is not None
        or additive_attention_mask is not None
        or not mask_check(attention_mask, query_input.shape[1])
        or position_bias is not None
        or _scores_or_pattern_hooked(attention)
    ):
        return original(
            query_input,
            key_input,
            value_input,
            past_kv_cache_entry=past_kv_cache_entry,
            additive_attention_mask=additive_attention_mask,
            attention_mask=attention_mask,
            position_bias=position_bias,
        )
    q, k, v = hooked_qkv(attention, query_input, key_input, value_input)
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        is_causal=True,
        scale=1.0 / float(attention.attn_scale),
    )  # [batch, head_index, pos, d_head]
    return hooked_output(attention, z)


def hooked_qkv(
    attention: Any, query_input: Tensor, key_input: Tensor, value_input: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """A HookedTransformer attention's q, k, v [batch, pos, head_index, d_head] as its own
    forward computes them (hook_q/k/v, rotary with hook_rot_q/k, grouped keys repeated)."""
    cfg = attention.cfg
    q, k, v = attention.calculate_qkv_matrices(query_input, key_input, value_input)
    if cfg.positional_embedding_type == "rotary":
        q = attention.hook_rot_q(attention.apply_rotary(q, 0, None))
        k = attention.hook_rot_k(attention.apply_rotary(k, 0, None))
    repeats = getattr(attention, "repeat_kv_heads", 1)
    if repeats > 1 and not getattr(cfg, "ungroup_grouped_query_attention", False):
        k = torch.repeat_interleave(k, dim=2, repeats=repeats)
        v = torch.repeat_interleave(v, dim=2, repeats=repeats)
    return q, k, v.to(q.dtype)


def hooked_output(attention: Any, z: Tensor) -> Tensor:
    """hook_z and the output projection of a HookedTransformer attention, from z
    [batch, head_index, pos, d_head]."""
    z = attention.hook_z(z.transpose(1, 2))
    w = einops.rearrange(attention.W_O, "head_index d_head d_model -> d_model (head_index d_head)")
    z = z.reshape(z.shape[0], z.shape[1], -1).to(w.dtype)
    return F.linear(z, w.to(z.device), attention.b_O.to(z.device))


def bridge_module_supports_fusion(attention: Any) -> bool:
    """Whether the fused kernel gives exactly this TransformerBridge attention (hooks aside).

    Only the plain rotary self-attention of Llama-like models (TransformerLens 4.x's
    ``PositionEmbeddingsAttentionBridge`` itself, not a subclass, around one of the Hugging Face
    classes in ``BRIDGE_FUSABLE_HF_ATTENTION``) with none of the variants its
    forward pass implements inline: split QKV inputs, gated queries, key multipliers, QK norms
    or clipping, soft-capping, attention sinks, sliding windows, Llama-4 query scaling,
    non-standard rotary layouts, per-head results. Per-call conditions are checked on each call
    (no cache, a plain causal mask, no hooks on scores or pattern, not float64: the bridge takes
    its softmax in float32, which the fused kernel would not reproduce for a float64 model).
    """
    try:
        from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (  # noqa: E501
            PositionEmbeddingsAttentionBridge,
        )
    except ImportError:
        return False
    if type(attention) is not PositionEmbeddingsAttentionBridge:
        return False
    hf_attention = getattr(attention, "original_component", None)
    if type(hf_attention).__name__ not in BRIDGE_FUSABLE_HF_ATTENTION:
        return False
    config = getattr(attention, "config", None)
    hf_config = getattr(hf_attention, "config", None)
    rope = getattr(hf_config, "rope_parameters", None)
    return (
        hf_attention is not None
        and getattr(attention, "is_causal", False)
        and not getattr(attention, "is_cross_attention", True)
        and getattr(hf_attention, "is_causal", True)
        and set(getattr(attention, "submodules", ())) == {"q", "k", "v", "o"}
        and attention._modules.get("gate") is None
        and all(
            hasattr(attention, name)
            for name in ("hook_in", "hook_out", "hook_rot_q", "hook_rot_k", "hook_cos")
        )
        and callable(getattr(attention, "_apply_position_embedding_hooks", None))
        and not any(
            getattr(config, flag, False)
            for flag in (
                "use_split_qkv_input",
                "use_attn_in",
                "gated_q_proj",
                "use_attn_result",
                "rotary_interleaved_cos_sin",
                "rotary_adjacent_pairs",
                "qk_norm_after_rope",
            )
        )
        and all(
            getattr(hf_attention, name, None) is None
            for name in ("key_multiplier", "sinks", "attn_logit_softcapping", "sliding_window")
        )
        and getattr(hf_config, "clip_qkv", None) is None
        and not (isinstance(rope, dict) and rope.get("llama_4_scaling_beta") is not None)
    )


def _is_plain_causal_mask(mask: Tensor | None, length: int) -> bool:
    """True for no mask or a 4-D mask that only hides the future (no padding, no window)."""
    if mask is None:
        return True
    if mask.ndim != 4 or mask.shape[-1] != length or mask.shape[-2] != length:
        return False
    future = torch.ones(length, length, dtype=torch.bool, device=mask.device).triu(1)
    if mask.dtype == torch.bool:
        return bool((mask == ~future).all())
    hidden = mask <= torch.finfo(mask.dtype).min / 2
    return bool((hidden == future).all()) and bool((mask.masked_fill(future, 0) == 0).all())


def _is_all_ones(mask: Tensor, length: int) -> bool:
    """True for a [batch, pos] padding mask that masks nothing."""
    return mask.ndim == 2 and mask.shape[-1] == length and bool(mask.all())


class MaskCheck:
    """A mask predicate that remembers the last mask that passed.

    Within one forward pass every layer gets the same mask tensor; checking it again per layer
    rebuilt a pos x pos triangle each time (~1 ms per layer at 1,024 tokens) and synchronises
    an accelerator. A mask passes from memory only while it is the same, unmodified tensor at
    the same length. No mask always passes.
    """

    def __init__(self, predicate: Any) -> None:
        self._predicate = predicate
        self._mask: Tensor | None = None
        self._version = -1
        self._length = -1

    def __call__(self, mask: Tensor | None, length: int) -> bool:
        if mask is None:
            return True
        if mask is self._mask and mask._version == self._version:
            return length == self._length
        if not self._predicate(mask, length):
            return False
        self._mask, self._version, self._length = mask, mask._version, length
        return True


class CausalMaskCheck(MaskCheck):
    """`_is_plain_causal_mask`, remembering the last mask that passed (the bridge's masks)."""

    def __init__(self) -> None:
        super().__init__(_is_plain_causal_mask)


class AllOnesMaskCheck(MaskCheck):
    """`_is_all_ones`, remembering the last mask that passed (HookedTransformer's masks).

    A HookedTransformer whose tokenizer pads on the left (Gemma's, for one) passes a padding
    mask on every forward pass; with no padding in the batch it is all ones, which is no mask.
    """

    def __init__(self) -> None:
        super().__init__(_is_all_ones)


def _bridge_fused_forward(
    mask_check: CausalMaskCheck, attention: Any, original: Any, *args: Any, **kwargs: Any
) -> Any:
    hidden_states = kwargs.get("hidden_states", args[0] if args else None)
    position_embeddings = kwargs.get("position_embeddings")
    if (
        attention.training
        or not isinstance(hidden_states, Tensor)
        or hidden_states.ndim != 3
        # The bridge takes its softmax in float32; for a float64 model the fused kernel would be
        # more precise than the bridge itself, so it would not give the bridge's numbers.
        or hidden_states.dtype == torch.float64
        or any(kwargs.get(name) is not None for name in ("past_key_values", "layer_past"))
        or kwargs.get("cycle_offset")
        or not (isinstance(position_embeddings, tuple) and len(position_embeddings) == 2)
        or position_embeddings[0].shape[-1] != attention.original_component.head_dim
        or not mask_check(kwargs.get("attention_mask"), hidden_states.shape[1])
        or _scores_or_pattern_hooked(attention)
    ):
        return original(*args, **kwargs)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    hf_attention = attention.original_component
    head_dim = hf_attention.head_dim
    hidden_states = attention.hook_in(hidden_states)
    batch, pos = hidden_states.shape[:2]
    q, k, v = (
        projection(hidden_states).view(batch, pos, -1, head_dim).transpose(1, 2)
        for projection in (attention.q, attention.k, attention.v)
    )
    cos, sin = attention._apply_position_embedding_hooks(position_embeddings)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    q, k = attention.hook_rot_q(q), attention.hook_rot_k(k)
    groups = getattr(hf_attention, "num_key_value_groups", 1)
    if groups > 1:
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    z = F.scaled_dot_product_attention(
        q, k, v.to(q.dtype), is_causal=True, scale=getattr(hf_attention, "scaling", None)
    )  # [batch, head_index, pos, d_head]
    z = z.transpose(1, 2).reshape(batch, pos, -1)
    out = attention.hook_out(attention.o(z))
    return out, None


def _attention_modules(model: TransformerLensModel) -> list[Any]:
    return [block.attn for block in getattr(model, "blocks", [])]


@contextlib.contextmanager
def fused_attention(model: TransformerLensModel) -> Iterator[int]:
    """Runs a model's causal attention through the fused SDPA kernel inside the block.

    Works on a HookedTransformer (:func:`module_supports_fusion`) and on the Llama-like
    attention of a TransformerBridge (:func:`bridge_module_supports_fusion`). Yields the number
    of attention modules switched (0 where none qualifies). Each module's own ``forward`` is
    restored on exit, also after an error.
    """
    from tlscopes.models.facts import hooked_transformer_class, is_bridge

    hooked = hooked_transformer_class()
    # One mask check per context: the mask it remembers is freed when the context ends.
    if hooked is not None and isinstance(model, hooked):
        supports = module_supports_fusion
        fused = functools.partial(_fused_forward, AllOnesMaskCheck())
    elif is_bridge(model):
        supports = bridge_module_supports_fusion
        fused = functools.partial(_bridge_fused_forward, CausalMaskCheck())
    else:
        yield 0
        return
    switched = []
    try:
        for attention in _attention_modules(model):
            if not supports(attention) or "forward" in attention.__dict__:
                continue
            original = attention.forward

            def forward(*args: Any, attention: Any = attention, original: Any = original, **kw):
                return fused(attention, original, *args, **kw)

            # Straight into the instance dict: bridge components route attribute writes elsewhere.
            object.__setattr__(attention, "forward", forward)
            switched.append(attention)
        yield len(switched)
    finally:
        for attention in switched:
            object.__delattr__(attention, "forward")
