"""The live app in headless Chromium: started on a free local port with a tiny model, a prompt
typed, a scope run, the rendered tokens and prediction checked, then stopped."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import tlscopes as ts
from tests import helpers
from tests.browser.conftest import ARTIFACTS
from tlscopes.app import ExplorerApp, make_server

TEXT = "the capital of france is"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


@pytest.fixture
def app_page(browser, bridge, request) -> Iterator:
    """The app on 127.0.0.1 at a free port, opened in a page that may reach only the app."""
    server = make_server(ExplorerApp({"tiny": lambda: bridge}, max_tokens=16), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))

    def refuse(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            page.requests.append(route.request.url)
            route.abort()

    page.route("**/*", refuse)
    page.goto(base)
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name.replace("[", "-").replace("]", "")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        context.close()
        server.shutdown()
        server.server_close()
        thread.join()


def run(page, button: str = "#run") -> None:
    page.click(button)
    page.wait_for_function(
        "!document.body.dataset.busy && document.querySelector('#message').textContent"
    )


def test_typing_a_prompt_and_running_a_scope_shows_tokens_and_prediction(app_page, bridge):
    page = app_page
    page.fill("#text", TEXT)
    page.select_option("#scope", "semantic")
    page.fill("#target", " paris")
    page.fill("#position", "-1")
    run(page)
    expected = ts.attribute(bridge, TEXT, ts.SemanticScope(" paris"))
    assert page.inner_text("#message") == "Done: semantic scope on tiny-llama."
    assert page.locator("#result .tlx-token").all_inner_texts() == expected.tokens[0]
    shown = page.eval_on_selector_all(
        "#result .tlx-token", "spans => spans.map(s => Number(s.dataset.score))"
    )
    assert shown == pytest.approx(expected.scores[0].tolist(), rel=1e-2)
    labels = page.locator("#result .tlx-prediction .tlx-label").all_inner_texts()
    assert labels == expected.top_tokens[0]
    assert 'target "paris"' in page.inner_text("#result .tlx-status")
    # Both downloads are offered as files made in the page.
    for link in ("#download-json", "#download-html"):
        assert page.get_attribute(link, "href").startswith("blob:")
    with page.expect_download() as download:
        page.click("#download-json")
    assert '"method": "semantic"' in download.value.path().read_text()

    # The explorer for every position: clicking a token switches to that position's scores.
    run(page, "#explore-all")
    assert page.inner_text("#message").startswith("Done: every position")
    assert page.locator("#result .tlx-scope option").all_inner_texts() == [
        "fisher",
        "temperature",
        "semantic",
    ]
    page.locator("#result .tlx-token").nth(2).click()
    assert page.get_attribute("#result", "data-position") == "2"
    fisher_row = ts.attribute(bridge, TEXT, ts.FisherScope(), position=2).scores[0].tolist()
    shown = page.eval_on_selector_all(
        "#result .tlx-token", "spans => spans.map(s => Number(s.dataset.score))"
    )
    assert shown == pytest.approx(fisher_row, rel=1e-2, abs=1e-12)
    assert page.errors == [] and page.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"#text": "   "}, "The text is empty"),
        ({"#text": "the cat " * 10}, "this view explains at most 16"),
        ({"#text": TEXT, "#scope": "semantic", "#target": "new york"}, "is 2 tokens"),
        ({"#text": TEXT, "#position": "99"}, "out of range"),
    ],
    ids=["empty", "too-long", "split-target", "bad-position"],
)
def test_bad_input_is_a_message_in_the_page(app_page, fields, message):
    page = app_page
    for selector, value in fields.items():
        if selector == "#scope":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    run(page)
    shown = page.inner_text("#message")
    assert message in shown and "Traceback" not in shown
    assert "tla-error" in page.get_attribute("#message", "class")
    assert page.locator("#result .tlx-token").count() == 0
    assert page.errors == [] and page.requests == []
