"""Reports opened in headless Chromium: tokens render offline, hostile text stays text."""

import json

from tests.unit.results.test_attribution_file import build_attribution
from tlscopes.results.attribution import Attribution
from tlscopes.views.html import POSITIVE_COLOR, combined_html
from tlscopes.views.plotting import token_rows_page, tokens_page

SCRIPT_BREAKOUT = "</script><script>window.pwned=1;document.title='pwned'</script>"
IMAGE_HANDLER = "<img src=x onerror=\"window.pwned=1;document.title='pwned'\">"
LITERAL = ["<bos>", "a<b>c", "<17>"]


def rendered_text(page, index: int = 0) -> str:
    return page.locator(".colored-tokens").nth(index).inner_text().replace("\xa0", " ")


def assert_nothing_ran(opened, title: str) -> None:
    page = opened.page
    assert page.title() == title
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0 and page.locator("[onerror]").count() == 0
    # One script on the page: the report's own.
    assert page.locator("script").count() == 1
    assert opened.errors == [] and opened.requests == []


def test_a_report_renders_its_tokens_offline(tmp_path, open_report):
    result = build_attribution(model_name="tiny-llama")
    path = tmp_path / "report.html"
    result.to_html(path)
    opened = open_report(path, rendered=2)
    page = opened.page
    assert page.title() == "tlscopes: semantic on tiny-llama"
    assert rendered_text(page, 0) == "".join(result.tokens[0])
    assert rendered_text(page, 1) == "".join(result.tokens[1])
    # The highest score gets the full colour; a zero score stays white.
    colours = (
        page.locator(".colored-tokens")
        .nth(0)
        .evaluate(
            "row => [...row.querySelectorAll('span[style]')].map(s => getComputedStyle(s).backgroundColor)"
        )
    )
    red, green, blue = (int(POSITIVE_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert colours[3] == f"rgb({red}, {green}, {blue})" and colours[2] == "rgb(255, 255, 255)"
    # Hovering a token shows its score.
    page.locator(".colored-tokens").nth(0).locator("span[style]").nth(1).hover()
    page.wait_for_selector("text=1.25", timeout=5_000)
    assert opened.errors == [] and opened.requests == []


def test_a_hostile_saved_result_renders_as_text(tmp_path, open_report):
    saved = tmp_path / "result.json"
    build_attribution(model_name="tiny").save(saved)
    payload = json.loads(saved.read_text())
    # Someone edits the file: tokens, prediction and target that are markup.
    hostile = [SCRIPT_BREAKOUT, IMAGE_HANDLER, LITERAL[0], LITERAL[1]]
    payload["tokens"] = [hostile, LITERAL]
    payload["top_tokens"] = [[SCRIPT_BREAKOUT, IMAGE_HANDLER], LITERAL[:2]]
    payload["target_tokens"] = [IMAGE_HANDLER, SCRIPT_BREAKOUT]
    payload["details"] = {"label": SCRIPT_BREAKOUT}
    saved.write_text(json.dumps(payload))
    path = tmp_path / "report.html"
    Attribution.load(saved).to_html(path)
    opened = open_report(path, rendered=2)
    assert_nothing_ran(opened, "tlscopes: semantic on tiny")
    assert rendered_text(opened.page, 0) == "".join(hostile)
    assert rendered_text(opened.page, 1) == "".join(LITERAL)
    text = opened.page.inner_text("body")
    assert f"{SCRIPT_BREAKOUT!r}" in text and "'<bos>'\t7\t0.75" in text


def test_hostile_titles_labels_and_headings_render_as_text(tmp_path, open_report):
    tokens = [SCRIPT_BREAKOUT, IMAGE_HANDLER, *LITERAL]
    values = [0.2, 0.4, 0.6, 0.8, 1.0]
    pages = {
        "rows.html": token_rows_page(
            SCRIPT_BREAKOUT,
            tokens,
            [(SCRIPT_BREAKOUT, values), (IMAGE_HANDLER, values[::-1])],
            note=IMAGE_HANDLER,
        ),
        "tokens.html": tokens_page(IMAGE_HANDLER, [(SCRIPT_BREAKOUT, tokens, values)]),
        "combined.html": combined_html(
            [build_attribution(tokens=[LITERAL + ["x"], LITERAL], model_name=IMAGE_HANDLER)],
            title=SCRIPT_BREAKOUT,
        ),
    }
    titles = {
        "rows.html": SCRIPT_BREAKOUT,
        "tokens.html": IMAGE_HANDLER,
        "combined.html": f"{SCRIPT_BREAKOUT} — {IMAGE_HANDLER}",
    }
    for name, html in pages.items():
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        opened = open_report(path)
        assert_nothing_ran(opened, titles[name])
        assert LITERAL[0] in rendered_text(opened.page) and LITERAL[1] in rendered_text(opened.page)
    rows = open_report(tmp_path / "rows.html").page
    # circuitsvis shows each row's label on a button; the labels are text, not markup.
    assert SCRIPT_BREAKOUT in rows.inner_text("body") and IMAGE_HANDLER in rows.inner_text("body")
