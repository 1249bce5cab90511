"""Batching, positions, state restored after success and error, bad input, processed weights."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED, VARIANTS

PROMPTS = ["the capital of france is", "one two three four five six seven", "the cat sat"]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def grad_flags(model):
    return [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize(
    "scope",
    [ts.TemperatureScope(), ts.FisherScope(), ts.FisherScope(rank=2), ts.SemanticScope(" cat")],
)
def test_batched_with_padding_equals_unbatched(model, scope):
    batched = ts.attribute(model, PROMPTS, scope)
    assert batched.scores.shape == (3, max(len(model.to_tokens(p)[0]) for p in PROMPTS))
    for index, prompt in enumerate(PROMPTS):
        single = ts.attribute(model, prompt, scope)
        length = len(single.tokens[0])
        torch.testing.assert_close(
            batched.scores[index, :length], single.scores[0], rtol=1e-9, atol=1e-12
        )
        assert bool((batched.scores[index, length:] == 0).all())
        assert batched.tokens[index] == single.tokens[0]
        torch.testing.assert_close(batched.top_probs[index], single.top_probs[0])


def test_token_tensor_inputs_match_text(model):
    tokens = model.to_tokens(PROMPTS[0])
    from_text = ts.attribute(model, PROMPTS[0], ts.TemperatureScope())
    torch.testing.assert_close(
        ts.attribute(model, tokens, ts.TemperatureScope()).scores, from_text.scores
    )
    torch.testing.assert_close(
        ts.attribute(model, tokens[0], ts.TemperatureScope()).scores, from_text.scores
    )


def test_positions_after_the_explained_one_score_zero(model):
    result = ts.attribute(model, PROMPTS[1], ts.TemperatureScope(), position=3)
    assert int(result.positions[0]) == 3
    assert bool((result.scores[0, 4:] == 0).all())
    assert bool((result.scores[0, :4] > 0).all())


def test_semantic_targets_per_prompt(model):
    batched = ts.attribute(model, PROMPTS[:2], ts.SemanticScope((" paris", " eight")))
    for index, target in enumerate((" paris", " eight")):
        single = ts.attribute(model, PROMPTS[index], ts.SemanticScope(target))
        length = len(single.tokens[0])
        torch.testing.assert_close(batched.scores[index, :length], single.scores[0])
    assert batched.target_ids.tolist() == [
        ts.core.scopes.resolve_token(model, t) for t in (" paris", " eight")
    ]


def test_state_restored_after_success(model):
    flags = grad_flags(model)
    ts.attribute(model, PROMPTS, ts.FisherScope(rank=2))
    assert attached_hooks(model) == 0
    assert grad_flags(model) == flags
    assert any(flags), (
        "the model should start with trainable parameters for this test to mean something"
    )


class ExplodingScope(ts.TemperatureScope):
    def directions(self, inputs):
        raise RuntimeError("boom")


def test_state_restored_after_exception(model):
    flags = grad_flags(model)
    with pytest.raises(RuntimeError, match="boom"):
        ts.attribute(model, PROMPTS, ExplodingScope())
    assert attached_hooks(model) == 0
    assert grad_flags(model) == flags


class BrokenScope(ts.TemperatureScope):
    """A scope whose extra hook fails inside the forward pass (the engine attaches the hooks
    the scopes return)."""

    def hooks(self, capture):
        def hook(tensor, *, hook):
            raise ValueError("inside the forward pass")

        return capture.hooks() + [("blocks.0.hook_resid_pre", hook)]


def test_state_restored_after_exception_inside_forward(model):
    flags = grad_flags(model)
    with pytest.raises(ValueError, match="inside the forward pass"):
        ts.attribute(model, model.to_tokens("the cat"), BrokenScope())
    assert attached_hooks(model) == 0
    assert grad_flags(model) == flags


def test_bad_inputs_get_clear_errors(model):
    with pytest.raises(ValueError, match="empty text"):
        ts.attribute(model, "   ", ts.TemperatureScope())
    with pytest.raises(ValueError, match="empty list"):
        ts.attribute(model, [], ts.TemperatureScope())
    with pytest.raises(IndexError, match="position 40 is out of range for prompt 0 of 6 tokens"):
        ts.attribute(model, PROMPTS[0], ts.TemperatureScope(), position=40)
    with pytest.raises(IndexError, match="position -7"):
        ts.attribute(model, PROMPTS[0], ts.TemperatureScope(), position=-7)
    with pytest.raises(ValueError, match="longer than the model's context of 32"):
        ts.attribute(model, "the cat " * 20, ts.TemperatureScope())
    with pytest.raises(ValueError, match=r"target ' paris rome' is 2 tokens \['paris', 'rome'\]"):
        ts.attribute(model, PROMPTS[0], ts.SemanticScope(" paris rome"))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ts.attribute(model, PROMPTS[0], ts.SemanticScope(10_000))
    with pytest.raises(ValueError, match="positive integer"):
        ts.FisherScope(rank=0)
    with pytest.raises(ValueError, match="d_model"):
        ts.attribute(model, PROMPTS[0], ts.DirectionScope(torch.ones(5, dtype=torch.float64)))
    with pytest.raises(TypeError, match="Scope"):
        ts.attribute(model, PROMPTS[0], "fisher")


def test_non_finite_gradients_are_refused(model):
    huge = torch.full((model.cfg.d_model,), 1e308, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="non-finite embedding gradients"):
        ts.attribute(model, PROMPTS[0], ts.DirectionScope(huge))
    assert attached_hooks(model) == 0


def test_result_roundtrip_pandas_and_html(model, tmp_path):
    result = ts.attribute(model, PROMPTS, ts.SemanticScope(" paris"))
    path = tmp_path / "result.json"
    result.save(path)
    loaded = ts.Attribution.load(path)
    torch.testing.assert_close(loaded.scores, result.scores)
    assert (
        loaded.tokens == result.tokens and loaded.target_ids.tolist() == result.target_ids.tolist()
    )
    frame = result.to_pandas()
    assert len(frame) == sum(len(t) for t in result.tokens)
    assert set(frame.columns) >= {"prompt", "position", "token", "score", "rank"}
    one = result[1]
    assert one.scores.shape == (1, len(result.tokens[1])) and one.tokens == [result.tokens[1]]
    html = result.to_html(tmp_path / "report.html").html
    assert "unpkg.com" not in html and "cdn.jsdelivr" not in html
    assert "capital" in html and (tmp_path / "report.html").exists()
    assert result._repr_html_().startswith("<!DOCTYPE html>")


@pytest.mark.skipif(
    not HAS_HOOKED,
    reason="needs HookedTransformer (TransformerLens 3.x); CI runs a 3.x environment",
)
@pytest.mark.parametrize(
    "scope", [ts.TemperatureScope(), ts.FisherScope(rank=2), ts.SemanticScope(" paris")]
)
def test_hooked_and_bridge_agree_on_the_same_weights(scope):
    hf_model = helpers.build_hf_llama()
    bridge = helpers.build_bridge(hf_model)
    hooked = helpers.hooked_from_hf(helpers.build_hf_llama())
    # The two forward implementations themselves differ by ~5e-7 relative in float64 (Hugging
    # Face builds its rotary tables in float32), so scores can agree only to that level.
    tokens = hooked.to_tokens(PROMPTS[0])
    with torch.no_grad():
        torch.testing.assert_close(hooked(tokens), bridge(tokens), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        ts.attribute(hooked, PROMPTS, scope).scores,
        ts.attribute(bridge, PROMPTS, scope).scores,
        rtol=1e-5,
        atol=1e-9,
    )


def test_attribute_many_equals_one_call_per_scope(model):
    scopes = [
        ts.SemanticScope(" cat"),
        ts.FisherScope(rank=2),
        ts.TemperatureScope(),
        ts.FisherScope(),
    ]
    together = ts.attribute_many(model, PROMPTS, scopes)
    for scope, result in zip(scopes, together, strict=True):
        alone = ts.attribute(model, PROMPTS, scope)
        assert result.method == scope.name
        torch.testing.assert_close(result.scores, alone.scores, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="scopes is empty"):
        ts.attribute_many(model, PROMPTS, [])


@pytest.mark.parametrize("per_pass", [1, 2, 3, 7])
def test_directions_per_pass_changes_nothing_but_speed(model, per_pass):
    # 1 + 3 + 1 + 2 = 7 directions: one plain backward pass each, chunks with a remainder
    # (2 -> 2,2,2,1; 3 -> 3,3,1), and all seven in one vmapped pass.
    scopes = [ts.SemanticScope(" cat"), ts.FisherScope(rank=3), ts.TemperatureScope()]
    scopes.append(ts.FisherScope(rank=2))
    reference = ts.attribute_many(model, PROMPTS, scopes, directions_per_pass=7)
    chunked = ts.attribute_many(model, PROMPTS, scopes, directions_per_pass=per_pass)
    for a, b in zip(reference, chunked, strict=True):
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-9, atol=1e-12)
    single = ts.attribute(model, PROMPTS, ts.FisherScope(rank=3), directions_per_pass=per_pass)
    torch.testing.assert_close(single.scores, reference[1].scores, rtol=1e-9, atol=1e-12)
    assert attached_hooks(model) == 0


def test_directions_per_pass_default_and_bad_values():
    from tlscopes.core.backward import DIRECTION_TOKENS_PER_PASS, resolve_directions_per_pass

    assert resolve_directions_per_pass(1024) == 1
    assert resolve_directions_per_pass(DIRECTION_TOKENS_PER_PASS) == 1
    assert resolve_directions_per_pass(128) == DIRECTION_TOKENS_PER_PASS // 128
    assert resolve_directions_per_pass(10, requested=4) == 4
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="directions_per_pass must be a positive int"):
            resolve_directions_per_pass(10, requested=bad)
