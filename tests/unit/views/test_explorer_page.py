"""The explorer's page: one copy of its script, the payload as safe JSON, offline."""

from __future__ import annotations

import json
import re

from tlscopes.views.explorer_page import asset, explorer_html, explorer_report

HOSTILE = "</script><script>window.pwned=1</script>"


def payload(tokens):
    return {
        "title": HOSTILE,
        "tokens": tokens,
        "positions": [len(tokens) - 1],
        "predictions": [[[HOSTILE, 0.5]]],
        "scopes": [{"name": "fisher", "note": "n", "rows": [[1.0] * len(tokens)]}],
        "masked": [],
        "series": None,
        "layers": [],
    }


def test_the_page_holds_one_script_and_its_payload_as_safe_json():
    page = explorer_html(payload(["<bos>", HOSTILE, "a<b>c"]))
    # One executable script (the explorer's) and one data block; no token can end either.
    assert page.count("<script>") == 1
    assert page.count('<script type="application/json" class="tlx-data">') == 1
    assert page.count("</script>") == 2
    data = re.search(r'class="tlx-data">(.*?)</script>', page).group(1)
    assert json.loads(data)["tokens"] == ["<bos>", HOSTILE, "a<b>c"]
    # Nothing is fetched: no src or href attribute anywhere.
    assert not re.search(r"\s(src|href)=", page)
    # The title is escaped in the page's own heading.
    assert "<title>&lt;/script&gt;" in page


def test_assets_cannot_close_their_element():
    for name in ("explorer.js", "explorer.css"):
        assert "</" not in asset(name)
    assert "textContent" in asset("explorer.js") and "innerHTML" not in asset("explorer.js")


def test_a_report_shows_its_size_and_renders_in_a_notebook():
    report = explorer_report(payload(["a", "b"]))
    assert report._repr_html_() == report.html
    assert repr(report).startswith("HtmlReport(size=")
