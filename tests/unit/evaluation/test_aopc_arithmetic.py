"""AOPC arithmetic (paper eq. 9), and AOPC from any scores against the evaluation's own rows."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tlscopes.evaluation import aopc_from_scores, evaluate_passage, prepare_passage
from tlscopes.evaluation.ablation import Settings
from tlscopes.evaluation.aopc_arithmetic import (
    FRACTIONS,
    ablation_count,
    aopc,
    fraction_label,
    top_positions,
    trapezoid,
)

PROMPT = "the capital of france is paris and the capital of italy is rome"


def test_eq_9_as_printed_by_hand():
    # 0.05 * (-1 + -2) / 2 + 0.10 * (-2 + -4) / 2 = -0.075 - 0.3
    assert aopc(FRACTIONS, [-1.0, -2.0, -4.0]) == pytest.approx(-0.375)
    assert trapezoid([0.0, 1.0], [2.0, 4.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="at least two"):
        aopc([0.1], [-1.0])


def test_counts_round_half_up_and_stay_in_range():
    assert ablation_count(0.05, 10) == 1  # 0.5 rounds up
    assert ablation_count(0.05, 9) == 1  # at least one
    assert ablation_count(0.2, 12) == 2  # 2.4 rounds down
    assert ablation_count(1.0, 3) == 3
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ablation_count(0.0, 10)


def test_top_positions_break_ties_towards_the_earlier_position():
    scores = torch.tensor([0.0, 2.0, 1.0, 2.0, 5.0])
    context = torch.tensor([1, 2, 3, 4])
    assert top_positions(scores, context, 2) == (1, 4)  # 1 and 3 tie; 1 comes first
    assert top_positions(scores, context, 3) == (1, 3, 4)
    assert fraction_label(0.10) == "0.1"


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


@pytest.mark.parametrize("settings", [Settings(), Settings(protocol="authors")], ids=str)
def test_aopc_from_scores_reproduces_the_rows_of_a_registered_method(model, settings):
    rows = evaluate_passage(model, PROMPT, ["semantic", "temperature"], settings=settings)
    passage = prepare_passage(model, PROMPT, bos=settings.protocol == "paper")
    from tlscopes.methods import attribute_methods

    results = attribute_methods(
        model,
        passage.tokens,
        ["semantic", "temperature"],
        target=passage.target_id,
        method_options={},
    )
    measured = aopc_from_scores(
        model, PROMPT, {name: r.scores[0] for name, r in results.items()}, settings=settings
    )
    for row in rows:
        assert measured[row["method"]] == pytest.approx(row["aopc"], rel=1e-9, abs=1e-12)


def test_aopc_from_scores_refuses_scores_of_another_length(model):
    n_input = prepare_passage(model, PROMPT).tokens.shape[1]
    with pytest.raises(ValueError, match=f"{n_input} positions"):
        aopc_from_scores(model, PROMPT, {"mine": torch.ones(n_input + 1)})
