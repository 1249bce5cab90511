"""The SAE feature views: the HTML report escapes everything and holds every feature's map and
the reverse view; the figures draw what the result holds."""

from __future__ import annotations

import math

import torch

from tests.unit.results.test_feature_attribution import build as build_result
from tlscopes.views.feature_views import (
    feature_attribution_html,
    feature_token_figure,
    top_features_figure,
)


def build(**overrides):
    """The results test's FeatureAttribution, with text that must be escaped."""
    values = dict(
        tokens=["<bos>", "a", "</script><b>x", "c", "d"],
        sae={"source": "<i>sparsify</i>", "sha256": "ab" * 32, "activation": "topk"},
        model_name="tiny<model>",
    )
    values.update(overrides)
    return build_result(**values)


def body_of(page: str) -> str:
    return page.split("<body>", 1)[1]


def test_the_report_escapes_text_and_holds_each_feature():
    page = feature_attribution_html(build())
    body = body_of(page)
    assert "<i>sparsify</i>" not in body and "&lt;i&gt;sparsify&lt;/i&gt;" in body
    assert "tiny<model>" not in page and "</script><b>" not in body
    assert "ab" * 32 in body
    assert "feature 17 (act 2.5)" in page and "feature 3 (act 0)" in page
    assert "It is a sink: its score is 2.5x" in body  # median of 3.0 and 2.0
    # The reverse view lists, for token 1, feature 3 before feature 17.
    assert "3 (4), 17 (1)" in body


def test_an_empty_result_says_nothing_fires():
    empty = build(
        scores=torch.zeros(0, 5),
        features=torch.zeros(0, dtype=torch.long),
        pre_activations=torch.zeros(0, dtype=torch.float64),
        activations=torch.zeros(0, dtype=torch.float64),
    )
    assert "No feature fires" in feature_attribution_html(empty)


def test_the_result_writes_its_report(tmp_path):
    report = build().to_html(tmp_path / "report.html")
    assert report.path.read_text(encoding="utf-8") == report.html


def test_figures_draw_the_token_map_and_the_reverse_view():
    result = build()
    figure = feature_token_figure(result, 17)
    axes = figure.axes[0]
    texts = [text.get_text() for text in axes.texts]
    assert texts == ["<bos>", "a", "</script><b>x", "c", "d"]
    faces = [patch.get_facecolor() for patch in axes.patches]
    assert faces[0] == (1.0, 1.0, 1.0, 1.0)  # the sink is uncoloured
    assert "activation 2.5" in figure._suptitle.get_text()
    bars = top_features_figure(result, 1).axes[0]
    heights = [patch.get_width() for patch in bars.patches]
    assert heights == [4.0, 1.0]
    labels = [label.get_text() for label in bars.get_yticklabels()]
    assert labels == ["3 (silent)", "17"]
    assert not math.isnan(heights[0])
