"""Fused causal attention for HookedTransformer forward passes that tlscopes runs itself.

TransformerLens computes attention explicitly so that ``hook_attn_scores`` and ``hook_pattern``
can see the [batch, head, query, key] tensors: scores = q k^T / scale, a causal ``where``, a
softmax, a NaN scrub, then pattern @ v. At 1,024 tokens those elementwise passes over
head x pos x pos tensors, and their backward passes, cost about as much as every other part of
a layer together. :func:`torch.nn.functional.scaled_dot_product_attention` computes the same
z in one fused kernel (forward and backward) and skips the masked half.

:func:`fused_attention` swaps each attention module's ``forward`` for one that does that, for
the duration of a ``with`` block, on the attention modules where it is exact: TransformerLens'
own ``Attention`` and ``GroupedQueryAttention`` (not subclasses), causal, no KV
cache, no attention mask or positional bias, none of the variants TransformerLens implements
inside the explicit path (ALiBi, relative bias, sliding windows, soft-capping, attention sinks,
QK clipping or OLMo norms, log-n scaling, per-head results, 4-bit weights). Everywhere else,
and whenever a hook is attached to ``hook_attn_scores`` or ``hook_pattern`` (which the fused
kernel would silently skip), the module's own forward runs. Every other hook point
(``hook_q``, ``hook_k``, ``hook_v``, ``hook_rot_q``, ``hook_rot_k``, ``hook_z`` and all outside
attention) fires as usual.

TransformerBridge (TransformerLens 4.x) models are left alone: their attention is a different
implementation, and they run their own forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import einops
import torch
import torch.nn.functional as F
from torch import Tensor

# Architectures whose QK norm TransformerLens applies inside the explicit forward pass.
_INLINE_QK_NORM = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
_POSITIONAL = ("standard", "rotary", "shortformer")


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
        or attention_mask is not None
        or position_bias is not None
        or _has_hooks(attention.hook_attn_scores)
        or _has_hooks(attention.hook_pattern)
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
    cfg = attention.cfg
    q, k, v = attention.calculate_qkv_matrices(query_input, key_input, value_input)
    if cfg.positional_embedding_type == "rotary":
        q = attention.hook_rot_q(attention.apply_rotary(q, 0, None))
        k = attention.hook_rot_k(attention.apply_rotary(k, 0, None))
    repeats = getattr(attention, "repeat_kv_heads", 1)
    if repeats > 1 and not getattr(cfg, "ungroup_grouped_query_attention", False):
        k = torch.repeat_interleave(k, dim=2, repeats=repeats)
        v = torch.repeat_interleave(v, dim=2, repeats=repeats)
    v = v.to(q.dtype)
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        is_causal=True,
        scale=1.0 / float(attention.attn_scale),
    )  # [batch, head_index, pos, d_head]
    z = attention.hook_z(z.transpose(1, 2))
    w = einops.rearrange(attention.W_O, "head_index d_head d_model -> d_model (head_index d_head)")
    z = z.reshape(z.shape[0], z.shape[1], -1).to(w.dtype)
    return F.linear(z, w.to(z.device), attention.b_O.to(z.device))


def _attention_modules(model: Any) -> list[Any]:
    return [block.attn for block in getattr(model, "blocks", [])]


@contextlib.contextmanager
def fused_attention(model: Any) -> Iterator[int]:
    """Runs a HookedTransformer's causal attention through the fused SDPA kernel inside the block.

    Yields the number of attention modules switched (0 for a TransformerBridge or a model where
    no module qualifies, see :func:`module_supports_fusion`). Each module's own ``forward`` is
    restored on exit, also after an error.
    """
    from tlscopes.models import hooked_transformer_class

    hooked = hooked_transformer_class()
    if hooked is None or not isinstance(model, hooked):
        yield 0
        return
    switched = []
    try:
        for attention in _attention_modules(model):
            if not module_supports_fusion(attention) or "forward" in attention.__dict__:
                continue
            original = attention.forward

            def forward(*args: Any, attention: Any = attention, original: Any = original, **kw):
                return _fused_forward(attention, original, *args, **kw)

            attention.forward = forward
            switched.append(attention)
        yield len(switched)
    finally:
        for attention in switched:
            del attention.forward
