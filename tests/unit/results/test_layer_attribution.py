"""The LayerAttribution result: its long table, its figure and page, its file and its views."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tlscopes import FisherScope, LayerAttribution, attribute, attribute_layers


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


@pytest.fixture(scope="module")
def layered(model):
    return attribute_layers(model, "the capital of france is", FisherScope(), heads=True)


def test_input_scores_are_the_input_attribution_and_layer_0(model, layered):
    plain = attribute(model, "the capital of france is", FisherScope())
    torch.testing.assert_close(layered.input_scores, plain.scores)
    torch.testing.assert_close(layered.scores[:, 0], plain.scores)
    assert layered.n_layers == model.cfg.n_layers
    assert layered.tokens == plain.tokens


def test_the_long_table_has_a_row_per_layer_head_and_position(layered):
    frame = layered.to_pandas()
    n_pos = len(layered.tokens[0])
    n_heads = layered.head_scores.shape[2]
    assert len(frame) == layered.n_layers * n_pos * (1 + n_heads)
    resid = frame[frame["head"] == -1]
    assert resid["score"].tolist() == pytest.approx(layered.scores[0].flatten().tolist())
    assert frame.attrs["method"] == "fisher"


def test_the_file_round_trips_and_the_views_render(layered, tmp_path):
    path = tmp_path / "layers.json"
    layered.save(path)
    loaded = LayerAttribution.load(path)
    torch.testing.assert_close(loaded.scores, layered.scores)
    torch.testing.assert_close(loaded.head_scores, layered.head_scores)
    assert "<html" in layered.to_html().html.lower()
    assert layered.explore().html.count("tlx-") > 0
    figure = layered.heatmap()
    assert len(figure.axes) >= 2  # the layer map and the head panel
