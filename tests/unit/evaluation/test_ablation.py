"""The AOPC metric: eq. 9 by hand, ablation counts, BOS, zeroed embeddings, passage rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import helpers
from tests.models import VARIANTS
from tests.reference import embeddings_of, final_state_fn
from tlscopes.evaluation.ablate import ablated_log_probs, keep_masks, zero_embeddings
from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.aopc_arithmetic import ablation_count, aopc, top_positions
from tlscopes.evaluation.passages import has_bos, prepare_passage
from tlscopes.methods import registry as methods

PROMPT = "the capital of france is paris and the capital of italy is rome"
REPO = Path(__file__).resolve().parents[3]
ALL = methods.method_names()
OPTIONS = {"integrated_gradients": {"n_steps": 3}}


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def test_aopc_on_a_hand_checked_case():
    # (0.10 - 0.05)(-1 - 2)/2 + (0.20 - 0.10)(-2 - 4)/2 = -0.075 - 0.3
    assert aopc((0.05, 0.10, 0.20), (-1.0, -2.0, -4.0)) == pytest.approx(-0.375)
    assert aopc((0.05, 0.10, 0.20), (0.0, 0.0, 0.0)) == 0.0
    with pytest.raises(ValueError, match="two"):
        aopc((0.1,), (-1.0,))


@pytest.mark.parametrize(
    "fraction, n_context, count",
    [(0.05, 10, 1), (0.05, 9, 1), (0.05, 30, 2), (0.10, 84, 8), (0.10, 85, 9), (0.2, 1, 1)],
)
def test_fraction_rounds_half_up_to_at_least_one_token(fraction, n_context, count):
    assert ablation_count(fraction, n_context) == count


def test_bos_is_never_context_and_never_ablated(model):
    passage = prepare_passage(model, PROMPT)
    tokens = model.to_tokens(PROMPT)
    assert has_bos(model, tokens)
    assert passage.target_id == int(tokens[0, -1])
    assert passage.tokens.shape[1] == tokens.shape[1] - 1
    assert passage.context.tolist() == list(range(1, passage.tokens.shape[1]))
    scores = torch.arange(passage.tokens.shape[1], 0, -1, dtype=torch.float64)  # BOS highest
    assert top_positions(scores, passage.context, 2) == (1, 2)
    ties = torch.ones(passage.tokens.shape[1])
    assert top_positions(ties, passage.context, 3) == (1, 2, 3)


# --- ablation --------------------------------------------------------------------------------


def test_zero_embeddings_zeroes_exactly_the_chosen_positions():
    embeddings = torch.randn(3, 6, 4, dtype=torch.float64) + 5.0
    keep = keep_masks(6, [(), (2,), (0, 4, 5)])
    ablated = zero_embeddings(embeddings, keep)
    for row, chosen in enumerate([(), (2,), (0, 4, 5)]):
        for position in range(6):
            expected = torch.zeros(4) if position in chosen else embeddings[row, position]
            assert torch.equal(ablated[row, position], expected.to(ablated.dtype))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ablated_log_probs_equal_a_forward_with_those_embeddings_zeroed(name):
    model = VARIANTS[name]()
    passage = prepare_passage(model, PROMPT)
    sets = [(), (3,), (1, 5, 6), (2, 4)]
    keep = keep_masks(passage.tokens.shape[1], sets)
    batched = ablated_log_probs(model, passage.tokens, passage.position, passage.target_id, keep)
    x = embeddings_of(model, passage.tokens[0])
    final_state = final_state_fn(model, passage.tokens[0], passage.position)
    for row, chosen in enumerate(sets):
        edited = x.clone()
        edited[list(chosen)] = 0.0  # positional embeddings are left to the model
        with torch.no_grad():
            logits = final_state(edited) @ model.W_U + model.b_U
        expected = torch.log_softmax(logits.double(), dim=-1)[passage.target_id]
        torch.testing.assert_close(batched[row], expected, rtol=1e-9, atol=1e-12)


def test_evaluate_passage_rows(model):
    settings = Settings(n_steps=2)
    rows = evaluate_passage(model, PROMPT, ALL, task="lambada", index=3, settings=settings)
    assert [row["method"] for row in rows] == ALL
    n_context = len(model.to_tokens(PROMPT)[0]) - 2
    for row in rows:
        assert row["n_context"] == n_context and row["passage"] == 3
        assert [row[f"n_ablated_{k}"] for k in ("0.05", "0.1", "0.2")] == [1, 1, 2]
        deltas = [row[f"delta_{k}"] for k in ("0.05", "0.1", "0.2")]
        assert row["aopc"] == pytest.approx(aopc(settings.fractions, deltas))
    by_method = {row["method"]: row for row in rows}
    assert by_method["integrated_gradients"]["n_steps"] == 2
    assert by_method["saliency"]["aopc"] == by_method["semantic"]["aopc"]
    assert by_method["fisher"]["n_steps"] == ""
