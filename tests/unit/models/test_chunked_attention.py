"""Query-chunked attention: the model's own logits and gradients, a chunk of queries at a time.

On every family and kind (tiny float64 models saved and loaded as a user would), the forward
pass under :func:`chunked_attention` equals the model's own to 1e-12 with chunks of one to a
few queries, sliding windows that hide keys included; so do the gradients with respect to the
embeddings. Modules it does not reproduce, and calls with a hook on the pattern, keep their
own forward; every forward is restored on exit, also after an error.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED
from tlscopes.models import chunked_attention
from tlscopes.models.chunked_attention import (
    bridge_module_supports_chunking,
    chunked,
    hooked_module_supports_chunking,
    joint_bridge_module_supports_chunking,
    key_span,
    query_chunk,
)
from tlscopes.models.facts import is_bridge

FAMILIES = sorted(helpers.HF_FAMILIES)
KINDS = ["bridge", "hooked"] if HAS_HOOKED else ["bridge"]
CASES = [(family, kind) for family in FAMILIES for kind in KINDS]
TOKENS = torch.tensor([[0, 8, 13, 6, 9, 17, 30, 12, 22, 5], [0, 23, 7, 41, 15, 11, 27, 19, 3, 36]])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    cache = {}

    def get(family, kind):
        if (family, kind) not in cache:
            directory = str(tmp_path_factory.mktemp(family))
            helpers.save_hf_family(family, directory)
            cache[family, kind] = ts.load_model(directory, kind=kind, dtype=torch.float64)
        return cache[family, kind]

    return get


def supports(model, attention):
    if is_bridge(model):
        return bridge_module_supports_chunking(attention) or joint_bridge_module_supports_chunking(
            attention
        )
    return hooked_module_supports_chunking(attention)


def embedding_gradient(model, tokens):
    """d(sum of logits . fixed weights)/d(embeddings), and the logits."""
    taken = {}

    def leaf(tensor, *, hook):
        taken["x"] = tensor.detach().requires_grad_(True)
        return taken["x"]

    with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", leaf)]):
        logits = model(tokens)
        weights = torch.linspace(-1, 1, logits.shape[-1], dtype=logits.dtype)
        (grad,) = torch.autograd.grad((logits * weights).sum(), taken["x"])
    return logits.detach(), grad


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_chunked_attention_equals_the_models_own(loaded, monkeypatch, family, kind):
    model = loaded(family, kind)
    # Every family's attention takes the chunked path: the bridge's rotary and joint-QKV
    # modules and TransformerLens' own attention classes.
    assert all(supports(model, block.attn) for block in model.blocks)
    monkeypatch.setattr(chunked_attention, "CHUNK_SCORE_ELEMENTS", 150)
    logits, grad = embedding_gradient(model, TOKENS)
    chunks = []
    for name in ("_bridge_chunk", "_hooked_chunk"):
        original = getattr(chunked_attention, name)

        def counted(*a, original=original, **k):
            chunks.append(inspect.signature(original).bind(*a, **k).arguments["lo"])
            return original(*a, **k)

        monkeypatch.setattr(chunked_attention, name, counted)
    with chunked_attention.chunked_attention(model) as switched:
        assert switched == model.cfg.n_layers
        chunked_logits, chunked_grad = embedding_gradient(model, TOKENS)
    if is_bridge(model):  # float64: every bridge layer runs its chunks (no fused kernel)
        assert len(chunks) >= 2 * model.cfg.n_layers and set(chunks) >= {0, 1}
    scale = logits.abs().max()
    assert float((chunked_logits - logits).abs().max() / scale) <= 1e-12
    assert float((chunked_grad - grad).abs().max() / grad.abs().max()) <= 1e-12
    assert not any("forward" in block.attn.__dict__ for block in model.blocks)


def test_a_hook_on_the_pattern_keeps_the_models_own_attention(loaded, monkeypatch):
    model = loaded("gemma3", "bridge")
    calls = []
    original = chunked_attention._bridge_chunk
    monkeypatch.setattr(
        chunked_attention, "_bridge_chunk", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    patterns = []

    def keep(tensor, *, hook):
        patterns.append(tensor.shape)

    with torch.no_grad(), chunked_attention.chunked_attention(model):
        names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
        with model.hooks(fwd_hooks=[(name, keep) for name in names]):
            model(TOKENS)
        assert not calls and patterns == [(2, 4, 10, 10)] * model.cfg.n_layers
        model(TOKENS)
        assert calls  # without the hook, the chunked path runs


def test_every_forward_is_restored_after_an_error(loaded):
    model = loaded("gemma2", "bridge")
    with pytest.raises(RuntimeError, match="inside"):
        with chunked_attention.chunked_attention(model) as switched:
            assert switched == model.cfg.n_layers
            raise RuntimeError("inside")
    assert not any("forward" in block.attn.__dict__ for block in model.blocks)


def test_chunks_cover_every_query_once():
    q = torch.arange(2 * 3 * 10 * 4, dtype=torch.float64).reshape(2, 3, 10, 4)
    seen = []

    def identity(part, lo):
        seen.append((lo, part.shape[2]))
        return part * 2

    out = chunked(identity, q, 4, recompute=False)
    assert seen == [(0, 4), (4, 4), (8, 2)]
    torch.testing.assert_close(out, q * 2)
    assert query_chunk(1, 4, 1000, elements=8000) == 2 and query_chunk(8, 8, 10**6) == 1
    # By default 1,024 scores per key (256 queries of 4 heads), at most 2^24 in all.
    assert query_chunk(1, 4, 4096) == 256 and query_chunk(2, 8, 1024) == 128
    assert query_chunk(1, 4, 32768) == 128 and query_chunk(1, 4, 16384) == 256


def test_a_chunk_reads_only_the_keys_its_queries_can_see():
    # Causal: nothing after the chunk's last query.
    assert key_span(0, 4, 10, None) == (0, 4) and key_span(8, 4, 10, None) == (0, 10)
    # A window of 3: query 6 sees keys 4, 5, 6; queries 6..9 see keys 4..9.
    assert key_span(6, 4, 10, 3) == (4, 10) and key_span(0, 2, 10, 3) == (0, 2)
    # A pattern reader gets whole rows.
    assert key_span(6, 4, 10, 3, every_key=True) == (0, 10)


@pytest.mark.parametrize("kind", KINDS)
def test_windowed_layers_score_only_their_window(loaded, monkeypatch, kind):
    """Gemma 3's sliding layers (window 3 here) score each chunk against chunk + 2 keys at most,
    its global layers against the keys up to the chunk's end, and the output is unchanged."""
    model = loaded("gemma3", kind)
    expected = embedding_gradient(model, TOKENS)
    monkeypatch.setattr(chunked_attention, "CHUNK_SCORE_ELEMENTS", 2 * 2 * 4 * 10)
    spans = []
    original = chunked_attention.key_span

    def recorded(lo, n_queries, n_keys, window, **kwargs):
        span = original(lo, n_queries, n_keys, window, **kwargs)
        spans.append((lo, n_queries, window, span))
        return span

    monkeypatch.setattr(chunked_attention, "key_span", recorded)
    with chunked_attention.chunked_attention(model):
        actual = embedding_gradient(model, TOKENS)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * float(want.abs().max()))
    windowed = [(lo, n, span) for lo, n, window, span in spans if window]
    full = [(lo, n, span) for lo, n, window, span in spans if not window]
    # A HookedTransformer's global layer runs the fused kernel instead (no window: exact there).
    assert windowed and (full or not is_bridge(model))
    assert all(end - start <= n + 2 and end == lo + n for lo, n, (start, end) in windowed)
    assert any(start > 0 for _, _, (start, _) in windowed)
    assert all(span == (0, lo + n) for lo, n, span in full)


@pytest.mark.parametrize(("family", "builds_masks"), [("gemma3", False), ("mistral", True)])
def test_hugging_face_builds_no_t_by_t_mask_where_each_layer_knows_its_window(
    loaded, family, builds_masks
):
    model = loaded(family, "bridge")
    config = model.original_model.config
    before = config._attn_implementation
    masks = []

    def spy(module, args, kwargs):
        masks.append(kwargs.get("attention_mask"))

    handles = [
        block.attn.register_forward_pre_hook(spy, with_kwargs=True) for block in model.blocks
    ]
    try:
        with torch.no_grad(), chunked_attention.chunked_attention(model):
            model(TOKENS)
    finally:
        for handle in handles:
            handle.remove()
    assert len(masks) == model.cfg.n_layers
    # Gemma's layers carry their windows: no mask. Mistral's window lives only in the mask.
    assert all((mask is not None) == builds_masks for mask in masks)
    assert config._attn_implementation == before


# GPT-2's two attention options: scores divided by (layer + 1), and q k^T taken in float32
# (the softmax then runs in float32 and is cast back), which holds even a float64 model to
# float32 rounding wherever the chunks' matmuls differ in shape from the whole one.
GPT2_OPTIONS = [
    ({"scale_attn_by_inverse_layer_idx": True}, torch.float64, 1e-12),
    ({"reorder_and_upcast_attn": True}, torch.float64, 1e-6),
    (
        {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True},
        torch.float32,
        1e-5,
    ),
]


@pytest.mark.parametrize(("options", "dtype", "tolerance"), GPT2_OPTIONS)
def test_gpt2s_attention_options_are_reproduced(tmp_path, monkeypatch, options, dtype, tolerance):
    helpers.save_hf_family("gpt2", str(tmp_path / "options"), **options)
    helpers.save_hf_family("gpt2", str(tmp_path / "plain"))
    model = ts.load_model(str(tmp_path / "options"), kind="bridge", dtype=dtype)
    plain = ts.load_model(str(tmp_path / "plain"), kind="bridge", dtype=dtype)
    upcast = options.get("reorder_and_upcast_attn", False)
    assert all(block.attn._reorder_and_upcast_attn == upcast for block in model.blocks)
    assert model.cfg.scale_attn_by_inverse_layer_idx == options.get(
        "scale_attn_by_inverse_layer_idx", False
    )
    monkeypatch.setattr(chunked_attention, "CHUNK_SCORE_ELEMENTS", 150)
    logits, grad = embedding_gradient(model, TOKENS)
    with chunked_attention.chunked_attention(model) as switched:
        assert switched == model.cfg.n_layers
        chunked_logits, chunked_grad = embedding_gradient(model, TOKENS)
    assert float((chunked_logits - logits).abs().max() / logits.abs().max()) <= tolerance
    assert float((chunked_grad - grad).abs().max() / grad.abs().max()) <= tolerance
    if not upcast:  # the layer scale changes the logits (the same weights without it differ)
        assert float((embedding_gradient(plain, TOKENS)[0] - logits).abs().max()) > 1e-3
