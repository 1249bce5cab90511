"""The live app (Gradio) in headless Chromium: started in this process on a free local port with
a tiny model, a prompt typed, a scope run, the rendered tokens and prediction checked, the
explorer for every position opened, downloads taken, bad and hostile input shown as text; the
page may reach only the app itself. Then stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import tlscopes as ts
from tests import helpers
from tests.browser.conftest import ARTIFACTS
from tlscopes.app.explorer_app import ExplorerApp
from tlscopes.app.ui import start

TEXT = "the capital of france is"
SCRIPT_BREAKOUT = "</script><script>document.title='pwned'</script>"
BOLD = "<b>x</b>"
TEMPLATE = "${document.title='pwned'}{{7*7}}<b>y</b>"


@pytest.fixture(scope="module")
def hostile_bridge():
    """The tiny model, its tokenizer taught the ten digits (for number series) and two hostile
    whole tokens, so hostile text reaches the page as tokens (its vocabulary made larger for
    them)."""
    added = [*"0123456789", SCRIPT_BREAKOUT, BOLD]
    model = helpers.build_bridge(vocab_size=len(helpers.build_tokenizer()) + len(added))
    model.tokenizer.add_tokens(added)
    return model


@pytest.fixture(scope="module")
def served(hostile_bridge) -> Iterator[str]:
    page = start(ExplorerApp({"tiny": lambda: hostile_bridge}, max_tokens=16), "127.0.0.1", 0)
    try:
        yield page.local_url
    finally:
        page.close()


@pytest.fixture
def app_page(browser, served, request) -> Iterator:
    """The app opened in a page that may reach only the app."""
    context = browser.new_context(viewport={"width": 1100, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))

    def refuse(route):
        if route.request.url.startswith(served):
            route.continue_()
        else:
            page.requests.append(route.request.url)
            route.abort()

    page.route("**/*", refuse)
    page.goto(served)
    page.wait_for_selector("#text textarea")
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name.replace("[", "-").replace("]", "")
        page.screenshot(path=str(ARTIFACTS / f"app-{name}.png"), full_page=True)
        context.close()


def fill(page, fields: dict[str, str]) -> None:
    """Types into the form: "scope" picks a radio button, the others are text boxes."""
    for name, value in fields.items():
        if name == "scope":
            page.locator("#scope").get_by_label(value).check()
        elif name == "position":
            page.locator("#position input").fill(value)
        else:
            page.locator(f"#{name}").get_by_role("textbox").fill(value)


def run(page, button: str = "#explain") -> str:
    """Clicks `button`, waits for a new message and for every output to finish updating (no
    progress shown); returns the message."""
    message = page.locator("#message p")
    before = message.inner_text() if message.count() else ""
    page.click(button)
    page.wait_for_function(
        """before => {
            const shown = document.querySelector('#message p');
            const trackers = document.querySelectorAll('[data-testid=status-tracker]');
            return shown && shown.textContent !== before
                && [...trackers].every(tracker => tracker.classList.contains('hide'));
        }""",
        arg=before,
        timeout=120_000,
    )
    return message.inner_text()


def take_download(page, button: str, tries: int = 5):
    """Clicks a download button until its file comes: the button can show a moment before
    the file's address reaches it, and a click then does nothing (as a person would, click
    again)."""
    for attempt in range(tries):
        try:
            with page.expect_download(timeout=5_000) as download:
                page.click(button)
            return download.value
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def shown_scores(page) -> list[float | None]:
    """Each token's colour strength (the alpha of its background), None where uncoloured."""
    return page.eval_on_selector_all(
        "#tokens .token",
        """spans => spans.map(s => {
            if (!s.classList.contains('highlighted')) return null;
            const rgba = getComputedStyle(s).backgroundColor.match(/[\\d.]+/g).map(Number);
            return rgba.length === 4 ? rgba[3] : 1; })""",
    )


def test_typing_a_prompt_and_running_a_scope_shows_tokens_and_prediction(app_page, hostile_bridge):
    page = app_page
    fill(page, {"text": TEXT, "scope": "semantic", "target": " paris", "position": "-1"})
    message = run(page)
    expected = ts.attribute(hostile_bridge, TEXT, ts.SemanticScope(" paris"))
    assert message.startswith("Done: semantic scope on tiny-llama")
    assert "target 'paris'" in message
    assert page.locator("#tokens .token .text").all_inner_texts() == expected.tokens[0]
    # A long prompt's tokens would scroll inside their box (ui.TOKENS_HEIGHT).
    assert page.eval_on_selector("#tokens", "e => getComputedStyle(e).overflowY") == "auto"
    scores = expected.scores[0].tolist()
    peak = max(scores[1:])  # the leading BOS is left out of the colours
    shown = shown_scores(page)
    assert shown[0] is None and shown[1:] == pytest.approx([v / peak for v in scores[1:]], abs=0.01)
    assert page.locator("#prediction dt").all_inner_texts() == expected.top_tokens[0]
    assert page.inner_text("#prediction h2") == expected.top_tokens[0][0]
    download = take_download(page, "#download-json")
    saved = json.loads(download.path().read_text())
    assert saved["method"] == "semantic" and saved["tokens"] == expected.tokens

    # The explorer for every position: clicking a token switches to that position's scores.
    message = run(page, "#explore")
    assert message.startswith("Done: every position")
    frame = page.frame_locator("#explorer iframe")
    assert frame.locator(".tlx-scope option").all_inner_texts() == [
        "fisher",
        "temperature",
        "semantic",
    ]
    frame.locator(".tlx-token").nth(2).click()
    assert frame.locator(".tlx").get_attribute("data-position") == "2"
    fisher_row = ts.attribute(hostile_bridge, TEXT, ts.FisherScope(), position=2).scores[0]
    shown = frame.locator(".tlx-token").evaluate_all(
        "spans => spans.map(s => Number(s.dataset.score))"
    )
    assert shown == pytest.approx(fisher_row.tolist(), rel=1e-2, abs=1e-12)
    download = take_download(page, "#download-html")
    assert download.suggested_filename == "explorer.html"
    assert "tlx-data" in download.path().read_text()
    assert page.errors == [] and page.requests == []


def test_a_number_series_is_plotted_with_influence_bars(app_page, hostile_bridge):
    page = app_page
    series = "1,5,3,7,2,"
    assert page.locator("#series").count() == 0  # no plot before a series
    fill(page, {"text": series, "scope": "temperature"})
    assert run(page).startswith("Done: temperature scope")
    assert page.locator("#tokens .token .text").all_inner_texts() == hostile_bridge.to_str_tokens(
        series
    )
    plot = page.locator("#series img")
    plot.wait_for(timeout=30_000)  # the plot's component loads after the message
    assert plot.count() == 1 and plot.evaluate("image => image.naturalWidth") > 300
    # A text that is not a series hides the plot again.
    fill(page, {"text": TEXT})
    run(page)
    assert page.locator("#series img").count() == 0
    assert page.errors == [] and page.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": "   "}, "The text is empty"),
        ({"text": "the cat " * 10}, "this view explains at most 16"),
        ({"text": TEXT, "scope": "semantic", "target": "new york"}, "is 2 tokens"),
        ({"text": TEXT, "position": "99"}, "out of range"),
    ],
    ids=["empty", "too-long", "split-target", "bad-position"],
)
def test_bad_input_is_a_message_in_the_page(app_page, fields, message):
    page = app_page
    fill(page, fields)
    shown = run(page)
    assert message in shown and "Traceback" not in shown
    assert page.locator("#message p.tla-error").count() == 1
    assert page.locator("#tokens .token").count() == 0
    assert page.errors == [] and page.requests == []


def test_hostile_text_renders_as_text(app_page):
    page = app_page
    title = page.title()
    text = f"the capital {SCRIPT_BREAKOUT} of {BOLD} is"
    fill(page, {"text": text, "scope": "semantic", "target": BOLD})
    message = run(page)
    tokens = ["<bos>", "the", "capital", SCRIPT_BREAKOUT, "of", BOLD, "is"]
    assert page.locator("#tokens .token .text").all_inner_texts() == tokens
    assert f"target {BOLD!r}" in message
    # A target that splits is quoted back in the message: still text.
    fill(page, {"target": TEMPLATE})
    message = run(page)
    assert "<b>y</b>" in message and "{{7*7}}" in message and "tokens" in message
    run(page, "#explore")
    frame = page.frame_locator("#explorer iframe")
    assert frame.locator(".tlx-token").all_inner_texts() == tokens
    assert page.locator("b").count() == 0 and frame.locator("b").count() == 0
    assert page.title() == title and "pwned" not in title
    assert page.errors == [] and page.requests == []
