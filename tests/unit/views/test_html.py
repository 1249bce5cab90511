"""HTML reports: one return type, the bundle inlined once, numbers and parameters shown, and
everything that enters a page escaped."""

import json
import re
from pathlib import Path

import pytest

from tests.unit.results.test_attribution_file import build_attribution
from tlscopes.views.html import (
    HtmlReport,
    _bundle,
    attribution_html,
    colored_tokens,
    colored_tokens_multi,
    combined_html,
    script_json,
)
from tlscopes.views.plotting import token_rows_page, tokens_page


def test_to_html_returns_a_small_report_object_and_writes_the_file(tmp_path):
    result = build_attribution()
    report = result.to_html()
    assert isinstance(report, HtmlReport) and report.path is None
    assert report.html.startswith("<!DOCTYPE html>") and report._repr_html_() == report.html
    assert len(repr(report)) < 80 and repr(report).startswith("HtmlReport(size=")
    path = tmp_path / "report.html"
    written = result.to_html(path)
    assert written.path == path and path.read_text(encoding="utf-8") == written.html
    assert repr(written).endswith(f"path={str(path)!r})") and len(repr(written)) < 80 + len(
        str(path)
    )
    again = report.save(tmp_path / "again.html")
    assert again.path == Path(tmp_path / "again.html") and report.path is None
    assert result._repr_html_().startswith("<!DOCTYPE html>")


HOSTILE = [
    "</script><script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<bos>",
    "a<b>c",
    "<17>",
    "\u2028&amp;",
]


def outside_the_script(page: str) -> str:
    """The page without its one script element (which must end where the page's script ends)."""
    assert page.lower().count("</script") == 1
    return re.sub(r"<script type=\"module\">.*</script>", "", page, flags=re.DOTALL)


def bundle_count(page: str) -> int:
    return page.count("var CircuitsVis=")


def test_a_page_inlines_the_bundle_once_whatever_it_shows():
    results = [build_attribution(method=m) for m in ("fisher", "temperature", "semantic")]
    page = combined_html(results)
    single = attribution_html(results[0])
    assert bundle_count(page) == 1 and bundle_count(single) == 1
    # Two more results of two prompts each add tables, not another 1.3 MB bundle.
    assert len(page) < len(single) + 40_000
    rows = tokens_page("rows", [(f"row {i}", ["a", "b"], [0.0, 1.0]) for i in range(5)])
    assert bundle_count(rows) == 1 and "<script" not in outside_the_script(rows)
    assert "unpkg.com" not in page and "sourceMappingURL" not in page


def test_the_inlined_bundle_cannot_end_its_script():
    bundle = _bundle()
    assert "</script" not in bundle.lower() and "<!--" not in bundle
    assert "<\\/script>" in bundle  # React's own "<script></script>" string, escaped


def test_the_report_shows_scores_legend_and_scope_parameters():
    result = build_attribution(
        method="fisher",
        details={"eigenvalues": [[2.5, 0.75], [1.5, 0.5]], "beta_eff": [12.25, 3.5]},
        model_name="tiny-llama",
    )
    page = attribution_html(result)
    assert "<title>tlscopes: fisher on tiny-llama</title>" in page
    assert "Fisher rank</th><td>2" in page and "[2.5, 0.75]" in page
    assert "β_eff = ‖y‖</th><td>12.25" in page and "3.5" in page
    assert "target token" in page and "(id 5, p = 0.5)" in page
    # The highest score of prompt 0 (2.0, position 3, " sat") tops its table; scores shown.
    assert (
        "<tr><td>1</td><td>3</td><td><code>&#x27; sat&#x27;</code></td>"
        '<td class="number">2</td><td class="number">1</td></tr>' in page
    )
    assert '<td class="number">1.25</td><td class="number">0.625</td>' in page
    assert 'class="legend"' in page and "largest score in this prompt (2)" in page
    combined = combined_html([result, build_attribution(model_name="other")], title="both")
    assert "<title>both — tiny-llama, other</title>" in combined


def test_widget_values_are_what_the_tooltip_shows():
    widget = colored_tokens(["a", "b", "c"], [1 / 3, float("nan"), 2.0], max_value=2.0)
    assert widget.props["values"] == [0.3333, None, 2.0] and widget.props["maxValue"] == 2.0
    with pytest.raises(ValueError, match="3 tokens but 2 values"):
        colored_tokens(["a", "b", "c"], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"n_labels=1\]\[n_tokens=2\]"):
        colored_tokens_multi(["a", "b"], [[1.0]], ["row"])


def test_script_json_has_no_markup_or_line_separators():
    value = {"t": HOSTILE, "label": "x > y & z"}
    text = script_json(value)
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == value


def test_hostile_tokens_and_labels_stay_inside_the_data():
    result = build_attribution(
        tokens=[HOSTILE[:4], HOSTILE[2:5]],
        top_tokens=[HOSTILE[:2], HOSTILE[2:4]],
        target_tokens=HOSTILE[:2],
        model_name=HOSTILE[0],
        method=HOSTILE[1],
        details={"label": HOSTILE[0]},
    )
    pages = [
        attribution_html(result),
        combined_html([result], title=HOSTILE[0]),
        tokens_page(HOSTILE[0], [(HOSTILE[1], HOSTILE, [0.5] * len(HOSTILE))]),
        token_rows_page(
            HOSTILE[0],
            HOSTILE,
            [(label, [1.0] * len(HOSTILE)) for label in HOSTILE],
            note=HOSTILE[1],
        ),
    ]
    for page in pages:
        outside = outside_the_script(page)
        assert "<script" not in outside and "<img" not in outside
        assert "<bos>" not in outside and "<b>" not in outside


def test_tokens_reach_circuitsvis_escaped_and_labels_as_text():
    widget = colored_tokens(["<bos>", "a<b>c", "<17>", "x&y"], [0.0] * 4)
    assert widget.props["tokens"] == ["&lt;bos&gt;", "a&lt;b&gt;c", "&lt;17&gt;", "x&amp;y"]
    multi = colored_tokens_multi(["<bos>"], [[1.0]], ["<label>"])
    assert multi.props["tokens"] == ["&lt;bos&gt;"] and multi.props["labels"] == ["<label>"]
