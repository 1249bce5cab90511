"""Passages: target, input and context, with and without BOS; unusable passages refused."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tlscopes.evaluation import passages

PROMPT = "the capital of france is paris"


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def test_target_is_the_last_token_and_bos_is_not_context(model):
    tokens = model.to_tokens(PROMPT)[0]
    passage = passages.prepare_passage(model, PROMPT)
    assert passage.target_id == int(tokens[-1])
    assert torch.equal(passage.tokens[0], tokens[:-1])
    assert passage.position == len(tokens) - 2
    assert passage.context.tolist() == list(range(1, len(tokens) - 1))


def test_without_bos_every_input_token_is_context(model):
    tokens = model.to_tokens(PROMPT, prepend_bos=False)[0]
    passage = passages.prepare_passage(model, PROMPT, bos=False)
    assert torch.equal(passage.tokens[0], tokens[:-1])
    assert passage.context.tolist() == list(range(len(tokens) - 1))


def test_a_passage_needs_context_and_a_target(model):
    bos = passages.bos_token_id(model)
    with pytest.raises(passages.UnusablePassage, match="at least two"):
        passages.prepare_passage(model, [bos, 5])
    assert passages.prepare_passage(model, [bos, 5], bos=False).context.tolist() == [0]
    with pytest.raises(passages.UnusablePassage, match="context"):
        passages.prepare_passage(model, list(range(1, model.cfg.n_ctx + 3)))
