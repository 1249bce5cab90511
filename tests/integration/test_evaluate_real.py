"""AOPC evaluation on the real default model (offline) with one shipped passage per task."""

from __future__ import annotations

import math

import pytest
import torch

import tlscopes as ts
from tlscopes.evaluation import datasets
from tlscopes.evaluation.ablate import ablated_log_probs, keep_masks
from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.aopc_arithmetic import ablation_count
from tlscopes.evaluation.passages import prepare_passage
from tlscopes.methods import registry as methods

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model():
    return ts.load_model()


def test_unablated_log_prob_is_the_plain_forward_pass(model):
    text = datasets.load_passages("lambada", limit=1)[0]
    passage = prepare_passage(model, text)
    keep = keep_masks(passage.tokens.shape[1], [()])
    (log_p,) = ablated_log_probs(model, passage.tokens, passage.position, passage.target_id, keep)
    with torch.no_grad():
        logits = model(passage.tokens)[0, -1]
    expected = torch.log_softmax(logits.double(), dim=-1)[passage.target_id]
    assert float(log_p) == pytest.approx(float(expected), abs=1e-4)


@pytest.mark.parametrize("task", datasets.task_names())
def test_one_passage_every_method(model, task):
    text = datasets.load_passages(task, limit=1)[0]
    settings = Settings(n_steps=2)
    rows = evaluate_passage(
        model, text, methods.method_names(), task=task, index=0, settings=settings
    )
    assert [row["method"] for row in rows] == methods.method_names()
    n_tokens = len(model.to_tokens(text)[0]) - 1
    for row in rows:
        assert row["n_tokens"] == n_tokens and row["n_context"] == n_tokens - 1  # BOS excluded
        assert math.isfinite(row["aopc"]) and row["logp"] < 0
        assert row["n_ablated_0.2"] == ablation_count(0.2, n_tokens - 1)


def test_token_ids_give_the_rows_of_the_text(model):
    # Ids that start with the tokenizer's BOS are read as the text's tokens: BOS is not context.
    text = datasets.load_passages("lambada", limit=1)[0]
    ids = model.to_tokens(text)[0]
    settings = Settings(n_steps=2)
    names = ["semantic", "random"]
    from_text = evaluate_passage(model, text, names, settings=settings)
    from_ids = evaluate_passage(model, ids, names, settings=settings)
    for by_text, by_ids in zip(from_text, from_ids, strict=True):
        assert by_ids["n_context"] == by_text["n_context"] == len(ids) - 2
        assert by_ids["aopc"] == pytest.approx(by_text["aopc"], abs=1e-6)
