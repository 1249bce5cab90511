"""The app's logic: requests in, explorer payloads out; messages for bad input; the view
helpers that turn a payload into what the page shows."""

from __future__ import annotations

import json

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.unit.sae import sae_files
from tlscopes.app import explorer
from tlscopes.app.explorer_app import (
    MAX_EXPLORE_TOKENS,
    MAX_TOKENS,
    ExplorerApp,
    RequestError,
    parse_features,
    parse_position,
    parse_rank,
    prediction_confidences,
    series_influence,
    token_highlights,
)
from tlscopes.testing.toy import toy_text
from tlscopes.views.explorer_data import rounded

TEXT = "the capital of france is"


@pytest.fixture(scope="module")
def app(bridge):
    return ExplorerApp({"tiny": lambda: bridge}, max_tokens=12, max_explore_tokens=8)


def test_one_scope_at_one_position_equals_attribute(app, bridge):
    answer = app.attribute({"text": TEXT, "scope": "semantic", "target": " paris", "position": "3"})
    expected = ts.attribute(bridge, TEXT, ts.SemanticScope(" paris"), position=3)
    payload = answer["payload"]
    assert payload["positions"] == [3] and payload["tokens"] == expected.tokens[0]
    assert payload["scopes"][0]["rows"][0] == [rounded(v) for v in expected.scores[0, :4].tolist()]
    assert payload["scopes"][0]["targets"] == expected.target_tokens == ["paris"]
    assert payload["predictions"][0][0][0] == expected.top_tokens[0][0]
    # The download is the Attribution file itself.
    saved = json.loads(answer["file"])
    assert saved["tokens"] == expected.tokens and saved["method"] == "semantic"
    assert answer["html"].startswith("<!DOCTYPE html>") and "tlx-data" in answer["html"]


def test_every_position_with_the_three_scopes(app):
    payload = app.explore({"text": TEXT})["payload"]
    assert [s["name"] for s in payload["scopes"]] == ["fisher", "temperature", "semantic"]
    assert payload["positions"] == list(range(len(payload["tokens"])))
    assert len(payload["layers"]) == 3


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"text": "  "}, "The text is empty"),
        ({"text": "the cat " * 10}, "this view explains at most 12"),
        ({"text": TEXT, "scope": "semantic", "target": "new york"}, "is 2 tokens"),
        ({"text": TEXT, "scope": "fisher", "target": " paris"}, "A target is for the semantic"),
        ({"text": TEXT, "scope": "saliency"}, "unknown scope 'saliency'"),
        ({"text": TEXT, "model": "gpt-9"}, "unknown model 'gpt-9'"),
        ({"text": TEXT, "position": "last"}, "must be an integer"),
        ({"text": TEXT, "position": "40"}, "out of range"),
        ({"text": TEXT, "scope": "temperature", "rank": 2}, "A rank is for the Fisher"),
        ({"text": TEXT, "scope": "fisher", "rank": "0"}, "rank must be a positive integer"),
        ({"text": TEXT, "scope": "fisher", "rank": 2.5}, "rank must be a positive integer"),
        ({"text": TEXT, "scope": "fisher", "rank": 999}, "exceeds d_model"),
    ],
)
def test_bad_requests_are_messages(app, request_, message):
    with pytest.raises((RequestError, ValueError, IndexError), match=message):
        app.attribute(request_)


def test_explore_has_its_own_length_limit(app):
    with pytest.raises(RequestError, match="at most 8"):
        app.explore({"text": "the cat sat on the mat and the dog"})


def test_an_app_for_long_prompts_explains_one_position_of_8192_tokens():
    model = helpers.build_bridge(max_position_embeddings=8192, dtype=torch.float32)
    text = toy_text(8192)
    default = ExplorerApp({"tiny": lambda: model})
    assert (default.max_tokens, default.max_explore_tokens) == (MAX_TOKENS, MAX_EXPLORE_TOKENS)
    assert (MAX_TOKENS, MAX_EXPLORE_TOKENS) == (512, 256)
    with pytest.raises(
        RequestError, match="The text is 8192 tokens; this view explains at most 512"
    ):
        default.attribute({"text": text})
    app = ExplorerApp({"tiny": lambda: model}, max_tokens=8192)
    answer = app.attribute({"text": text, "scope": "temperature", "position": "-1"})
    payload = answer["payload"]
    expected = ts.attribute(model, text, ts.TemperatureScope())
    assert len(payload["tokens"]) == 8192 and payload["positions"] == [8191]
    assert payload["scopes"][0]["rows"][0] == [rounded(v) for v in expected.scores[0].tolist()]
    assert json.loads(answer["file"])["tokens"][0] == payload["tokens"]
    # Every position keeps its own limit.
    with pytest.raises(RequestError, match="this view explains at most 256"):
        app.explore({"text": text})


def test_limits_are_positive_and_every_position_never_exceeds_one(bridge):
    assert ExplorerApp({"tiny": lambda: bridge}, max_tokens=100).max_explore_tokens == 100
    for bad in ({"max_tokens": 0}, {"max_explore_tokens": True}, {"max_tokens": 8192.0}):
        with pytest.raises(ValueError, match="a positive integer"):
            ExplorerApp({"tiny": lambda: bridge}, **bad)


def test_explore_names_every_position_so_the_apps_limit_governs(app, monkeypatch):
    monkeypatch.setattr(explorer, "MAX_EVERY_POSITION_TOKENS", 2)  # explore's own default limit
    payload = app.explore({"text": TEXT})["payload"]
    assert payload["positions"] == list(range(len(payload["tokens"])))


def test_positions_and_ranks_parse():
    assert parse_position(None) == -1 and parse_position("") == -1 and parse_position("-2") == -2
    assert parse_rank(None) == 1 and parse_rank("") == 1 and parse_rank(3.0) == 3
    assert parse_rank("2") == 2


def test_a_fisher_rank_is_passed_on(app, bridge):
    payload = app.attribute({"text": TEXT, "scope": "fisher", "rank": 2})["payload"]
    expected = ts.attribute(bridge, TEXT, ts.FisherScope(rank=2))
    assert payload["scopes"][0]["rows"][0] == [rounded(v) for v in expected.scores[0].tolist()]
    assert len(payload["scopes"][0]["details"][0]["eigenvalues"]) == 2


def test_tokens_are_scaled_by_the_largest_unmasked_score(app, bridge):
    payload = app.attribute({"text": TEXT, "scope": "temperature", "position": "3"})["payload"]
    shown = token_highlights(payload)
    scores = ts.attribute(bridge, TEXT, ts.TemperatureScope(), position=3).scores[0]
    assert [token for token, _ in shown] == payload["tokens"]
    # The leading BOS is masked and tokens after position 3 have no score.
    assert shown[0][1] is None and [value for _, value in shown[4:]] == [None, None]
    peak = float(scores[1:4].max())
    assert [value for _, value in shown[1:4]] == pytest.approx(
        [float(v) / peak for v in scores[1:4]], rel=5e-3
    )
    assert max(value for _, value in shown[1:4]) == 1.0


def test_prediction_labels_stay_distinct_and_blank_tokens_show():
    payload = {"predictions": [[["a", 0.5], [" ", 0.2], ["a", 0.1], ["a", 0.05]]]}
    assert prediction_confidences(payload) == {"a": 0.5, "' '": 0.2, "a (2)": 0.1, "a (3)": 0.05}


def test_a_number_series_gets_one_influence_per_value(app):
    series = "one , two , three , four ,"  # the tiny tokenizer has no digits: a made-up payload
    assert series_influence(app.attribute({"text": series})["payload"]) is None
    payload = {
        "tokens": ["<bos>", "1", "2", ",", "3", ",", "4", "5", ","],
        "scopes": [{"rows": [[9.0, 3.0, 4.0, 1.0, 2.0, 1.0]]}],
        "series": {"values": [12.0, 3.0, 45.0], "groups": [[1, 2], [4], [6, 7]]},
    }
    assert series_influence(payload) == {"values": [12.0, 3.0, 45.0], "influence": [5.0, 2.0, None]}


def test_models_load_once_and_unknown_defaults_are_refused(bridge):
    loads = []
    app = ExplorerApp({"a": lambda: loads.append(1) or bridge, "b": lambda: bridge}, default="a")
    assert app.model(None) is bridge and app.model("a") is bridge and loads == [1]
    with pytest.raises(ValueError, match="not one of"):
        ExplorerApp({"a": lambda: bridge}, default="c")
    with pytest.raises(ValueError, match="at least one"):
        ExplorerApp({})


@pytest.fixture(scope="module")
def sae_app(bridge):
    """The app with three SAEs: one that fits the tiny model, one too wide for it and one at a
    hook point it does not have; each load is counted."""
    width = bridge.cfg.d_model
    loads = []

    def loader(name, sae):
        return lambda: loads.append(name) or sae

    saes = {
        "layer0": loader("layer0", sae_files.random_sae(width)),
        "wide": loader("wide", sae_files.random_sae(width + 3)),
        "elsewhere": loader("elsewhere", sae_files.random_sae(width, "blocks.9.hook_resid_post")),
    }
    app = ExplorerApp({"tiny": lambda: bridge}, max_tokens=12, saes=saes)
    app.loads = loads
    return app


def test_the_features_request_explains_the_sae_features_at_a_position(sae_app, bridge):
    answer = sae_app.features({"text": TEXT, "position": "3"})
    payload = answer["payload"]
    sae = sae_app.sae("layer0")
    expected = ts.attribute_features(bridge, TEXT, sae, position=3)
    section = payload["features"]
    assert section["position"] == 3 and section["hook"] == "blocks.0.hook_resid_post"
    assert [item["id"] for item in section["items"]] == expected.features.tolist()
    assert section["items"][0]["row"] == [rounded(v) for v in expected.scores[0, :4].tolist()]
    # Beside the features: the Fisher scope at the same position, no layer maps.
    assert payload["positions"] == [3] and [s["name"] for s in payload["scopes"]] == ["fisher"]
    assert payload["layers"] == [] and payload["title"].startswith("SAE features at blocks.0")
    assert answer["html"].startswith("<!DOCTYPE html>") and "tlx-data" in answer["html"]
    # Ids as text, the last position by default; the SAE was loaded once.
    firing = expected.features.tolist()[0]
    payload = sae_app.features({"text": TEXT, "sae": "layer0", "features": f" 0, {firing}"})
    section = payload["payload"]["features"]
    assert section["position"] == len(payload["payload"]["tokens"]) - 1
    assert {item["id"] for item in section["items"]} == {0, firing}
    assert sae_app.loads.count("layer0") == 1


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"text": TEXT, "sae": "gemma"}, "unknown SAE 'gemma'; choose from layer0, wide"),
        ({"text": TEXT, "features": "12,x"}, "'active' or feature ids such as 12,407"),
        ({"text": TEXT, "features": "-1"}, "'active' or feature ids"),
        ({"text": TEXT, "features": "3,99"}, "Feature 99 is outside this SAE's 24 features"),
        ({"text": TEXT, "features": [4, 4]}, "repeat an id"),
        ({"text": TEXT, "sae": "wide"}, "'wide' does not fit this model: the SAE reads"),
        (
            {"text": TEXT, "sae": "elsewhere"},
            "'elsewhere' does not fit this model: the SAE reads blocks.9",
        ),
        ({"text": TEXT, "position": "40"}, "position 40 is out of range for the 6 tokens"),
        ({"text": " "}, "The text is empty"),
    ],
)
def test_bad_feature_requests_are_one_line_messages(sae_app, request_, message):
    with pytest.raises(RequestError, match=message) as error:
        sae_app.features(request_)
    assert "\n" not in str(error.value)


def test_an_app_without_saes_says_how_to_add_one(app):
    assert app.sae_names == []
    with pytest.raises(RequestError, match="No SAE is configured; start the app with --sae"):
        app.features({"text": TEXT})


def test_feature_ids_parse():
    sae = sae_files.random_sae(4)
    assert parse_features(None, sae) == parse_features(" ", sae) == "active"
    assert parse_features("active", sae) == parse_features(",", sae) == "active"
    assert parse_features("3, 17", sae) == [3, 17] and parse_features([5, "6"], sae) == [5, 6]
    with pytest.raises(RequestError, match="feature ids"):
        parse_features([True], sae)
    with pytest.raises(RequestError, match="feature ids"):
        parse_features("2.5", sae)
