"""Measures beside AOPC: filler ablation, ERASER comprehensiveness and sufficiency, and
leave-one-out agreement, each against a hand computation or an explicit forward pass."""

from __future__ import annotations

import json
import math

import pytest
import torch

import tlscopes as ts
from tests import helpers, models
from tests.reference import embeddings_of, final_state_fn
from tlscopes.evaluation import ablation, faithfulness, statistics
from tlscopes.evaluation import runner as evaluate
from tlscopes.evaluation.ablate import ablated_log_softmax, keep_masks
from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.aopc_arithmetic import top_positions
from tlscopes.evaluation.passages import prepare_passage
from tlscopes.evaluation.run_directory import PER_PASSAGE, RUN_CONFIG, read_finished

PROMPT = "the capital of france is paris and the capital of italy is rome"


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def log_softmax_of(model, passage):
    """log p(x) at the explained position, as a function of the token embeddings."""
    final_state = final_state_fn(model, passage.tokens[0], passage.position)

    def fn(x):
        with torch.no_grad():
            return torch.log_softmax((final_state(x) @ model.W_U + model.b_U).double(), dim=-1)

    return fn


def test_comprehensiveness_and_sufficiency_by_hand():
    # p = 0.5; removing the top-k leaves 0.25 and 0.1: mean(0.25, 0.4) = 0.325
    value = faithfulness.comprehensiveness(math.log(0.5), [math.log(0.25), math.log(0.1)])
    assert value == pytest.approx(0.325)
    assert faithfulness.sufficiency(math.log(0.5), [math.log(0.5), math.log(0.6)]) == (
        pytest.approx(-0.05)
    )
    assert faithfulness.keep_only(torch.tensor([1, 2, 3, 4]), (2, 4)) == (1, 3)


def test_kl_divergence_by_hand():
    reference = torch.tensor([0.5, 0.5]).log()
    ablated = torch.tensor([[0.25, 0.75], [0.5, 0.5]]).log()
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    kls = faithfulness.kl_divergences(reference, ablated)
    assert kls[0] == pytest.approx(expected) and kls[1] == 0


def test_filler_token_is_never_bos_or_eos(model):
    bos, eos = model.tokenizer.bos_token_id, model.tokenizer.eos_token_id
    chosen = faithfulness.filler_token_id(model)
    assert chosen not in (bos, eos)
    assert faithfulness.filler_token_id(model, 7) == 7
    for special in {bos, eos} - {None}:
        with pytest.raises(ValueError, match="BOS or EOS"):
            faithfulness.filler_token_id(model, special)


def test_a_filler_outside_the_vocabulary_or_as_text_without_a_tokenizer_is_refused(model, tmp_path):
    vocabulary = model.cfg.d_vocab
    for token in (vocabulary, -1):
        with pytest.raises(ValueError, match=f"id {token} .*vocabulary of {vocabulary} tokens"):
            faithfulness.filler_token_id(model, token)
    with pytest.raises(TypeError, match="int id or one token of text"):
        faithfulness.filler_token_id(model, 2.0)
    # An id given in the settings is checked before the run computes anything.
    settings = ablation.Settings(ablation="filler", filler_token_id=vocabulary + 5)
    with pytest.raises(ValueError, match=f"id {vocabulary + 5} "):
        evaluate.run_evaluation(
            model, {"lambada": [PROMPT]}, ["semantic"], tmp_path, settings=settings
        )
    assert not (tmp_path / "per_passage.csv").exists()
    untokenized = models.build_bridge_without_tokenizer()
    with pytest.raises(ValueError, match="no tokenizer"):
        faithfulness.filler_token_id(untokenized, "x")
    assert faithfulness.filler_token_id(untokenized, 3) == 3


def test_filler_ablation_equals_a_forward_with_the_filler_embedding(model):
    passage = prepare_passage(model, PROMPT)
    filler = faithfulness.filler_embedding(model, 7)
    assert torch.equal(filler, embeddings_of(model, torch.tensor([7]))[0])
    sets = [(), (2,), (1, 4, 5)]
    keep = keep_masks(passage.tokens.shape[1], sets)
    table = ablated_log_softmax(model, passage.tokens, passage.position, keep, filler)
    x = embeddings_of(model, passage.tokens[0])
    for row, chosen in enumerate(sets):
        edited = x.clone()
        edited[list(chosen)] = filler
        expected = log_softmax_of(model, passage)(edited)
        torch.testing.assert_close(table[row], expected, rtol=1e-9, atol=1e-10)


def test_passage_rows_hold_eraser_and_leave_one_out_measures(model):
    settings = Settings(n_steps=2, eraser=True, loo_limit=1)
    rows = evaluate_passage(model, PROMPT, ["fisher", "random"], settings=settings)
    passage = prepare_passage(model, PROMPT)
    x = embeddings_of(model, passage.tokens[0])
    log_softmax = log_softmax_of(model, passage)
    reference = log_softmax(x)
    fisher = rows[0]
    p = math.exp(fisher["logp"])
    deltas = [fisher[f"delta_{k}"] for k in ("0.05", "0.1", "0.2")]
    # comprehensiveness from AOPC's own removals: p - p exp(Delta_k), averaged
    assert fisher["comprehensiveness"] == pytest.approx(
        sum(p - p * math.exp(d) for d in deltas) / 3, abs=1e-12
    )
    scores = ts.attribute(model, passage.tokens, ts.FisherScope()).scores[0]
    kept_probs = []
    for k in ("0.05", "0.1", "0.2"):
        top = top_positions(scores, passage.context, fisher[f"n_ablated_{k}"])
        edited = x.clone()
        edited[[q for q in passage.context.tolist() if q not in top]] = 0.0
        kept_probs.append(float(log_softmax(edited)[passage.target_id].exp()))
    assert fisher["sufficiency"] == pytest.approx(sum(p - q for q in kept_probs) / 3, abs=1e-9)
    kls = []
    for position in passage.context.tolist():
        edited = x.clone()
        edited[position] = 0.0
        ablated = log_softmax(edited)
        kls.append(float((reference.exp() * (reference - ablated)).sum()))
    context_scores = scores[passage.context].double().numpy()
    assert fisher["loo_spearman"] == pytest.approx(statistics.spearman(context_scores, kls))
    assert fisher["loo_kendall"] == pytest.approx(statistics.kendall_tau_b(context_scores, kls))
    later = evaluate_passage(model, PROMPT, ["fisher"], index=1, settings=settings)
    assert later[0]["loo_spearman"] == "" and later[0]["loo_kendall"] == ""


def test_run_json_names_the_measures_and_the_filler(model, tmp_path):
    settings = Settings(n_steps=2, ablation="filler", eraser=True, loo_limit=2)
    run = evaluate.run_evaluation(
        model, {"lambada": [PROMPT]}, ["semantic"], tmp_path, settings=settings, progress=False
    )
    recorded = json.loads((tmp_path / RUN_CONFIG).read_text())
    token = faithfulness.filler_token_id(model)
    assert recorded["ablation"] == "filler" and recorded["filler_token_id"] == token
    assert recorded["filler_token"] == ts.tokens.token_strings(model, [token])[0]
    assert recorded["eraser"] is True and recorded["loo_limit"] == 2
    columns = ["comprehensiveness", "sufficiency", "loo_spearman", "loo_kendall"]
    assert list(run.per_passage.columns[-4:]) == columns
    assert read_finished(tmp_path / PER_PASSAGE).shape == run.per_passage.shape
    with pytest.raises(ValueError, match="ablation"):
        Settings(ablation="mean")
