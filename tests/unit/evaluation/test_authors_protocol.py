"""The authors' protocol: each of its five differences from the paper's text, checked by hand
against explicit computations on a tiny float64 model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch.func import jacrev

import tlscopes as ts
from tests import helpers
from tests.reference import embeddings_of, final_state_fn
from tlscopes.evaluation import runner as evaluate
from tlscopes.evaluation import summaries
from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.aopc_arithmetic import ablation_count, top_positions
from tlscopes.evaluation.authors_protocol import (
    AUTHORS_ALPHAS,
    authors_ablation_count,
    authors_candidates,
    method_options,
)
from tlscopes.evaluation.passages import prepare_passage
from tlscopes.evaluation.run_directory import RUN_CONFIG
from tlscopes.methods import baselines
from tlscopes.methods.registry import attribute_methods
from tlscopes.tokens import bos_token_id

PROMPT = "the capital of france is paris and the capital of italy is rome"
AUTHORS = Settings(protocol="authors")


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def log_prob_fn(model, tokens, target):
    """log p(target)(x) at the last input position, as a function of the token embeddings."""
    final_state = final_state_fn(model, tokens, len(tokens) - 1)
    W_U, b_U = model.W_U.detach(), model.b_U.detach()
    return lambda x: torch.log_softmax(final_state(x) @ W_U + b_U, dim=-1)[target]


def input_tokens(model):
    """The authors' input: the passage without BOS and without its last token."""
    tokens = model.to_tokens(PROMPT, prepend_bos=False)[0]
    return tokens[:-1], int(tokens[-1])


def test_delta_is_taken_on_the_top1_prediction(model):
    tokens, target = input_tokens(model)
    x = embeddings_of(model, tokens)
    final_state = final_state_fn(model, tokens, len(tokens) - 1)

    def log_softmax(embeddings):
        with torch.no_grad():
            logits = final_state(embeddings) @ model.W_U + model.b_U
        return torch.log_softmax(logits.double(), dim=-1)

    top1 = int(log_softmax(x).argmax())
    assert top1 != target  # the case where the two protocols measure different tokens
    rows = evaluate_passage(model, PROMPT, ["fisher"], settings=AUTHORS)
    row = rows[0]
    assert row["prediction_id"] == top1 and row["target_id"] == target
    assert row["logp"] == pytest.approx(float(log_softmax(x)[top1]), abs=1e-12)
    scores = ts.attribute(model, tokens, ts.FisherScope()).scores[0]
    candidates, ranked = authors_candidates(scores, torch.arange(len(tokens)), False, 0)
    for k in ("0.05", "0.1", "0.2"):
        count = row[f"n_ablated_{k}"]
        chosen = [p for p in top_positions(ranked, candidates, count) if p < len(tokens)]
        edited = x.clone()
        edited[chosen] = 0.0
        expected = log_softmax(edited)[top1] - log_softmax(x)[top1]
        assert row[f"delta_{k}"] == pytest.approx(float(expected), abs=1e-9)


def test_no_bos_the_first_token_is_context_and_can_be_ablated(model):
    paper = prepare_passage(model, PROMPT)
    authors = prepare_passage(model, PROMPT, bos=False)
    tokens, target = input_tokens(model)
    assert torch.equal(authors.tokens[0], tokens) and authors.target_id == target
    assert int(paper.tokens[0, 0]) == bos_token_id(model)  # the paper keeps BOS ...
    assert paper.context[0] == 1  # ... and never ablates it
    assert authors.context.tolist() == list(range(len(tokens)))
    scores = torch.arange(len(tokens), 0, -1, dtype=torch.float64)  # first token highest
    assert top_positions(scores, authors.context, 1) == (0,)
    # Ids starting with the BOS id: under the authors' protocol it is an ordinary token.
    ids = [bos_token_id(model), *tokens.tolist(), target]
    assert prepare_passage(model, ids, bos=False).context[0] == 0
    assert prepare_passage(model, ids).context[0] == 1


@pytest.mark.parametrize(
    "fraction, n_tokens, authors, paper",
    # authors: floor(k n_tokens), n_tokens counting the target; paper: round(k C) half up,
    # C = n_tokens - 1 context tokens here.
    [(0.2, 14, 2, 3), (0.05, 19, 1, 1), (0.1, 20, 2, 2), (0.2, 9, 1, 2), (0.05, 60, 3, 3)],
)
def test_count_is_floor_of_k_times_all_tokens(fraction, n_tokens, authors, paper):
    assert authors_ablation_count(fraction, n_tokens) == authors
    assert ablation_count(fraction, n_tokens - 1) == paper


def test_the_target_is_a_candidate_that_gradients_rank_last_and_random_may_draw():
    scores = torch.tensor([0.5, 0.0, 2.0])
    candidates, ranked = authors_candidates(scores, torch.arange(3), False, 7)
    assert candidates.tolist() == [0, 1, 2, 3] and ranked.tolist() == [0.5, 0.0, 2.0, 0.0]
    assert top_positions(ranked, candidates, 3) == (0, 1, 2)  # tie: earlier position
    draws = [authors_candidates(scores, torch.arange(3), True, seed)[1] for seed in range(40)]
    assert all(len(d) == 4 for d in draws)
    assert torch.equal(draws[3], authors_candidates(scores, torch.arange(3), True, 3)[1])
    assert any(int(d.argmax()) == 3 for d in draws)  # the target slot can come first


def test_input_x_gradient_differentiates_the_log_probability(model):
    tokens, target = input_tokens(model)
    x = embeddings_of(model, tokens)
    gradient = jacrev(log_prob_fn(model, tokens, target))(x)
    result = baselines.input_x_gradient(model, tokens, target=target, objective="log_prob")
    expected = (x * gradient).norm(dim=-1)
    torch.testing.assert_close(result.scores[0].double(), expected, rtol=1e-6, atol=1e-12)
    top1 = baselines.input_x_gradient(model, tokens, objective="log_prob")  # no target: top-1
    assert int(top1.target_ids[0]) == int(top1.top_token_ids[0, 0]) != target
    logit_version = baselines.input_x_gradient(model, tokens, target=target).scores[0]
    assert not torch.allclose(logit_version.double(), expected, rtol=1e-3)


def test_integrated_gradients_average_alpha_scaled_gradients_at_02_to_1(model):
    tokens, target = input_tokens(model)
    x = embeddings_of(model, tokens)
    log_prob = log_prob_fn(model, tokens, target)
    # The authors differentiate with respect to the embedding before it is scaled by alpha.
    summed = sum(jacrev(lambda e, a=a: log_prob(a * e))(x) for a in (0.2, 0.4, 0.6, 0.8, 1.0))
    expected = (x * summed / 5).norm(dim=-1)
    options = method_options("authors")["integrated_gradients"]
    result = baselines.integrated_gradients(model, tokens, target=target, **options)
    assert AUTHORS_ALPHAS == (0.2, 0.4, 0.6, 0.8, 1.0)
    torch.testing.assert_close(result.scores[0].double(), expected, rtol=1e-6, atol=1e-12)
    assert result.details["alphas"] == list(AUTHORS_ALPHAS)
    assert "completeness_gap" not in result.details  # not a path integral's estimate


def test_each_protocol_is_options_of_the_same_methods(model):
    assert method_options("paper") == {}
    assert method_options("authors")["input_x_gradient"] == {"objective": "log_prob"}
    with pytest.raises(ValueError, match="unknown protocol"):
        method_options("author")
    tokens, target = input_tokens(model)
    with pytest.raises(ValueError, match="cannot differentiate 'log_prob'"):
        attribute_methods(
            model, tokens, ["saliency"], method_options={"saliency": {"objective": "log_prob"}}
        )
    with pytest.raises(ValueError, match="unknown objective"):
        baselines.input_x_gradient(model, tokens, objective="probability")
    # Run together, the log-probability variant leaves the shared pass and keeps its scores.
    together = attribute_methods(
        model,
        tokens,
        ["semantic", "input_x_gradient"],
        target=target,
        method_options={"input_x_gradient": {"objective": "log_prob"}},
    )
    alone = baselines.input_x_gradient(model, tokens, target=target, objective="log_prob")
    torch.testing.assert_close(together["input_x_gradient"].scores, alone.scores)
    assert together["input_x_gradient"].details["differentiates"] == "log_prob"


def test_rows_use_the_authors_variants(model):
    rows = {
        r["method"]: r
        for r in evaluate_passage(
            model, PROMPT, ["input_x_gradient", "integrated_gradients", "random"], settings=AUTHORS
        )
    }
    assert rows["integrated_gradients"]["n_steps"] == 5
    assert rows["integrated_gradients"]["completeness_gap"] == ""
    n_tokens = len(model.to_tokens(PROMPT, prepend_bos=False)[0])
    assert rows["random"]["n_tokens"] == rows["random"]["n_context"] == n_tokens - 1
    assert rows["random"]["n_ablated_0.2"] == authors_ablation_count(0.2, n_tokens)


def test_protocol_is_recorded_and_a_resume_must_match(model, tmp_path):
    texts = {"lambada": [PROMPT]}
    run = evaluate.run_evaluation(
        model, texts, ["semantic"], tmp_path, settings=AUTHORS, progress=False
    )
    recorded = json.loads((tmp_path / RUN_CONFIG).read_text())
    assert recorded["protocol"] == "authors" and recorded["ig_alphas"] == list(AUTHORS_ALPHAS)
    assert "prediction_id" in run.per_passage.columns
    assert (tmp_path / "aopc_target_aligned.csv").exists()
    with pytest.raises(ValueError, match="different settings"):
        evaluate.run_evaluation(model, texts, ["semantic"], tmp_path, progress=False)
    assert "protocol" not in Settings().record()  # older paper runs still resume
    with pytest.raises(ValueError, match="protocol"):
        Settings(protocol="author")


def test_target_aligned_keeps_passages_whose_top1_is_the_target():
    rows = [
        {"task": "t", "passage": 0, "method": "m", "target_id": 5, "prediction_id": 5},
        {"task": "t", "passage": 1, "method": "m", "target_id": 5, "prediction_id": 6},
    ]
    aligned = summaries.target_aligned(pd.DataFrame(rows))
    assert aligned["passage"].tolist() == [0]
    with pytest.raises(ValueError, match="prediction_id"):
        summaries.target_aligned(pd.DataFrame(rows).drop(columns="prediction_id"))
