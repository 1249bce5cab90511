"""The architecture matrix: every scope and Input x Gradient, on every family and model kind,
against a reference computed on the Hugging Face model alone (tests/hf_reference.py).

Each family's tiny random model is saved with save_pretrained and loaded back through
`tlscopes.load_model(directory, kind=..., dtype=torch.float64)`, as a user would load one.
Where each kind puts x_t is checked explicitly (docs/architectures.md).
"""

from __future__ import annotations

import math

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.hf_reference import reference
from tests.models import HAS_HOOKED
from tlscopes.methods.baselines import input_x_gradient
from tlscopes.models.facts import is_bridge

FAMILIES = sorted(helpers.HF_FAMILIES)
KINDS = ["bridge", "hooked"] if HAS_HOOKED else ["bridge"]
CASES = [(family, kind) for family in FAMILIES for kind in KINDS]

# Two 8-token prompts (BOS first), long enough for the sliding windows of 3 to hide keys.
TOKENS = torch.tensor([[0, 8, 13, 6, 9, 17, 30, 12], [0, 23, 7, 41, 15, 11, 27, 19]])
TARGET = 21
RTOL = 1e-6

# x_t is hook_embed's output. On Gemma both kinds put the sqrt(d_model) scale inside it (the
# bridge wraps Hugging Face's scaled embedding module; HookedTransformer's Embed multiplies), so
# x_t = sqrt(d_model) * E[token]: scores are 1/sqrt(d_model) times those taken with respect to
# the table row (rankings equal; Input x Gradient unchanged).
X_SCALE = {"gemma2": math.sqrt(32), "gemma3": math.sqrt(32)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> (directory, Hugging Face model with the saved weights), built on first use."""
    cache = {}

    def get(family):
        if family not in cache:
            directory = str(tmp_path_factory.mktemp(family))
            cache[family] = (directory, helpers.save_hf_family(family, directory))
        return cache[family]

    return get


@pytest.fixture(scope="module")
def loaded(saved):
    cache = {}

    def get(family, kind, dtype=torch.float64):
        if (family, kind, dtype) not in cache:
            directory, _ = saved(family)
            cache[family, kind, dtype] = ts.load_model(directory, kind=kind, dtype=dtype)
        return cache[family, kind, dtype]

    return get


@pytest.fixture(scope="module")
def references(saved):
    cache = {}

    def get(family, position=-1):
        if (family, position) not in cache:
            _, hf_model = saved(family)
            scale = X_SCALE.get(family, 1.0)
            cache[family, position] = [reference(hf_model, row, position, scale) for row in TOKENS]
        return cache[family, position]

    return get


def random_direction(d_model: int) -> torch.Tensor:
    return torch.randn(d_model, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


METHODS = {
    "semantic": (
        lambda model, position: ts.attribute(
            model, TOKENS, ts.SemanticScope(TARGET), position=position
        ),
        lambda ref: ref.semantic(TARGET),
    ),
    "fisher-1": (
        lambda model, position: ts.attribute(model, TOKENS, ts.FisherScope(), position=position),
        lambda ref: ref.fisher(1),
    ),
    "fisher-4": (
        lambda model, position: ts.attribute(
            model, TOKENS, ts.FisherScope(rank=4), position=position
        ),
        lambda ref: ref.fisher(4),
    ),
    "temperature": (
        lambda model, position: ts.attribute(
            model, TOKENS, ts.TemperatureScope(), position=position
        ),
        lambda ref: ref.temperature(),
    ),
    "direction": (
        lambda model, position: ts.attribute(
            model, TOKENS, ts.DirectionScope(random_direction(32)), position=position
        ),
        lambda ref: ref.direction(random_direction(32)),
    ),
    "input_x_gradient": (
        lambda model, position: input_x_gradient(model, TOKENS, target=TARGET, position=position),
        lambda ref: ref.input_x_gradient(TARGET),
    ),
}


def assert_scores_match(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # Relative to each prompt's largest score: positions after the explained one score 0.
    scale = expected.abs().amax(dim=-1, keepdim=True)
    error = ((actual - expected).abs() / scale).max().item()
    assert error <= RTOL, f"largest relative error {error:.2e} > {RTOL:.0e}"


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize(("family", "kind"), CASES)
def test_scores_equal_the_hugging_face_reference(loaded, references, family, kind, method):
    run, expected_for = METHODS[method]
    result = run(loaded(family, kind), -1)
    expected = torch.stack([expected_for(ref) for ref in references(family)])
    assert_scores_match(result.scores.double(), expected)


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_an_earlier_position_equals_the_reference(loaded, references, family, kind):
    result = ts.attribute(loaded(family, kind), TOKENS, ts.FisherScope(rank=4), position=4)
    expected = torch.stack([ref.fisher(4) for ref in references(family, 4)])
    assert_scores_match(result.scores.double(), expected)
    assert bool((result.scores[:, 5:] == 0).all())


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_x_t_is_the_documented_multiple_of_the_embedding_row(saved, loaded, family, kind):
    model = loaded(family, kind)
    _, hf_model = saved(family)
    captured = {}

    def take(tensor, *, hook):
        captured["x"] = tensor.detach()
        return tensor

    with torch.no_grad(), model.hooks(fwd_hooks=[("hook_embed", take)]):
        model(TOKENS)
    rows = hf_model.get_input_embeddings().weight.detach()[TOKENS]
    expected = X_SCALE.get(family, 1.0) * rows
    torch.testing.assert_close(captured["x"].double(), expected, rtol=1e-7, atol=0)


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_logits_equal_the_hugging_face_model(saved, loaded, family, kind):
    _, hf_model = saved(family)
    with torch.no_grad():
        expected = hf_model(input_ids=TOKENS, use_cache=False).logits
        actual = loaded(family, kind)(TOKENS).double()
    # Relative to the largest logit: Hugging Face's rotary tables and eager softmax are float32.
    error = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert error <= RTOL, f"logits off by {error:.2e} of the largest logit"


@pytest.mark.parametrize("kind", KINDS)
def test_float64_weights_stay_float64(saved, loaded, kind):
    # GPT-2 has no float32 internals in Hugging Face (no rotary tables, no float32 softmax), so
    # a float64 model whose weights all arrived in float64 gives its logits to ~1e-15.
    _, hf_model = saved("gpt2")
    with torch.no_grad():
        expected = hf_model(input_ids=TOKENS, use_cache=False).logits
        actual = loaded("gpt2", kind)(TOKENS)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


# Each family's distinguishing feature changes the tiny model's output, so the matrix would see
# a kind that ignored it.
VARIANTS_THAT_BITE = {
    "mistral sliding window": ("mistral", dict(sliding_window=32)),
    "gemma2 sliding window": ("gemma2", dict(sliding_window=32)),
    "gemma2 attention soft-cap": ("gemma2", dict(attn_logit_softcapping=1e6)),
    "gemma2 final soft-cap": ("gemma2", dict(final_logit_softcapping=1e6)),
    "gemma2 query scale": ("gemma2", dict(query_pre_attn_scalar=8)),
    "gemma3 sliding window": ("gemma3", dict(sliding_window=32)),
    "gemma3 local rotary base": ("gemma3", dict(rope_local_base_freq=1e6)),
    "neox partial rotary": ("neox", dict(rotary_pct=1.0)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS_THAT_BITE))
def test_each_family_feature_changes_the_output(saved, variant):
    family, overrides = VARIANTS_THAT_BITE[variant]
    _, hf_model = saved(family)
    without = helpers.build_hf_family(family, **overrides)
    with torch.no_grad():
        expected = hf_model(input_ids=TOKENS, use_cache=False).logits
        changed = without(input_ids=TOKENS, use_cache=False).logits
    assert (expected - changed).abs().max() > 1e-3


def test_the_gemma2_final_cap_changes_fisher(references):
    # Fisher of the capped p (the lead's definition) is far from Fisher of the uncapped logits.
    import dataclasses

    ref = references("gemma2")[0]
    uncapped = dataclasses.replace(ref, capped_logits=ref.logits, cap=None)
    assert ((ref.fisher(1) - uncapped.fisher(1)).abs().max() / ref.fisher(1).max()) > 1e-2


# Which attention layers the fused kernel takes over, per family and kind: the allow-list of
# docs/architectures.md. HookedTransformer in float64; the bridge in float32 (a float64 bridge
# keeps its own float32 softmax on every call). A variant not listed here must step aside.
FUSED_LAYERS = {
    ("gpt2", "hooked"): [True, True],
    ("gpt2", "bridge"): [False, False],  # joint QKV attention
    ("neox", "hooked"): [True, True],
    ("neox", "bridge"): [False, False],  # joint QKV attention, partial rotary
    ("llama", "hooked"): [True, True],
    ("llama", "bridge"): [True, True],
    # Hooked: both layers are local (window 3). Bridge: switched, but a window that hides a key
    # makes the mask more than causal, so each call checks it and steps aside.
    ("mistral", "hooked"): [False, False],
    ("mistral", "bridge"): [True, True],
    ("qwen2", "hooked"): [True, True],
    ("qwen2", "bridge"): [True, True],
    ("qwen3", "hooked"): [True, True],
    ("qwen3", "bridge"): [False, False],  # q/k norms inside Hugging Face's attention
    ("gemma2", "hooked"): [False, False],  # attention soft-capping
    ("gemma2", "bridge"): [False, False],
    ("gemma3", "hooked"): [False, True],  # the local layer steps aside
    ("gemma3", "bridge"): [False, False],  # q/k norms inside Hugging Face's attention
}
FUSION_DTYPE = {"hooked": torch.float64, "bridge": torch.float32}


def supports_fusion(model, attention) -> bool:
    from tlscopes.models.fused_attention import (
        bridge_module_supports_fusion,
        module_supports_fusion,
    )

    check = bridge_module_supports_fusion if is_bridge(model) else module_supports_fusion
    return check(attention)


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_fused_attention_is_exact_or_steps_aside(loaded, monkeypatch, family, kind):
    from tlscopes.models.fused_attention import fused_attention

    model = loaded(family, kind, FUSION_DTYPE[kind])
    layers = [supports_fusion(model, block.attn) for block in model.blocks]
    assert layers == FUSED_LAYERS[family, kind]
    calls = helpers.kernel_calls(monkeypatch)
    with torch.no_grad():
        with fused_attention(model) as switched:
            fused = model(TOKENS)
        explicit = model(TOKENS)
    assert switched == sum(layers)
    # Mistral's bridge is switched but its window bites on these 8 tokens: the mask check
    # keeps the bridge's attention.
    assert len(calls) == (0 if family == "mistral" else sum(layers))
    tolerance = 1e-10 if kind == "hooked" else 1e-5
    torch.testing.assert_close(fused, explicit, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("kind", KINDS)
def test_a_window_longer_than_the_input_fuses_mistral(loaded, monkeypatch, kind):
    from tlscopes.models.fused_attention import fused_attention

    model = loaded("mistral", kind, FUSION_DTYPE[kind])
    calls = helpers.kernel_calls(monkeypatch)
    short = TOKENS[:, :3]  # within the window: plain causal attention
    with torch.no_grad():
        with fused_attention(model):
            fused = model(short)
        explicit = model(short)
    tolerance = 1e-10 if kind == "hooked" else 1e-5
    torch.testing.assert_close(fused, explicit, rtol=tolerance, atol=tolerance)
    # HookedTransformer decides per layer from its config (local layers never fuse); the
    # bridge decides per call from the mask.
    assert len(calls) == (0 if kind == "hooked" else model.cfg.n_layers)
