"""explore(): every position of a text explained by each scope, on a tiny seeded model."""

from __future__ import annotations

import json
import re

import pytest

import tlscopes as ts
from tests import helpers
from tests.unit.sae import sae_files
from tlscopes.app import explorer
from tlscopes.app.explorer import MAX_EVERY_POSITION_TOKENS, explore
from tlscopes.core.layers import attribute_layers
from tlscopes.core.matrix import attribution_matrix
from tlscopes.core.scopes import scope_from_name
from tlscopes.testing.toy import toy_text
from tlscopes.views.explorer_data import explore_matrix, rounded

TEXT = "the capital of france is paris and the cat sat"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


def page_payload(report) -> dict:
    return json.loads(re.search(r'class="tlx-data">(.*?)</script>', report.html).group(1))


def test_every_position_of_every_scope_matches_attribute(bridge):
    payload = page_payload(explore(bridge, TEXT, layers=False))
    tokens = payload["tokens"]
    assert payload["positions"] == list(range(len(tokens)))
    assert [s["name"] for s in payload["scopes"]] == ["fisher", "temperature", "semantic"]
    for scope_payload, scope in zip(
        payload["scopes"],
        [ts.FisherScope(), ts.TemperatureScope(), ts.SemanticScope()],
        strict=True,
    ):
        for position in (1, 4, len(tokens) - 1):
            single = ts.attribute(bridge, TEXT, scope, position=position)
            expected = [rounded(v) for v in single.scores[0, : position + 1].tolist()]
            assert scope_payload["rows"][position] == pytest.approx(expected, rel=1e-2, abs=1e-9)
            if scope.name == "semantic":
                # No target: each position explains its own top prediction.
                assert scope_payload["targets"][position] == single.top_tokens[0][0]
    assert payload["layers"] == []


def test_layer_maps_belong_to_the_last_position(bridge):
    payload = page_payload(explore(bridge, TEXT, scopes=["temperature"]))
    (layer_map,) = payload["layers"]
    last = len(payload["tokens"]) - 1
    layered = attribute_layers(bridge, TEXT, ts.TemperatureScope())
    assert layer_map["scope"] == "temperature" and layer_map["position"] == last
    assert len(layer_map["rows"]) == bridge.cfg.n_layers
    assert layer_map["rows"][1] == pytest.approx(
        [rounded(v) for v in layered.scores[0, 1].tolist()], rel=1e-2, abs=1e-9
    )


def test_matrix_and_layer_results_open_in_the_explorer(bridge):
    matrix = attribution_matrix(bridge, TEXT, ts.FisherScope(), [2, 5])
    payload = page_payload(explore_matrix(matrix, title="two rows"))
    assert payload["title"] == "two rows" and payload["positions"] == [2, 5]
    assert len(payload["scopes"][0]["rows"][0]) == 3
    layered = attribute_layers(bridge, TEXT, ts.FisherScope(), position=4)
    payload = page_payload(layered.explore())
    assert payload["positions"] == [4] and payload["layers"][0]["position"] == 4


def test_bad_arguments_say_what_to_do(bridge):
    with pytest.raises(ValueError, match="empty"):
        explore(bridge, "  ")
    with pytest.raises(ValueError, match="unknown scope 'fishr'"):
        explore(bridge, TEXT, scopes=["fishr"])
    with pytest.raises(ValueError, match="at least one scope"):
        explore(bridge, TEXT, scopes=[])
    assert scope_from_name(ts.SemanticScope(" paris")).target == " paris"


def test_a_generation_opens_with_one_row_per_generated_step(bridge):
    from tlscopes.generation.attribution import attribute_generation

    generated = attribute_generation(bridge, "the cat sat on", ts.SemanticScope(), max_new_tokens=4)
    payload = page_payload(generated.explore())
    steps = int(generated.generated_lengths[0])
    positions = generated.positions[0, :steps].tolist()
    assert payload["positions"] == positions and payload["tokens"] == generated.tokens[0]
    assert payload["steps"]["generated"] == generated.generated_tokens[0][:steps]
    assert payload["scopes"][0]["targets"] == generated.generated_tokens[0][:steps]
    last = positions[-1]
    assert payload["scopes"][0]["rows"][-1] == [
        rounded(v) for v in generated.scores[0, steps - 1, : last + 1].tolist()
    ]
    assert payload["predictions"][0][0][0] == generated.top_tokens[0][0][0]
    with pytest.raises(IndexError, match="out of range"):
        generated.explore(3)


def test_an_sae_adds_its_features_at_one_position(bridge):
    sae = sae_files.random_sae(bridge.cfg.d_model, source="<i>random</i>")
    payload = page_payload(
        explore(bridge, TEXT, ["fisher"], layers=False, sae=sae, feature_position=4)
    )
    section = payload["features"]
    expected = ts.attribute_features(bridge, TEXT, sae, position=4)
    assert 0 < len(expected) < sae.d_sae  # some features fire, some do not
    assert section["hook"] == sae.hook and section["position"] == 4
    assert section["sae"]["source"] == "<i>random</i>" and section["sae"]["d_sae"] == 24
    assert [item["id"] for item in section["items"]] == expected.features.tolist()
    assert all(item["fires"] for item in section["items"])
    assert section["items"][0]["row"] == [rounded(v) for v in expected.scores[0, :5].tolist()]
    assert section["masked"] == [0] and payload["masked"] == [0]
    # Given ids, a silent one included, listed by activation; labels reach the page as given.
    silent = next(f for f in range(sae.d_sae) if f not in expected.features.tolist())
    firing = int(expected.features[-1])
    payload = page_payload(
        explore(
            bridge,
            TEXT,
            ["fisher"],
            layers=False,
            sae=sae,
            features=[silent, firing],
            feature_position=4,
            feature_labels={silent: "</script>"},
        )
    )
    items = payload["features"]["items"]
    assert [(item["id"], item["fires"], item["label"]) for item in items] == [
        (firing, True, None),
        (silent, False, "</script>"),
    ]


def test_without_an_sae_the_payload_has_no_features(bridge):
    assert page_payload(explore(bridge, TEXT, ["temperature"], layers=False))["features"] is None


def test_a_text_over_the_every_position_limit_names_its_positions(monkeypatch):
    model = helpers.build_bridge(max_position_embeddings=1024)
    length = MAX_EVERY_POSITION_TOKENS + 88
    text = toy_text(length)
    passes = []
    monkeypatch.setattr(explorer, "attribution_matrix", lambda *args, **_: passes.append(args))
    with pytest.raises(ValueError) as refused:
        explore(model, text)
    said = str(refused.value)
    assert said.startswith(
        f"the text is {length} tokens; every position is explained only up to "
        f"{MAX_EVERY_POSITION_TOKENS} tokens"
    )
    assert f"{3 * length * (length + 1) // 2:,} scores in the page" in said
    assert "positions=[-1]" in said and f"positions=range({length})" in said
    assert passes == []  # refused before any pass
    monkeypatch.undo()
    # The last position alone: one row over every token, as attribute() scores it.
    payload = page_payload(explore(model, text, ["fisher"], positions=[-1], layers=False))
    expected = ts.attribute(model, text, ts.FisherScope())
    assert len(payload["tokens"]) == length and payload["positions"] == [length - 1]
    assert payload["scopes"][0]["rows"][0] == pytest.approx(
        [rounded(v) for v in expected.scores[0].tolist()], rel=1e-2, abs=1e-9
    )


def test_named_positions_explain_every_one_past_the_limit(bridge, monkeypatch):
    monkeypatch.setattr(explorer, "MAX_EVERY_POSITION_TOKENS", 4)
    length = int(bridge.to_tokens(TEXT).shape[-1])
    with pytest.raises(ValueError, match="only up to 4 tokens"):
        explore(bridge, TEXT, ["temperature"], layers=False)
    payload = page_payload(
        explore(bridge, TEXT, ["temperature"], positions=range(length), layers=False)
    )
    assert payload["positions"] == list(range(length))
