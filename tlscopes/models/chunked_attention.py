"""Query-chunked attention: the model's own arithmetic, never a T x T tensor kept or formed whole.

A TransformerBridge's rotary attention (``PositionEmbeddingsAttentionBridge``: Llama, Mistral,
Qwen2, Qwen3, Gemma 2, Gemma 3), its joint-QKV attention (``JointQKVAttentionBridge`` and
``JointQKVPositionEmbeddingsAttentionBridge``: GPT-2, GPT-NeoX, Pythia) and a
HookedTransformer's ``Attention`` and ``GroupedQueryAttention`` compute [batch, head, query,
key] scores, a mask, a softmax and pattern @ v. At 8,192 tokens one such tensor of
Gemma-3-270M is 1 GiB in float32, and the explicit path keeps several for the backward pass.

:func:`chunked_attention` swaps each supported module's ``forward``, for the duration of a
``with`` block, for one that computes the same q, k and v (same hook points, norms, rotary,
grouped keys), then takes the queries a chunk at a time: each chunk's scores against every key
(soft-cap, mask, softmax, NaN scrub and pattern @ v exactly as the module's own forward does
them, by the module's own helpers where it has them) run under
:func:`torch.utils.checkpoint.checkpoint`, so only q, k, v and z are kept and the backward pass
recomputes one chunk's pattern at a time. Each chunk's rows are the module's own rows (same
length, same mask values), so the result equals the module's own to floating-point rounding
of the matmuls.

Where the plain causal kernel is exact (:mod:`tlscopes.models.fused_attention`), the fused
SDPA kernel runs instead: it keeps no T x T tensor either. Modules this file does not
recognise, calls with a KV cache, and calls with hooks on ``hook_attn_scores`` or
``hook_pattern`` (which need the whole pattern) keep the module's own forward.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from tlscopes.models.fused_attention import (
    AllOnesMaskCheck,
    CausalMaskCheck,
    _bridge_fused_forward,
    _fused_forward,
    _scores_or_pattern_hooked,
    bridge_module_supports_fusion,
    hooked_output,
    hooked_qkv,
    module_supports_fusion,
)
from tlscopes.protocols import TransformerLensModel

# Called with a chunk's first query position and its pattern [batch, head_index, chunk, key_pos].
PatternReader = Callable[[int, Tensor], None]
# Score elements (batch x head x query x key) one chunk may form at most: 2^24 is 64 MiB in
# float32. Below that a chunk forms CHUNK_SCORES_PER_KEY of them per key and prompt (its queries
# times heads), so that the few score-sized tensors a chunk holds in its backward pass grow with
# the prompt like every other buffer, instead of adding a fixed ~0.5 GiB that dominates the
# memory of prompts of a few thousand tokens.
CHUNK_SCORE_ELEMENTS = 2**24
CHUNK_SCORES_PER_KEY = 1024
_BRIDGE_FLAGS = (
    "use_split_qkv_input",
    "use_attn_in",
    "gated_q_proj",
    "use_attn_result",
    "rotary_interleaved_cos_sin",
    "rotary_adjacent_pairs",
    "qk_norm_after_rope",
)


def query_chunk(batch: int, heads: int, n_keys: int, elements: int | None = None) -> int:
    """Queries per chunk so that one chunk's scores hold about `elements` numbers, at least 1.

    None: ``CHUNK_SCORES_PER_KEY`` per key and prompt (``CHUNK_SCORES_PER_KEY / heads``
    queries), at most ``CHUNK_SCORE_ELEMENTS``."""
    keys = max(1, batch * n_keys)
    if elements is None:
        elements = min(CHUNK_SCORE_ELEMENTS, CHUNK_SCORES_PER_KEY * keys)
    return max(1, elements // max(1, heads * keys))


def chunked(
    chunk_fn: Callable[..., Tensor],
    q: Tensor,
    chunk: int,
    *inputs: Tensor | None,
    recompute: bool | None = None,
) -> Tensor:
    """``cat([chunk_fn(q[:, :, lo:hi], lo, *inputs) for each chunk], dim=2)``, each under a
    checkpoint.

    Args:
        chunk_fn: maps queries [batch, head_index, chunk, d_head], the chunk's first query
            position and `inputs` to its output [batch, head_index, chunk, d_head].
        q: all queries [batch, head_index, pos, d_head].
        chunk: queries per chunk.
        inputs: the other tensors a chunk reads (keys, values, a mask). They are handed to
            each checkpoint as inputs, never captured in `chunk_fn`: a checkpoint saves its
            inputs like any saved tensor, so inside a block's own checkpoint they are dropped
            after the forward pass and recomputed with the block; what its function captures it
            keeps until the backward pass reaches it, which kept every layer's keys and values
            alive at once.
        recompute: checkpoint each chunk (its pattern is recomputed in the backward pass)
            rather than keeping it; None: whenever a graph is recorded
            (:func:`torch.is_grad_enabled`).
    """
    if recompute is None:
        recompute = torch.is_grad_enabled()
    n_queries = q.shape[2]
    parts = []
    for lo in range(0, n_queries, chunk):
        part = q[:, :, lo : lo + chunk]
        if recompute:
            parts.append(checkpoint(chunk_fn, part, lo, *inputs, use_reentrant=False))
        else:
            parts.append(chunk_fn(part, lo, *inputs))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def key_span(
    lo: int, n_queries: int, n_keys: int, window: int | None, *, every_key: bool = False
) -> tuple[int, int]:
    """The keys [start, end) that queries lo .. lo + n_queries - 1 can see: none after the last
    query (causal) and, with a sliding window, none `window` or more tokens before the first.
    The others would be masked to a softmax weight of exactly 0, so leaving them out changes
    nothing but the cost: a windowed layer's chunk costs O(chunk x (chunk + window)), not
    O(chunk x T). `every_key` keeps all keys (a pattern reader sees whole rows)."""
    if every_key:
        return 0, n_keys
    start = max(0, lo - int(window) + 1) if window else 0
    return start, min(n_keys, lo + n_queries)


# --- TransformerBridge ------------------------------------------------------------------------


def bridge_module_supports_chunking(attention: Any) -> bool:
    """Whether :func:`chunked_attention` reproduces this TransformerBridge attention module.

    TransformerLens 4.x's ``PositionEmbeddingsAttentionBridge`` itself (not a subclass) with
    q/k/v/o projections and optional per-head q/k norms applied before the rotary embedding
    (Gemma 3, Qwen3), standard or partial rotary, grouped keys, soft-capping (Gemma 2) and any
    mask the Hugging Face model passes (sliding windows included); none of the variants it
    implements inline besides those (split inputs, gates, key multipliers, clipping, sinks,
    other rotary layouts, Llama-4 query scaling, per-head results).
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
    if hf_attention is None:
        return False
    config = getattr(attention, "config", None)
    hf_config = getattr(hf_attention, "config", None)
    rope = getattr(hf_config, "rope_parameters", None)
    submodules = set(getattr(attention, "submodules", ()))
    return (
        getattr(attention, "is_causal", False)
        and not getattr(attention, "is_cross_attention", True)
        and {"q", "k", "v", "o"} <= submodules <= {"q", "k", "v", "o", "q_norm", "k_norm"}
        and attention._modules.get("gate") is None
        and getattr(attention, "_qk_norm_phase", None) in (None, "post_reshape")
        and all(hasattr(attention, name) for name in ("hook_in", "hook_out", "hook_rot_q"))
        and not any(getattr(config, flag, False) for flag in _BRIDGE_FLAGS)
        and all(getattr(hf_attention, name, None) is None for name in ("key_multiplier", "sinks"))
        and getattr(hf_config, "clip_qkv", None) is None
        and not (isinstance(rope, dict) and rope.get("llama_4_scaling_beta") is not None)
    )


def _bridge_qk_norm(attention: Any, states: Tensor, norm: str, hook: str) -> Tensor:
    module = getattr(attention, norm)
    if getattr(attention, "_qk_norm_per_head", False):  # TransformerLens 4.x only
        # Per-head weights broadcast on [batch, pos, head, d_head]; the norm reduces the last axis.
        return getattr(attention, hook)(module(states.transpose(1, 2)).transpose(1, 2))
    return getattr(attention, hook)(module(states))


def _bridge_rotary(attention: Any, q: Tensor, k: Tensor, embeddings: Any) -> tuple[Tensor, Tensor]:
    from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (  # noqa: E501
        get_rotary_pct_from_config,
    )
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    cos, sin = attention._apply_position_embedding_hooks(embeddings)
    head_dim, rotary_dim = q.shape[-1], cos.shape[-1]
    if rotary_dim * 2 == head_dim and get_rotary_pct_from_config(attention.config) == 1.0:
        cos, sin = torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)
        return apply_rotary_pos_emb(q, k, cos, sin)
    if rotary_dim < head_dim:
        q_rot, k_rot = apply_rotary_pos_emb(q[..., :rotary_dim], k[..., :rotary_dim], cos, sin)
        return (
            torch.cat([q_rot, q[..., rotary_dim:]], dim=-1),
            torch.cat([k_rot, k[..., rotary_dim:]], dim=-1),
        )
    return apply_rotary_pos_emb(q, k, cos, sin)


class _BridgeArithmetic(NamedTuple):
    """What differs between the bridges' explicit attention: the score scale, an optional
    soft-cap, the dtype the softmax is taken in (None: the scores'), and whether q and k are
    cast to float32 for the scores (GPT-2's ``reorder_and_upcast_attn``)."""

    scaling: float
    softcap: float | None = None
    softmax_dtype: torch.dtype | None = None
    upcast_scores: bool = False


def _bridge_chunk(
    attention: Any,
    arithmetic: _BridgeArithmetic,
    window: int | None,
    reader: PatternReader | None,
    q: Tensor,
    lo: int,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
) -> Tensor:
    """One query chunk of a bridge's explicit attention, in its own order of operations."""
    n_queries = q.shape[-2]
    # The model's own mask carries any window; without one the layer's is passed in.
    window = window if mask is None else None
    start, end = key_span(lo, n_queries, k.shape[-2], window, every_key=reader is not None)
    k, v = k[..., start:end, :], v[..., start:end, :]
    if arithmetic.upcast_scores:
        q, k = q.to(torch.float32), k.to(torch.float32)
    scores = torch.matmul(q, k.transpose(-2, -1)) * arithmetic.scaling
    if arithmetic.softcap is not None:
        scores = torch.tanh(scores / arithmetic.softcap) * arithmetic.softcap
    if mask is None:
        # No mask from the model (:func:`chunked_attention` asks Hugging Face for none): causal,
        # and the layer's sliding window (a key is hidden once it is `window` or more tokens
        # back, as Hugging Face's window masks do), for the chunk's queries, which start at lo.
        queries = torch.arange(lo, lo + n_queries, device=q.device)[:, None]
        keys = torch.arange(start, end, device=q.device)[None, :]
        hidden = keys > queries
        if window:
            hidden = hidden | (keys <= queries - int(window))
        fill = -torch.inf if attention.compatibility_mode else torch.finfo(scores.dtype).min
        scores = scores.masked_fill(hidden, fill)
    else:
        scores = attention._apply_reconstruct_attention_mask(
            attn_scores=scores,
            attention_mask=mask[..., lo : lo + n_queries, start:end],
            seq_len=end - start,
            q_seq_len=n_queries,
        )
    masked_softmax = getattr(attention, "_masked_softmax", None)  # TransformerLens 4.x
    if masked_softmax is not None:
        pattern = masked_softmax(scores, dtype=arithmetic.softmax_dtype)
    else:
        pattern = F.softmax(scores, dim=-1, dtype=arithmetic.softmax_dtype)
    pattern = attention._scrub_compatibility_pattern_nans(pattern.to(v.dtype))
    if reader is not None:
        reader(lo, pattern.detach())
    return torch.matmul(pattern, v)


def _bridge_chunked_forward(
    attention: Any, original: Any, reader: PatternReader | None, *args: Any, **kwargs: Any
) -> Any:
    hidden_states = kwargs.get("hidden_states", args[0] if args else None)
    embeddings = kwargs.get("position_embeddings")
    mask = kwargs.get("attention_mask")
    if (
        attention.training
        or not isinstance(hidden_states, Tensor)
        or hidden_states.ndim != 3
        or any(kwargs.get(name) is not None for name in ("past_key_values", "layer_past"))
        or kwargs.get("cycle_offset")
        or (mask is not None and (mask.ndim != 4 or mask.shape[-2] != hidden_states.shape[1]))
        or (embeddings is None and attention.config.positional_embedding_type == "rotary")
        or _scores_or_pattern_hooked(attention)
    ):
        return original(*args, **kwargs)
    hf_attention = attention.original_component
    hidden_states = attention.hook_in(hidden_states)
    batch, pos = hidden_states.shape[:2]
    shape = (batch, pos, -1, hf_attention.head_dim)
    q, k, v = (
        projection(hidden_states).view(shape).transpose(1, 2)
        for projection in (attention.q, attention.k, attention.v)
    )
    if "q_norm" in attention.submodules and attention._qk_norm_phase == "post_reshape":
        q = _bridge_qk_norm(attention, q, "q_norm", "hook_q_normed")
        if "k_norm" in attention.submodules:
            k = _bridge_qk_norm(attention, k, "k_norm", "hook_k_normed")
    if embeddings is not None:
        q, k = _bridge_rotary(attention, q, k, embeddings)
    q, k = attention.hook_rot_q(q), attention.hook_rot_k(k)
    groups = getattr(hf_attention, "num_key_value_groups", 1)
    if groups > 1:
        from transformers.models.llama.modeling_llama import repeat_kv

        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    arithmetic = _BridgeArithmetic(
        scaling=getattr(hf_attention, "scaling", q.shape[-1] ** -0.5),
        softcap=getattr(hf_attention, "attn_logit_softcapping", None),
        softmax_dtype=torch.float32,
    )
    window = getattr(hf_attention, "sliding_window", None)
    chunk = query_chunk(batch, q.shape[1], pos)
    chunk_fn = functools.partial(_bridge_chunk, attention, arithmetic, window, reader)
    z = chunked(chunk_fn, q, chunk, k, v, mask)
    z = z.transpose(1, 2).reshape(batch, pos, -1)
    weight = getattr(getattr(attention.o, "original_component", None), "weight", None)
    if isinstance(weight, Tensor) and weight.dtype.is_floating_point and z.dtype != weight.dtype:
        z = z.to(weight.dtype)
    return attention.hook_out(attention.o(z)), None


# --- TransformerBridge, joint QKV (GPT-2, GPT-NeoX) ------------------------------------------


def _joint_bridge_classes() -> tuple[type, ...]:
    classes = []
    try:
        from transformer_lens.model_bridge.generalized_components.joint_qkv_attention import (
            JointQKVAttentionBridge,
        )

        classes.append(JointQKVAttentionBridge)
        from transformer_lens.model_bridge.generalized_components.joint_qkv_position_embeddings_attention import (  # noqa: E501
            JointQKVPositionEmbeddingsAttentionBridge,
        )

        classes.append(JointQKVPositionEmbeddingsAttentionBridge)
    except ImportError:
        pass
    return tuple(classes)


def _is_rotary_joint(attention: Any) -> bool:
    return type(attention).__name__ == "JointQKVPositionEmbeddingsAttentionBridge"


def joint_bridge_module_supports_chunking(attention: Any) -> bool:
    """Whether :func:`chunked_attention` reproduces this joint-QKV TransformerBridge module.

    TransformerLens' ``JointQKVAttentionBridge`` (GPT-2 and other fused-QKV models) and
    ``JointQKVPositionEmbeddingsAttentionBridge`` (GPT-NeoX and Pythia: rotary, partial rotary
    included) themselves, not subclasses (Bloom's ALiBi and others compute their own way),
    causal self-attention whose q, k and v are projected from the block's input: not the split
    q/k/v or attention-input forks, nor per-head results, which TransformerLens computes on a
    separate path.
    """
    classes = _joint_bridge_classes()
    if type(attention) not in classes:
        return False
    config = getattr(attention, "config", None)
    return (
        getattr(attention, "original_component", None) is not None
        and getattr(attention, "is_causal", False)
        and not getattr(attention, "is_cross_attention", True)
        and all(
            hasattr(attention, name)
            for name in ("q", "k", "v", "hook_in", "hook_out", "hook_hidden_states")
        )
        and callable(getattr(attention, "_reshape_qkv_to_heads", None))
        and not any(
            getattr(config, flag, False)
            for flag in ("use_split_qkv_input", "use_attn_in", "use_attn_result")
        )
        and (not _is_rotary_joint(attention) or hasattr(attention, "_apply_rotary_pos_emb"))
    )


def _cache_is_empty(attention: Any, kwargs: dict[str, Any]) -> bool:
    """No KV cache in the call, or one that holds nothing yet for this layer (a forward pass
    over a whole prompt): the queries are then every key's, and the chunks' masks hold."""
    cache = kwargs.get("past_key_values")
    cache = kwargs.get("layer_past") if cache is None else cache
    if cache is None:
        return True
    layer = getattr(attention, "_layer_idx", None)
    length = getattr(cache, "get_seq_length", None)
    if layer is None or length is None:
        return False
    try:
        return int(length(layer)) == 0
    except (IndexError, KeyError, TypeError):
        return False


def _joint_chunked_forward(
    attention: Any, original: Any, reader: PatternReader | None, *args: Any, **kwargs: Any
) -> Any:
    """The joint-QKV bridge's forward (``JointQKVAttentionBridge.forward`` and its
    ``_reconstruct_attention``: same hook points, split projections, rotary, grouped keys,
    scale and upcast), with the queries taken a chunk at a time."""
    if "query_input" in kwargs:
        hidden_states = kwargs["query_input"]
    else:
        hidden_states = kwargs.get("hidden_states", args[0] if args else None)
    mask = kwargs.get("attention_mask")
    embeddings = kwargs.get("position_embeddings")
    rotary = _is_rotary_joint(attention)
    if (
        attention.training
        or not isinstance(hidden_states, Tensor)
        or hidden_states.ndim != 3
        or not _cache_is_empty(attention, kwargs)
        or kwargs.get("cycle_offset")
        or (mask is not None and (mask.ndim != 4 or mask.shape[-2] != hidden_states.shape[1]))
        or (rotary and not (isinstance(embeddings, tuple) and len(embeddings) == 2))
        or _scores_or_pattern_hooked(attention)
    ):
        return original(*args, **kwargs)
    config = attention.config
    hidden_states = attention.hook_in(hidden_states)
    heads = int(config.n_heads)
    kv_heads = int(getattr(config, "n_key_value_heads", None) or heads)
    q, k, v = attention.q(hidden_states), attention.k(hidden_states), attention.v(hidden_states)
    q, k, v, batch, pos, head_dim = attention._reshape_qkv_to_heads(q, k, v, heads, kv_heads)
    if rotary:
        cos, sin = attention._apply_position_embedding_hooks(embeddings)
        q, k = attention._apply_rotary_pos_emb(q, k, cos, sin)
    # An empty cache (GPT-NeoX passes one on every call) is filled as the module's own forward
    # fills it; the keys it hands back are these.
    k, v = attention._update_kv_cache(k, v, **kwargs)
    if kv_heads != heads:
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    scaling = head_dim**-0.5
    layer = getattr(attention, "_layer_idx", None)
    if (
        not rotary
        and getattr(config, "scale_attn_by_inverse_layer_idx", False)
        and layer is not None
    ):
        scaling /= float(layer + 1)
    arithmetic = _BridgeArithmetic(
        scaling=scaling,
        upcast_scores=not rotary and bool(getattr(attention, "_reorder_and_upcast_attn", False)),
    )
    chunk = query_chunk(batch, q.shape[1], pos)
    chunk_fn = functools.partial(_bridge_chunk, attention, arithmetic, None, reader)
    z = chunked(chunk_fn, q, chunk, k, v, mask)
    z = attention._reshape_attn_output(z, batch, pos, heads, head_dim)
    out = attention._apply_output_projection(z)
    return attention.hook_out(attention.hook_hidden_states(out)), None


# --- HookedTransformer ------------------------------------------------------------------------


def hooked_module_supports_chunking(attention: Any) -> bool:
    """Whether :func:`chunked_attention` reproduces this HookedTransformer attention module.

    TransformerLens' own causal ``Attention`` and ``GroupedQueryAttention`` (not subclasses)
    with standard, shortformer or rotary positions, local (sliding-window) layers and
    soft-capped scores included; not ALiBi, relative bias, attention sinks, QK clipping,
    inline OLMo norms, log-n scaling, per-head results or 4-bit weights.
    """
    from transformer_lens.components import Attention, GroupedQueryAttention

    if type(attention) not in (Attention, GroupedQueryAttention):
        return False
    cfg = attention.cfg
    direction = getattr(attention, "_attention_dir_override", None) or cfg.attention_dir
    return (
        direction == "causal"
        and cfg.positional_embedding_type in ("standard", "rotary", "shortformer")
        and cfg.original_architecture
        not in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
        and getattr(cfg, "clip_qkv", None) is None
        and not getattr(cfg, "use_logn_attn", False)
        and not getattr(cfg, "use_attention_sinks", False)
        and not cfg.use_attn_result
        and not getattr(cfg, "load_in_4bit", False)
    )


def _hooked_chunk(
    attention: Any, reader: PatternReader | None, q: Tensor, lo: int, k: Tensor, v: Tensor
) -> Tensor:
    """One query chunk of TransformerLens' explicit attention ([batch, head, chunk, d_head])."""
    cfg = attention.cfg
    n_queries = q.shape[-2]
    window = cfg.window_size if getattr(attention, "attn_type", "global") == "local" else None
    start, end = key_span(lo, n_queries, k.shape[-2], window, every_key=reader is not None)
    k, v = k[..., start:end, :], v[..., start:end, :]
    # TransformerLens' own order: q k^T / attn_scale, soft-cap, causal (and window) mask.
    scores = torch.matmul(q, k.transpose(-2, -1)) / attention.attn_scale
    softcap = getattr(cfg, "attn_scores_soft_cap", None)
    if softcap is not None and softcap > 0:
        scores = softcap * F.tanh(scores / softcap)
    queries = torch.arange(lo, lo + n_queries, device=q.device)[:, None]
    keys = torch.arange(start, end, device=q.device)[None, :]
    hidden = keys > queries
    if window:
        hidden = hidden | (keys <= queries - window)
    scores = scores.masked_fill(hidden, attention.IGNORE.to(scores.device))
    pattern = F.softmax(scores, dim=-1)
    pattern = torch.where(torch.isnan(pattern), torch.zeros_like(pattern), pattern)
    if reader is not None:
        reader(lo, pattern.detach())
    return torch.matmul(pattern.to(v.dtype), v)


def _hooked_chunked_forward(
    attention: Any,
    original: Any,
    reader: PatternReader | None,
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
        or (attention_mask is not None and not bool(attention_mask.all()))
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
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [batch, head_index, pos, d_head]
    if q.device != k.device:
        k, v = k.to(q.device), v.to(q.device)
    chunk = query_chunk(q.shape[0], q.shape[1], k.shape[2])
    chunk_fn = functools.partial(_hooked_chunk, attention, reader)
    z = chunked(chunk_fn, q, chunk, k, v)
    return hooked_output(attention, z)


def fused_attention_applies(model: TransformerLensModel, attention: Any) -> bool:
    """Whether `attention` runs the fused kernel (no T x T tensor kept) on a plain causal
    prompt: :func:`~tlscopes.models.fused_attention.module_supports_fusion` on a
    HookedTransformer, and on a bridge its own check outside float64 (whose softmax the bridge
    takes in float32, so a float64 bridge keeps its own attention)."""
    from tlscopes.models.facts import is_bridge

    if is_bridge(model):
        return model.cfg.dtype != torch.float64 and bridge_module_supports_fusion(attention)
    return module_supports_fusion(attention)


# --- the switch ---

# An attention implementation Hugging Face has no mask function for: its mask builders then
# return None instead of a [batch, 1, T, T] float mask per mask type (4 GiB at 32,768 tokens).
_MASKLESS_IMPLEMENTATION = "tlscopes_chunked"


def _window_known(attention: Any) -> bool:
    """Whether a bridge attention's sliding window can be read off the module (Gemma, Qwen:
    ``sliding_window`` per layer) or is absent from the model (Llama); Mistral's lives only in
    the mask Hugging Face builds, so its model keeps building it."""
    hf_attention = getattr(attention, "original_component", None)
    if hf_attention is None:
        return True  # a HookedTransformer module: its window is in its config
    config = getattr(hf_attention, "config", None)
    return hasattr(hf_attention, "sliding_window") or not getattr(config, "sliding_window", None)


@contextlib.contextmanager
def _no_hugging_face_masks(model: TransformerLensModel, *, every: bool) -> Iterator[None]:
    """On a bridge whose every attention layer was switched, lets Hugging Face build no mask:
    the chunked path forms each chunk's causal and window mask itself, and the fused kernel is
    causal by itself (it runs only where there is no window). Restored on exit."""
    from tlscopes.models.facts import is_bridge

    config = getattr(getattr(model, "original_model", None), "config", None)
    if not (every and is_bridge(model) and hasattr(config, "_attn_implementation")):
        yield
        return
    previous = config._attn_implementation
    config._attn_implementation = _MASKLESS_IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = previous


def _hooked_forward_for(attention: Any) -> Callable[..., Any] | None:
    return _hooked_chunked_forward if hooked_module_supports_chunking(attention) else None


def _bridge_forward_for(attention: Any) -> Callable[..., Any] | None:
    if bridge_module_supports_chunking(attention):
        return _bridge_chunked_forward
    if joint_bridge_module_supports_chunking(attention):
        return _joint_chunked_forward
    return None


@contextlib.contextmanager
def chunked_attention(
    model: TransformerLensModel, read_patterns: Callable[[int, int, Tensor], None] | None = None
) -> Iterator[int]:
    """Runs a model's attention without keeping (or forming whole) any T x T tensor.

    Each supported attention module (:func:`bridge_module_supports_chunking`,
    :func:`joint_bridge_module_supports_chunking`, :func:`hooked_module_supports_chunking`)
    runs the fused SDPA kernel where that is exact and the query-chunked path otherwise.
    Yields the number of modules switched; every module's own ``forward`` is restored on exit,
    also after an error.

    Args:
        read_patterns: called as ``read_patterns(layer, first_query, pattern)`` with each
            chunk's attention pattern [batch, head_index, chunk, key_pos] (detached), for
            statistics over the whole pattern without keeping it (the chunked path then runs
            instead of the fused kernel, which forms no pattern). Called again for a chunk that
            a backward pass recomputes.
    """
    from tlscopes.models.facts import hooked_transformer_class, is_bridge

    hooked = hooked_transformer_class()
    if hooked is not None and isinstance(model, hooked):
        forward_for = _hooked_forward_for
        fusable, fused, check = module_supports_fusion, _fused_forward, AllOnesMaskCheck()
    elif is_bridge(model):
        forward_for = _bridge_forward_for
        fusable, fused = bridge_module_supports_fusion, _bridge_fused_forward
        check = CausalMaskCheck()
    else:
        yield 0
        return
    switched = []
    try:
        for layer, block in enumerate(getattr(model, "blocks", [])):
            attention = block.attn
            chunked_forward = forward_for(attention)
            if chunked_forward is None or "forward" in attention.__dict__:
                continue
            # The fused kernel where it is exact; where a call is not, the chunked path.
            reader = None if read_patterns is None else functools.partial(read_patterns, layer)
            step = functools.partial(chunked_forward, attention, attention.forward, reader)
            if fusable(attention) and read_patterns is None:
                step = functools.partial(fused, check, attention, step)

            def forward(*args: Any, step: Any = step, **kwargs: Any) -> Any:
                return step(*args, **kwargs)

            object.__setattr__(attention, "forward", forward)
            switched.append(attention)
        maskless = len(switched) == len(model.blocks) and all(map(_window_known, switched))
        with _no_hugging_face_masks(model, every=maskless):
            yield len(switched)
    finally:
        for attention in switched:
            object.__delattr__(attention, "forward")
