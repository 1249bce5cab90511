"""Figure and page helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from tlscopes.views.plotting import (
    draw_tokens,
    series_figure,
    token_lines,
    token_rows_page,
    tokens_page,
)

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


def test_token_lines_wrap_and_draw():
    lines = token_lines(["aaaa", "bb", "cccc", "d"], width=6)
    assert lines == [[(0, 0), (1, 4)], [(2, 0), (3, 4)]]
    figure = Figure(figsize=(4, 2))
    draw_tokens(
        figure.subplots(), ["the", " cat\n", " sat"], [0.0, 1.0, float("nan")], highlight=[1]
    )
    with pytest.raises(ValueError, match="3 tokens but 2 values"):
        draw_tokens(figure.subplots(), ["a", "b", "c"], [0.1, 0.2])


def test_tokens_page_opens_offline():
    page = tokens_page("t <b>", [("row", ["a", "b"], [0.0, 1.0])])
    assert page.startswith("<!DOCTYPE html>") and "t &lt;b&gt;" in page
    assert "<script" in page and "unpkg.com" not in page and "cdn." not in page


def test_token_rows_page_inlines_the_javascript_once():
    rows = [(f"row {i}", [0.1 * i, 1.0, 0.5]) for i in range(6)]
    page = token_rows_page(
        "rows", ["a", "b", "c"], rows, note="n < 1", extra_html="<table></table>"
    )
    single = tokens_page("one", [("row", ["a", "b", "c"], [0.0, 1.0, 0.5])])
    assert "row 5" in page and "n &lt; 1" in page and page.endswith("<table></table></body></html>")
    assert len(page) < 1.2 * len(single)
    assert "unpkg.com" not in page


def test_a_series_figure_has_the_values_as_a_line_and_one_bar_per_value():
    figure = series_figure([10.0, 30.0, 20.0], [1.0, 4.0, None], title="t")
    line_axes, bar_axes = figure.axes
    assert line_axes.lines[0].get_ydata().tolist() == [10.0, 30.0, 20.0]
    # Bars scaled to the largest influence; a value after the explained position gets none.
    assert [bar.get_height() for bar in bar_axes.patches] == [0.25, 1.0, 0.0]
    with pytest.raises(ValueError, match="3 values but 2 influences"):
        series_figure([1.0, 2.0, 3.0], [1.0, 2.0])
