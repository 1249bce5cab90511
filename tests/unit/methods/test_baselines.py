"""Baselines against exact torch.func references on tiny float64 models."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

import tlscopes as ts
from tests import helpers
from tests.reference import embeddings_of, final_state_fn
from tlscopes.core.scopes import SemanticScope, resolve_token
from tlscopes.methods import baselines

PROMPT = "the capital of france is paris and the capital of italy is"
RTOL = 1e-6


def target_logit_fn(model, tokens, position, target):
    """z_target(x) = w_target^T y(x) + b_target, as a function of the embeddings [pos, d_model]."""
    final_state = final_state_fn(model, tokens, position)
    w = model.W_U[:, target].detach()
    b = model.b_U[target].detach()
    return lambda embeddings: final_state(embeddings) @ w + b


def exact_gradient(model, position, target, scale=1.0):
    tokens = model.to_tokens(PROMPT)[0]
    x = embeddings_of(model, tokens)
    z = target_logit_fn(model, tokens, position, target)
    return x, jacrev(z)(scale * x)


def assert_close(actual, expected):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("position", [-1, 4])
def test_input_x_gradient_is_norm_of_input_times_exact_gradient(model, position):
    target = resolve_token(model, " rome")
    n = len(model.to_tokens(PROMPT)[0])
    x, gradient = exact_gradient(model, position % n, target)
    result = baselines.input_x_gradient(model, PROMPT, target=" rome", position=position)
    assert_close(result.scores[0], (x * gradient).norm(dim=-1))
    assert result.method == "input_x_gradient"
    assert int(result.target_ids[0]) == target


def test_saliency_is_exact_gradient_norm_and_equals_semantic_scope(model):
    target = resolve_token(model, " rome")
    _, gradient = exact_gradient(model, len(model.to_tokens(PROMPT)[0]) - 1, target)
    result = baselines.saliency(model, PROMPT, target=" rome")
    assert_close(result.scores[0], gradient.norm(dim=-1))
    semantic = ts.attribute(model, PROMPT, SemanticScope(" rome"))
    torch.testing.assert_close(result.scores, semantic.scores)


@pytest.mark.parametrize("n_steps", [1, 3, 7])
def test_integrated_gradients_is_the_midpoint_riemann_sum(model, n_steps):
    """IG_t = x_t * (1/n) sum_k dz/dx_t(alpha_k X), alpha_k = (k - 1/2)/n, from jacrev."""
    target = resolve_token(model, " rome")
    tokens = model.to_tokens(PROMPT)[0]
    x = embeddings_of(model, tokens)
    z = target_logit_fn(model, tokens, len(tokens) - 1, target)
    alphas = [(k + 0.5) / n_steps for k in range(n_steps)]
    mean_gradient = sum(jacrev(z)(alpha * x) for alpha in alphas) / n_steps
    expected = (x * mean_gradient).norm(dim=-1)
    result = baselines.integrated_gradients(model, PROMPT, target=" rome", n_steps=n_steps)
    assert_close(result.scores[0], expected)
    with torch.no_grad():
        difference = z(x) - z(torch.zeros_like(x))
    ig_sum = float((x * mean_gradient).detach().sum())
    assert result.details["logit_difference"][0] == pytest.approx(float(difference), rel=1e-9)
    assert result.details["completeness_gap"][0] == pytest.approx(
        ig_sum - float(difference), rel=1e-6, abs=1e-9
    )


def test_integrated_gradients_batches_give_the_same_scores():
    model = helpers.build_bridge()
    prompts = [PROMPT, "the cat sat on the mat and the dog"]
    batched = baselines.integrated_gradients(model, prompts, target=" rome", n_steps=5)
    one_at_a_time = baselines.integrated_gradients(
        model, prompts, target=" rome", n_steps=5, batch_size=1
    )
    assert batched.details["batch_size"] > 1 and one_at_a_time.details["batch_size"] == 1
    torch.testing.assert_close(batched.scores, one_at_a_time.scores, rtol=1e-9, atol=1e-12)
    for index, prompt in enumerate(prompts):
        alone = baselines.integrated_gradients(model, prompt, target=" rome", n_steps=5)
        length = len(alone.tokens[0])
        torch.testing.assert_close(
            batched.scores[index, :length], alone.scores[0], rtol=1e-9, atol=1e-12
        )


def test_integrated_gradients_completeness_gap_shrinks_with_n_steps():
    # LayerNorm model: z(alpha X) is smooth on (0, 1], so the midpoint rule converges. (With
    # RMSNorm, z jumps within alpha ~ sqrt(eps)/|x| of 0 and the gap shrinks only once the
    # grid resolves that scale; see the integrated_gradients docstring.)
    model = helpers.build_bridge(helpers.build_hf_gpt2())
    gaps = [
        abs(
            baselines.integrated_gradients(model, PROMPT, target=" rome", n_steps=n).details[
                "completeness_gap"
            ][0]
        )
        for n in (2, 8, 32, 128)
    ]
    difference = baselines.integrated_gradients(model, PROMPT, target=" rome", n_steps=1)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-3 * abs(difference.details["logit_difference"][0])
    assert gaps[0] > 10 * gaps[-1]


def test_path_batch_size_follows_the_memory_budget():
    model = helpers.build_bridge()
    per_point = baselines.bytes_per_path_point(model, 12)
    assert per_point > 0
    assert baselines.path_batch_size(model, 12, 10 * per_point) == 10
    assert baselines.path_batch_size(model, 12, 1) == 1
    with pytest.raises(ValueError, match="n_steps"):
        baselines.path_alphas(0)
    torch.testing.assert_close(
        baselines.path_alphas(4), torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64)
    )


def test_random_is_seeded_and_zero_after_the_explained_position():
    model = helpers.build_bridge()
    first = baselines.random_attribution(model, PROMPT, seed=3, position=5)
    again = baselines.random_attribution(model, PROMPT, seed=3, position=5)
    other = baselines.random_attribution(model, PROMPT, seed=4, position=5)
    torch.testing.assert_close(first.scores, again.scores)
    assert not torch.equal(first.scores, other.scores)
    assert bool((first.scores[0, :6] > 0).all()) and bool((first.scores[0, 6:] == 0).all())
    assert first.details["seed"] == 3 and first.method == "random"


def test_default_target_is_the_top_prediction():
    model = helpers.build_bridge()
    result = baselines.integrated_gradients(model, PROMPT, n_steps=2)
    assert int(result.target_ids[0]) == int(result.top_token_ids[0, 0])
    result = baselines.input_x_gradient(model, PROMPT)
    assert int(result.target_ids[0]) == int(result.top_token_ids[0, 0])


def expected_start(model, baseline):
    """X' by hand from W_E: a special token's row, or the mean row (the tiny models apply no
    scaling at hook_embed)."""
    W_E = model.W_E.detach()
    ids = {"pad": model.tokenizer.pad_token_id, "bos": model.tokenizer.bos_token_id}
    ids["eos"] = model.tokenizer.eos_token_id
    return W_E.mean(dim=0) if baseline == "mean" else W_E[ids[baseline]]


@pytest.mark.parametrize("baseline", ["pad", "bos", "eos", "mean"])
def test_integrated_gradients_baseline_embedding_and_riemann_sum(model, baseline):
    """IG_t = (x_t - x'_t) * (1/n) sum_k dz/dx_t(X' + alpha_k (X - X')) from jacrev, with X' the
    baseline token's (or the mean) embedding at every position."""
    target = resolve_token(model, " rome")
    tokens = model.to_tokens(PROMPT)[0]
    x = embeddings_of(model, tokens)
    start_vector = expected_start(model, baseline)
    ids = {"pad": 2, "bos": 0, "eos": 1}
    assert (
        baseline == "mean"
        or int(model.tokenizer.convert_tokens_to_ids(f"<{baseline}>")) == ids[baseline]
    )
    start = start_vector.expand_as(x)
    used = baselines.baseline_embeddings(model, x[None], baseline)
    torch.testing.assert_close(used[0], start, rtol=1e-12, atol=1e-12)
    z = target_logit_fn(model, tokens, len(tokens) - 1, target)
    n_steps = 3
    alphas = [(k + 0.5) / n_steps for k in range(n_steps)]
    mean_gradient = sum(jacrev(z)(start + a * (x - start)) for a in alphas) / n_steps
    expected = ((x - start) * mean_gradient).norm(dim=-1)
    result = baselines.integrated_gradients(
        model, PROMPT, target=" rome", n_steps=n_steps, baseline=baseline
    )
    assert_close(result.scores[0], expected)
    assert result.details["baseline"] == baseline
    assert result.info["parameters"]["baseline"] == baseline
    with torch.no_grad():
        difference = float(z(x) - z(start))
    assert result.details["logit_difference"][0] == pytest.approx(difference, rel=1e-9)


@pytest.mark.parametrize("baseline", ["zero", "pad", "bos", "eos", "mean"])
def test_integrated_gradients_completeness_holds_for_each_baseline(baseline):
    """With many path points sum_t IG_t = z(X) - z(X') for that baseline's X' (LayerNorm model:
    z is smooth along every straight path, the null one included)."""
    model = helpers.build_bridge(helpers.build_hf_gpt2())
    result = baselines.integrated_gradients(
        model, PROMPT, target=" rome", n_steps=400, baseline=baseline
    )
    difference = result.details["logit_difference"][0]
    tokens = model.to_tokens(PROMPT)[0]
    x = embeddings_of(model, tokens)
    start = torch.zeros_like(x) if baseline == "zero" else expected_start(model, baseline)
    z = target_logit_fn(model, tokens, len(tokens) - 1, resolve_token(model, " rome"))
    with torch.no_grad():
        assert difference == pytest.approx(float(z(x) - z(start.expand_as(x))), rel=1e-9)
    assert abs(difference) > 1e-3
    assert abs(result.details["completeness_gap"][0]) < 1e-4 * abs(difference)


def test_integrated_gradients_rejects_an_unknown_baseline_and_a_missing_token():
    model = helpers.build_bridge()
    with pytest.raises(ValueError, match="unknown Integrated Gradients baseline 'unk'.*zero"):
        baselines.integrated_gradients(model, PROMPT, n_steps=1, baseline="unk")
    tokens = model.to_tokens(PROMPT)
    model.tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        baselines.integrated_gradients(model, tokens, n_steps=1, baseline="pad")


def test_ig_baseline_reaches_the_evaluation_settings_and_run_json():
    from tlscopes.evaluation.ablation import Settings, evaluate_passage

    assert "ig_baseline" not in Settings().record()
    settings = Settings(ig_baseline="pad", n_steps=2)
    assert settings.record()["ig_baseline"] == "pad"
    with pytest.raises(ValueError, match="baseline"):
        Settings(ig_baseline="nothing")
    model = helpers.build_bridge()
    rows = evaluate_passage(model, PROMPT, ["integrated_gradients"], settings=settings)
    alone = Settings(n_steps=2)
    zero_rows = evaluate_passage(model, PROMPT, ["integrated_gradients"], settings=alone)
    assert rows[0]["completeness_gap"] != zero_rows[0]["completeness_gap"]
