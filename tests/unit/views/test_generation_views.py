"""Figures and the offline page of a GenerationAttribution."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from matplotlib.figure import Figure

import tlscopes as ts
from tests.unit.generation.test_attribution import PROMPTS, eos_stopping_bridge
from tlscopes.generation.attribution import attribute_generation
from tlscopes.views.generation_views import generation_heatmap


@pytest.fixture(scope="module")
def result():
    return attribute_generation(eos_stopping_bridge(), PROMPTS, ts.FisherScope(), max_new_tokens=6)


def test_heatmap_is_generated_by_source_with_the_future_blank(result):
    figure = result.heatmap(0)
    assert isinstance(figure, Figure)
    image = figure.axes[0].images[0].get_array()
    count, width = 4, int(result.prompt_lengths[0]) + 4 - 1
    assert image.shape == (count, width)
    for step in range(count):
        position = int(result.positions[0, step])
        row = image[step]
        assert math.isclose(float(row[: position + 1].max()), 1.0)
        assert row.mask[position + 1 :].all()
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels == result.generated_tokens[0]
    shown = generation_heatmap(result, 1, normalize="global").axes[0].images[0].get_array()
    scores = result.scores[1, :, : shown.shape[1]].double()
    expected = (scores / scores.max()).numpy()
    future = shown.mask
    assert abs(shown.filled(0) - expected * ~future).max() < 1e-12
    with pytest.raises(ValueError, match="normalize must be"):
        result.heatmap(0, normalize="row")
    with pytest.raises(IndexError, match="out of range"):
        result.heatmap(2)


def test_confidence_trace_plots_beta_eff_and_entropy(result):
    figure = result.confidence_plot(1)
    top, bottom = figure.axes
    assert top.lines[0].get_ydata().tolist() == result.beta_eff[1].tolist()
    assert bottom.lines[0].get_ydata().tolist() == result.entropy[1].tolist()


def test_page_is_offline_and_escapes_every_token(result):
    hostile = "<script>alert(1)</script>"
    tokens = [[hostile if t == "one" else t for t in row] for row in result.tokens]
    generated = [[hostile] + row[1:] for row in result.generated_tokens]
    changed = dataclasses.replace(
        result, tokens=tokens, generated_tokens=generated, generated_text=[hostile, "&"]
    )
    page = changed.to_html().html
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"(src|href)=\"https?:", page)
    assert page.count("data:image/png;base64,") == 4
    assert page.count('class="steps"') == 2
    assert changed._repr_html_().startswith("<!DOCTYPE html>")


def test_to_html_writes_the_page(tmp_path, result):
    report = result.to_html(tmp_path / "generation.html")
    assert report.path == tmp_path / "generation.html"
    assert (tmp_path / "generation.html").read_text(encoding="utf-8") == report.html
