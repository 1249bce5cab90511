"""Figure and page helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from tlscopes.plotting import draw_tokens, token_lines, token_rows_page, tokens_page

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


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
