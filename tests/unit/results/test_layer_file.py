"""LayerAttribution results: the long table, the file format (checked on load), the heat map
and the offline page."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tlscopes.core.layers import attribute_layers
from tlscopes.results.layer_attribution import LayerAttribution

TEXT = "the person grew up in the south and studied at columbia . the person is"


@pytest.fixture(scope="module")
def layered():
    from tlscopes.testing import toy

    return attribute_layers(toy.build_bridge(), TEXT, ts.FisherScope(rank=2), heads=True)


def test_long_table_save_load_figure_and_page(layered, tmp_path):
    frame = layered.to_pandas()
    n_layers, n_heads, pos = layered.head_scores.shape[1:]
    assert len(frame) == n_layers * pos * (1 + n_heads)
    assert set(frame.columns) >= {"layer", "head", "position", "token", "score"}
    assert frame.attrs["method"] == "fisher"
    path = tmp_path / "layers.json"
    layered.save(path)
    loaded = LayerAttribution.load(path)
    torch.testing.assert_close(loaded.scores, layered.scores)
    torch.testing.assert_close(loaded.head_scores, layered.head_scores)
    assert loaded.tokens == layered.tokens
    with pytest.raises(FileExistsError):
        layered.save(path)
    path.write_text(path.read_text().replace('"layer_scores"', '"layer_score"'))
    with pytest.raises(ValueError, match="layer_scores"):
        LayerAttribution.load(path)
    figure = layered.heatmap()
    assert len(figure.axes) == 4  # two panels and their colour bars
    report = layered.to_html(tmp_path / "layers.html")
    assert report.path.exists() and "data:image/png;base64," in report.html
    assert "http" not in report.html.split("<body>")[1].split("<script")[0]


def test_format_version_true_is_refused(layered, tmp_path):
    path = tmp_path / "layers.json"
    layered.save(path)
    path.write_text(path.read_text().replace('"format_version": 1,', '"format_version": true,', 1))
    assert '"format_version": true' in path.read_text()
    with pytest.raises(ValueError, match="format_version True, expected one of \\[1\\]"):
        LayerAttribution.load(path)


def test_layer_scores_longer_than_the_limit_are_refused(layered, tmp_path):
    path = tmp_path / "layers.json"
    layered.save(path)
    pos = layered.scores.shape[2]
    with pytest.raises(ValueError, match=f"{pos} positions, over the limit of {pos - 1}"):
        LayerAttribution.load(path, max_positions=pos - 1)
