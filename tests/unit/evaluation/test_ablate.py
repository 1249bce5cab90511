"""Ablation passes: outcomes measured on the top-1 or a given token, chunked as one batch."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tlscopes.evaluation import ablate
from tlscopes.evaluation.passages import prepare_passage

PROMPT = "the capital of france is paris and the capital of italy is rome"


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def test_outcomes_in_chunks_equal_one_batch(model):
    passage = prepare_passage(model, PROMPT)
    sets = [(), (1,), (2, 3), (4,), (1, 5, 6)]
    keep = ablate.keep_masks(passage.tokens.shape[1], sets)
    table = ablate.ablated_log_softmax(model, passage.tokens, passage.position, keep)
    top1 = int(table[0].argmax())
    for chunk in (1, 2, 64):
        measured, log_probs, kls = ablate.ablation_outcomes(model, passage, sets, None, chunk=chunk)
        assert measured == top1
        torch.testing.assert_close(log_probs, table[:, top1], rtol=1e-9, atol=1e-12)
        expected = (table[0].exp() * (table[0] - table)).sum(dim=-1)
        torch.testing.assert_close(kls, expected, rtol=1e-9, atol=1e-12)
        assert kls[0] == 0
    measured, log_probs, _ = ablate.ablation_outcomes(model, passage, sets, passage.target_id)
    assert measured == passage.target_id
    torch.testing.assert_close(log_probs, table[:, passage.target_id], rtol=1e-9, atol=1e-12)


def test_the_first_set_must_be_the_unablated_input(model):
    passage = prepare_passage(model, PROMPT)
    with pytest.raises(ValueError, match="empty set"):
        ablate.ablation_outcomes(model, passage, [(1,), ()], None)
