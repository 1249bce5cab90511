"""The explorer's payload: trimmed rounded rows, predictions, series and sink positions."""

from __future__ import annotations

import json

import pytest
import torch

from tests.unit.results.test_attribution_file import build_attribution
from tests.unit.results.test_feature_attribution import build as build_features
from tlscopes.views.explorer_data import (
    MAX_FEATURES,
    features_payload,
    masked_positions,
    matrix_payload,
    rounded,
    series_payload,
)


def matrix_result(**overrides):
    """One prompt of 4 tokens explained at positions 1 and 3 (rows as attribution_matrix gives)."""
    tokens = ["<bos>", "The", " cat", " sat"]
    values = dict(
        scores=torch.tensor([[0.123456, 2.0, 0.0, 0.0], [1.0, 0.000123456, 3.5, 7.25]]),
        tokens=[tokens, tokens],
        token_ids=torch.tensor([[2, 10, 11, 12], [2, 10, 11, 12]]),
        positions=torch.tensor([1, 3]),
        top_token_ids=torch.tensor([[5, 6], [7, 8]]),
        top_tokens=[[" on", "<b>"], [" ran", " sat"]],
        top_probs=torch.tensor([[0.55555, 0.25], [0.75, 0.125]]),
        target_ids=torch.tensor([5, 7]),
        target_probs=torch.tensor([0.5, 0.75]),
        target_tokens=[" on", " ran"],
        details={"eigenvalues": [[2.5], [1.5]]},
        info={"bos_token_id": 2},
    )
    values.update(overrides)
    return build_attribution(**values)


def test_rounded_keeps_three_significant_digits_and_drops_non_finite():
    assert rounded(0.123456) == 0.123
    assert rounded(123456.0) == 123000.0
    assert rounded(0.000123456) == 0.000123
    assert rounded(float("nan")) is None and rounded(float("inf")) is None


def test_rows_stop_at_their_position_and_are_rounded():
    payload = matrix_payload([matrix_result()])
    assert payload["tokens"] == ["<bos>", "The", " cat", " sat"]
    assert payload["positions"] == [1, 3]
    (scope,) = payload["scopes"]
    assert scope["name"] == "semantic"
    assert scope["rows"] == [[0.123, 2.0], [1.0, 0.000123, 3.5, 7.25]]
    assert scope["targets"] == [" on", " ran"]
    assert scope["details"] == [{"eigenvalues": [2.5]}, {"eigenvalues": [1.5]}]
    assert payload["predictions"][0] == [[" on", 0.556], ["<b>", 0.25]]
    assert payload["masked"] == [0]
    assert payload["series"] is None and payload["layers"] == []
    json.dumps(payload, allow_nan=False)


def test_several_scopes_must_explain_the_same_prompt_and_positions():
    other = matrix_result(method="fisher", positions=torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="other positions"):
        matrix_payload([matrix_result(), other])
    same = matrix_result(method="fisher", target_ids=None, target_probs=None, target_tokens=None)
    payload = matrix_payload([matrix_result(), same])
    assert [s["name"] for s in payload["scopes"]] == ["semantic", "fisher"]
    assert payload["scopes"][1]["targets"] is None
    with pytest.raises(ValueError, match="at least one"):
        matrix_payload([])


def test_a_batch_of_different_prompts_is_refused():
    batch = build_attribution()
    with pytest.raises(ValueError, match="several prompts"):
        matrix_payload([batch])


def test_a_series_payload_needs_tokens_that_spell_the_numbers():
    digits = ["<|endoftext|>", "2", "9", ",", "3", "0", ",", "4", "5", ","]
    payload = series_payload("29,30,45,", digits)
    assert payload == {"values": [29.0, 30.0, 45.0], "groups": [[1, 2], [4, 5], [7, 8]]}
    # Tokens that do not spell the numbers: no time-series view.
    assert series_payload("29,30,45,", ["<bos>", "<unk>", ","]) is None
    assert series_payload("the cat", ["the", " cat"]) is None


def test_the_bos_positions_the_provenance_records_are_masked_by_default():
    assert masked_positions([2, 7, 2], {"bos_token_id": 2}) == [0, 2]
    assert masked_positions([7, 8], {"bos_token_id": 2}) == []
    # A result without the record (an old file, a hand-made result) masks nothing.
    assert masked_positions([2, 7], {}) == []
    assert masked_positions([2, 7], {"bos_token_id": None}) == []
    unrecorded = matrix_payload([matrix_result(info={})])
    assert unrecorded["masked"] == []


def test_the_features_section_holds_each_feature_and_its_token_map():
    result = build_features(
        scores=torch.tensor([[9.0, 1.23456, 3.0, 2.0, 0.0], [8.0, 4.0, 0.5, 1.0, 0.0]])
    )
    section = features_payload(result)
    assert section["hook"] == "blocks.3.hook_resid_post" and section["position"] == 3
    assert section["sae"]["source"] == "sparsify:/x" and section["sae"]["sha256"] == "ab" * 32
    assert section["total"] == 2
    # Rows stop at the explained position and are rounded like the scopes' rows; the BOS
    # score stays in the row and BOS is masked, as the scope views mask it.
    assert [item["id"] for item in section["items"]] == result.features.tolist() == [17, 3]
    assert [item["row"] for item in section["items"]] == [
        [rounded(v) for v in result.scores[row, :4].tolist()] for row in range(2)
    ]
    assert section["items"][0]["row"] == [9.0, 1.23, 3.0, 2.0]
    assert section["masked"] == result.sink_positions == [0]
    assert [item["activation"] for item in section["items"]] == result.activations.tolist()
    assert [item["pre_activation"] for item in section["items"]] == [2.5, -0.5]
    assert [item["fires"] for item in section["items"]] == result.fires.tolist() == [True, False]
    assert [item["label"] for item in section["items"]] == [None, None]
    json.dumps(section, allow_nan=False)


def test_the_features_section_keeps_bos_where_the_result_does_and_shows_labels():
    assert features_payload(build_features(include_bos=True))["masked"] == []
    # A sink after the explained position is no sink of the views.
    assert features_payload(build_features(sink_positions=[0, 4]))["masked"] == [0]
    labels = {3: "</script><b>x", 99: "not in the result"}
    items = features_payload(build_features(), labels=labels)["items"]
    assert [item["label"] for item in items] == [None, "</script><b>x"]


def test_the_features_section_lists_the_highest_activations_up_to_the_cap():
    count = MAX_FEATURES + 6
    activations = torch.rand(count, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    activations[::5] = 0.0  # silent features
    result = build_features(
        scores=torch.rand(count, 5, generator=torch.Generator().manual_seed(1)),
        features=torch.arange(100, 100 + count),
        pre_activations=activations.clone(),
        activations=activations,
    )
    section = features_payload(result)
    assert section["total"] == count and len(section["items"]) == MAX_FEATURES == 64
    order = sorted(range(count), key=lambda row: -float(activations[row]))[:MAX_FEATURES]
    assert [item["id"] for item in section["items"]] == [100 + row for row in order]
    assert all(not item["fires"] for item in section["items"] if item["activation"] == 0)
    assert [item["activation"] for item in section["items"]] == sorted(
        (item["activation"] for item in section["items"]), reverse=True
    )
    two = features_payload(result, limit=2)["items"]
    assert [item["id"] for item in two] == [100 + row for row in order[:2]]
    with pytest.raises(ValueError, match="positive integer"):
        features_payload(result, limit=0)


def test_a_payload_holds_the_features_section_of_its_prompt():
    assert matrix_payload([matrix_result()])["features"] is None
    section = features_payload(build_features(tokens=["<bos>", "The", " cat", " sat", "x"]))
    assert matrix_payload([matrix_result()], features=section)["features"] == section
    outside = dict(section, position=4)
    with pytest.raises(ValueError, match="outside the prompt's 4 tokens"):
        matrix_payload([matrix_result()], features=outside)
