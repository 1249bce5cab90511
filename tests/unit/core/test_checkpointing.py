"""Checkpointed attribution (checkpoint=True) equals the plain path on every family and kind.

Each family's tiny float64 model (tests/helpers.py HF_FAMILIES: GPT-2, GPT-NeoX, Llama,
Mistral and Gemma sliding windows, Gemma 2 soft-caps, Qwen3 and Gemma 3 QK norms, grouped
keys) is loaded through ``tlscopes.load_model`` as a user would. Attention is forced into
several query chunks, so the chunked path's masks, windows and recomputation are exercised on
12 tokens. Checkpointed scores (inputs, layers, heads) equal the plain path's to 1e-12 of the
largest score, and the Hugging Face reference (exact Jacobian through its eager attention) to
1e-6 as in the architecture matrix. The causal invariant holds with checkpointing: explaining
position p of a prompt equals explaining the last position of its first p + 1 tokens.
"""

from __future__ import annotations

import gc
import platform
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import tlscopes as ts
from tests import helpers
from tests.hf_reference import reference
from tests.models import HAS_HOOKED
from tlscopes.core import checkpointing
from tlscopes.core.checkpointing import plain_path_bytes, resolve_checkpoint
from tlscopes.core.inputs import prepare_inputs
from tlscopes.models import chunked_attention
from tlscopes.models.facts import is_bridge

FAMILIES = sorted(helpers.HF_FAMILIES)
KINDS = ["bridge", "hooked"] if HAS_HOOKED else ["bridge"]
CASES = [(family, kind) for family in FAMILIES for kind in KINDS]
# Two 12-token prompts, BOS first; the sliding windows of 3 hide keys.
TOKENS = torch.tensor(
    [[0, 8, 13, 6, 9, 17, 30, 12, 22, 5, 19, 27], [0, 23, 7, 41, 15, 11, 27, 19, 3, 36, 14, 9]]
)
SCALE = {"gemma2": 32**0.5, "gemma3": 32**0.5}  # x_t = sqrt(d_model) E[token] on Gemma
EXACT = 1e-12


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
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

    def get(family, kind):
        if (family, kind) not in cache:
            directory, _ = saved(family)
            cache[family, kind] = ts.load_model(directory, kind=kind, dtype=torch.float64)
        return cache[family, kind]

    return get


@pytest.fixture
def small_chunks(monkeypatch):
    """About 2 to 4 queries per chunk on these prompts, MLPs run 5 positions at a time, and a
    count of attention chunks computed."""
    monkeypatch.setattr(chunked_attention, "CHUNK_SCORE_ELEMENTS", 200)
    monkeypatch.setattr(checkpointing, "MLP_CHUNK_TOKENS", 5)
    calls = []
    for name in ("_bridge_chunk", "_hooked_chunk"):
        original = getattr(chunked_attention, name)

        def counted(*args, original=original, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(chunked_attention, name, counted)
    return calls


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def patched_forwards(model):
    modules = [block for block in model.blocks] + [block.attn for block in model.blocks]
    return sum("forward" in module.__dict__ for module in modules)


def relative_error(actual, expected):
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max() / expected.abs().max())


def chunks_expected(model) -> bool:
    """Whether some attention layer takes the chunked path (not the fused kernel) here."""
    if is_bridge(model):
        return any(
            chunked_attention.bridge_module_supports_chunking(block.attn)
            or chunked_attention.joint_bridge_module_supports_chunking(block.attn)
            for block in model.blocks
        )
    return any(
        chunked_attention.hooked_module_supports_chunking(block.attn)
        and not chunked_attention.module_supports_fusion(block.attn)
        for block in model.blocks
    )


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_checkpointed_layers_and_heads_equal_the_plain_path(loaded, small_chunks, family, kind):
    model = loaded(family, kind)
    scope = ts.FisherScope(rank=2)
    plain = ts.attribute_layers(model, TOKENS, scope, heads=True, position=-3, checkpoint=False)
    assert not small_chunks
    # One direction per backward pass: each pass recomputes the blocks again.
    checked = ts.attribute_layers(
        model, TOKENS, scope, heads=True, position=-3, checkpoint=True, directions_per_pass=1
    )
    assert bool(small_chunks) == chunks_expected(model)
    assert relative_error(checked.input_scores, plain.input_scores) <= EXACT
    assert relative_error(checked.scores, plain.scores) <= EXACT
    assert relative_error(checked.head_scores, plain.head_scores) <= EXACT
    assert attached_hooks(model) == 0 and patched_forwards(model) == 0


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_checkpointed_scores_equal_the_hugging_face_reference(saved, loaded, family, kind):
    _, hf_model = saved(family)
    model = loaded(family, kind)
    checked = ts.attribute(model, TOKENS, ts.SemanticScope(21), checkpoint=True)
    for row, tokens in enumerate(TOKENS):
        expected = reference(hf_model, tokens, -1, SCALE.get(family, 1.0)).semantic(21)
        # 1e-6: the Hugging Face reference takes its softmax in float32 (tests/hf_reference.py).
        assert relative_error(checked.scores[row].double(), expected) <= 1e-6


@pytest.mark.parametrize("family", ["gemma3", "mistral", "llama"])
@pytest.mark.parametrize("kind", KINDS)
def test_explaining_position_p_equals_explaining_the_first_p_plus_1_tokens(
    loaded, small_chunks, family, kind
):
    model = loaded(family, kind)
    tokens = TOKENS[0]
    scopes = [ts.SemanticScope(21), ts.FisherScope(rank=2), ts.TemperatureScope()]
    for position in (4, 8):
        whole = ts.attribute_many(model, tokens, scopes, position=position, checkpoint=True)
        prefix = ts.attribute_many(model, tokens[: position + 1], scopes, checkpoint=True)
        for long, short in zip(whole, prefix, strict=True):
            assert relative_error(long.scores[0, : position + 1], short.scores[0]) <= EXACT
            assert bool((long.scores[0, position + 1 :] == 0).all())


@pytest.mark.parametrize("kind", KINDS)
def test_an_internal_direction_and_a_matrix_equal_the_plain_path(loaded, small_chunks, kind):
    model = loaded("gemma3", kind)
    vector = torch.linspace(-1, 1, 32, dtype=torch.float64)
    scope = ts.DirectionScope(vector, at="blocks.0.hook_resid_post")
    results = {}
    for checkpoint in (False, True):
        results[checkpoint] = (
            ts.attribute(model, TOKENS, scope, position=-2, checkpoint=checkpoint),
            ts.attribution_matrix(
                model, TOKENS[:1], ts.FisherScope(), positions=[3, 7, 11], checkpoint=checkpoint
            ),
        )
    for plain, checked in zip(results[False], results[True], strict=True):
        assert relative_error(checked.scores, plain.scores) <= EXACT


def test_observers_see_each_pattern_once_and_never_during_recomputation(loaded):
    from tlscopes.core.engine import scope_gradients

    model = loaded("gemma2", "bridge")
    seen = []

    def observe(tensor, *, hook):
        seen.append(hook.name)

    names = [f"blocks.{layer}.hook_resid_mid" for layer in range(model.cfg.n_layers)]
    observers = [(name, observe) for name in names]
    prepared = prepare_inputs(model, TOKENS)
    scope_gradients(
        model,
        prepared.tokens,
        [ts.FisherScope(rank=2)],
        positions=prepared.positions,
        observe=observers,
        checkpoint=True,
    )
    # Once per hook point (a bridge may report its hook points by an alias's name).
    assert len(seen) == len(names)


@pytest.mark.parametrize("kind", KINDS)
def test_blocks_are_recomputed_in_the_backward_pass(loaded, monkeypatch, kind):
    model = loaded("llama", kind)
    calls = []
    block_class = type(model.blocks[0])
    original = block_class.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(block_class, "forward", counted)
    ts.attribute(model, TOKENS, ts.SemanticScope(21), checkpoint=False)
    plain, calls[:] = len(calls), []
    ts.attribute(model, TOKENS, ts.SemanticScope(21), checkpoint=True)
    # Once per block in the forward pass, once more when the backward pass recomputes it.
    assert plain == model.cfg.n_layers and len(calls) == 2 * model.cfg.n_layers
    assert patched_forwards(model) == 0


@pytest.mark.parametrize(("family", "kind"), [(f, k) for f in ("gemma3", "gpt2") for k in KINDS])
def test_a_checkpointed_forward_keeps_no_layers_queries_keys_or_values(
    loaded, small_chunks, family, kind
):
    """Between the forward and the backward pass a checkpointed block keeps its input and
    nothing of its attention. Keys and values captured by the chunk function (rather than
    handed to the chunks' checkpoints as inputs) stayed alive for every layer at once."""
    model = loaded(family, kind)
    d_head, n_tokens = model.cfg.d_head, TOKENS.shape[1]
    made = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if (
                    isinstance(tensor, torch.Tensor)
                    and tensor.ndim == 4
                    and tensor.shape[-1] == d_head
                    and n_tokens in tensor.shape[1:3]
                ):
                    made.append(weakref.ref(tensor))
            return out

    leaf = torch.randn(*TOKENS.shape, model.cfg.d_model, dtype=model.cfg.dtype)
    leaf.requires_grad_(True)
    with checkpointing.checkpointed_blocks(model), Record():
        with model.hooks(fwd_hooks=[("hook_embed", lambda tensor, hook: leaf)]):
            logits = model(TOKENS)
    gc.collect()
    # GPT-2's HookedTransformer attention runs the fused kernel; the others run chunks.
    assert bool(small_chunks) == chunks_expected(model) and len(made) >= model.cfg.n_layers
    assert logits.grad_fn is not None
    assert sum(ref() is not None for ref in made) == 0
    assert patched_forwards(model) == 0


def test_nothing_stays_patched_after_an_error(loaded, monkeypatch):
    model = loaded("gemma3", "bridge")

    def broken(self, inputs):
        raise RuntimeError("directions failed")

    monkeypatch.setattr(ts.FisherScope, "directions", broken)
    with pytest.raises(RuntimeError, match="directions failed"):
        ts.attribute(model, TOKENS, ts.FisherScope(), checkpoint=True)
    assert attached_hooks(model) == 0 and patched_forwards(model) == 0


def test_auto_checkpoints_only_when_the_plain_path_would_not_fit(loaded, monkeypatch):
    model = loaded("llama", "bridge")
    assert resolve_checkpoint(True, model, 4) and not resolve_checkpoint(False, model, 10**6)
    assert not resolve_checkpoint("auto", model, 12)  # a short prompt keeps the plain path
    needed = plain_path_bytes(model, 12)
    monkeypatch.setattr(checkpointing, "available_bytes", lambda device: needed)
    assert resolve_checkpoint("auto", model, 12)
    assert plain_path_bytes(model, 2048) > 2 * plain_path_bytes(model, 1024)


@pytest.mark.parametrize("bad", ["yes", None, 1])
def test_a_bad_checkpoint_value_is_refused(loaded, bad):
    model = loaded("llama", "bridge")
    with pytest.raises(ValueError, match='checkpoint must be "auto", True or False'):
        ts.attribute(model, TOKENS, ts.FisherScope(), checkpoint=bad)


class RecordingBar:
    """Stands in for tqdm: records the totals, descriptions and updates it is given."""

    instances: list[RecordingBar] = []

    def __init__(self, total, desc, unit, leave):
        self.total, self.desc, self.count, self.phases = total, desc, 0, []
        self.closed = False
        RecordingBar.instances.append(self)

    def update(self, n):
        self.count += n

    def reset(self, total):
        self.phases.append((self.desc, self.count, self.total))
        self.total, self.count = total, 0

    def set_description(self, desc):
        self.desc = desc

    def close(self):
        self.phases.append((self.desc, self.count, self.total))
        self.closed = True


@pytest.fixture
def recorded_bars(monkeypatch):
    RecordingBar.instances = []
    monkeypatch.setattr(checkpointing, "tqdm", RecordingBar)
    return RecordingBar.instances


@pytest.mark.parametrize("kind", KINDS)
def test_progress_counts_every_block_run_and_recomputed(loaded, recorded_bars, kind):
    model = loaded("llama", kind)
    n_layers = model.cfg.n_layers
    # Fisher at rank 3, one direction per pass: three backward passes, each recomputing every block.
    ts.attribute(model, TOKENS, ts.FisherScope(rank=3), checkpoint=True, directions_per_pass=1)
    (bar,) = recorded_bars
    assert bar.closed
    assert bar.phases == [
        ("forward", n_layers, n_layers),
        ("backward (3 passes)", 3 * n_layers, 3 * n_layers),
    ]


def test_the_free_heap_is_handed_back_after_every_block_run_and_recomputed(loaded, monkeypatch):
    model = loaded("gemma3", "bridge")
    trims = []
    monkeypatch.setattr(checkpointing, "_malloc_trim", lambda: trims.append)
    ts.attribute(model, TOKENS, ts.FisherScope(rank=3), checkpoint=True, directions_per_pass=1)
    # Once per block in the forward pass and once per block in each of the 3 backward passes.
    assert trims == [0] * (4 * model.cfg.n_layers)
    trims.clear()
    ts.attribute(model, TOKENS, ts.FisherScope(rank=3), checkpoint=False)
    assert trims == []


def test_the_heap_release_is_glibcs_malloc_trim_or_nothing():
    trim = checkpointing._malloc_trim()
    if platform.libc_ver()[0] == "glibc":
        assert trim is not None and trim(0) in (0, 1)
    checkpointing.release_free_heap()  # a no-op where the C library has no malloc_trim


def test_progress_counts_only_the_blocks_an_internal_direction_depends_on(loaded, recorded_bars):
    model = loaded("llama", "bridge")
    direction = torch.randn(model.cfg.d_model, dtype=torch.float64)
    scope = ts.DirectionScope(direction, at="blocks.0.hook_resid_post")
    ts.attribute(model, TOKENS, scope, checkpoint=True)
    (bar,) = recorded_bars
    # The forward pass runs on past block 0; the backward pass recomputes block 0 alone.
    assert bar.phases[0][1] >= 1
    assert bar.phases[1] == ("backward (1 pass)", 1, 1)


def test_no_progress_bar_without_checkpointing_or_when_hidden(loaded, recorded_bars):
    model = loaded("llama", "bridge")
    ts.attribute(model, TOKENS, ts.SemanticScope(21), checkpoint=False)
    ts.attribute(model, TOKENS, ts.SemanticScope(21), checkpoint=True, progress=False)
    ts.attribute_layers(model, TOKENS, ts.SemanticScope(21), checkpoint=True, progress=False)
    assert recorded_bars == []


def mlp_chunks(model, monkeypatch):
    """Counts the calls of every block's MLP on a chunk of positions (shorter than the prompt)."""
    calls = []
    for mlp_class in {type(block.mlp) for block in model.blocks}:
        original = mlp_class.forward

        def counted(self, *args, original=original, **kwargs):
            if args and args[0].shape[1] < TOKENS.shape[1]:
                calls.append(args[0].shape[1])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(mlp_class, "forward", counted)
    return calls


@pytest.mark.parametrize("kind", KINDS)
def test_a_long_prompts_mlp_runs_a_chunk_of_positions_at_a_time(loaded, monkeypatch, kind):
    model = loaded("gemma3", kind)
    plain = ts.attribute_layers(model, TOKENS, ts.FisherScope(), heads=True, checkpoint=False)
    monkeypatch.setattr(checkpointing, "MLP_CHUNK_TOKENS", 5)
    calls = mlp_chunks(model, monkeypatch)
    chunked = ts.attribute_layers(model, TOKENS, ts.FisherScope(), heads=True, checkpoint=True)
    # 12 positions in chunks of 5, 5 and 2, per block, in the forward pass and the recomputation.
    assert calls[:3] == [5, 5, 2] and len(calls) >= 2 * 3 * model.cfg.n_layers
    assert relative_error(chunked.scores, plain.scores) <= EXACT
    assert relative_error(chunked.head_scores, plain.head_scores) <= EXACT
    assert patched_forwards(model) == 0 and not any(
        "forward" in b.mlp.__dict__ for b in model.blocks
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_hook_inside_the_mlp_keeps_it_whole(loaded, monkeypatch, kind):
    model = loaded("llama", kind)
    hook = "blocks.0.hook_mlp_out"
    direction = torch.linspace(-1, 1, model.cfg.d_model, dtype=torch.float64)
    scope = ts.DirectionScope(direction, at=hook)
    plain = ts.attribute(model, TOKENS, scope, checkpoint=False)
    monkeypatch.setattr(checkpointing, "MLP_CHUNK_TOKENS", 5)
    calls = mlp_chunks(model, monkeypatch)
    chunked = ts.attribute(model, TOKENS, scope, checkpoint=True)
    assert relative_error(chunked.scores, plain.scores) <= EXACT
    # Block 0's MLP carries the scope's hook and runs whole; later blocks' MLPs are chunked.
    assert all(n in (5, 2) for n in calls)


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_a_forward_pass_alone_runs_chunked_and_equals_the_plain_one(
    loaded, small_chunks, family, kind
):
    """Without scopes (generation's steps, ablation) a long prompt's forward pass runs with
    chunked attention and MLPs, nothing recomputed; its logits equal the plain pass's."""
    from tlscopes.core.engine import scope_gradients

    model = loaded(family, kind)
    positions = torch.tensor([11, 7])
    plain = scope_gradients(model, TOKENS, [], positions=positions, checkpoint=False).logits
    assert not small_chunks
    chunked = scope_gradients(model, TOKENS, [], positions=positions, checkpoint=True).logits
    assert bool(small_chunks) == chunks_expected(model)
    assert relative_error(chunked, plain) <= EXACT
    assert attached_hooks(model) == 0 and patched_forwards(model) == 0


@pytest.mark.parametrize("family", ["gemma3", "llama", "neox"])
@pytest.mark.parametrize("kind", KINDS)
def test_generation_with_checkpointing_equals_the_plain_path(loaded, small_chunks, family, kind):
    model = loaded(family, kind)
    scope = ts.FisherScope()
    plain = ts.attribute_generation(model, TOKENS[:1], scope, max_new_tokens=3, checkpoint=False)
    assert not small_chunks
    chunked = ts.attribute_generation(model, TOKENS[:1], scope, max_new_tokens=3, checkpoint=True)
    assert bool(small_chunks) == chunks_expected(model)
    assert torch.equal(chunked.generated_ids, plain.generated_ids)
    assert relative_error(chunked.scores, plain.scores) <= EXACT
