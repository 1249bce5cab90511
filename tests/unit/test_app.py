"""The app: requests in, explorer payloads out; one shared model, messages for bad input."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import tlscopes as ts
from tests import helpers
from tlscopes import cli
from tlscopes.app import ExplorerApp, RequestError, app_page, make_server, parse_position
from tlscopes.explorer_data import rounded

TEXT = "the capital of france is"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


@pytest.fixture(scope="module")
def app(bridge):
    return ExplorerApp({"tiny": lambda: bridge}, max_tokens=12, max_explore_tokens=8)


@pytest.fixture(scope="module")
def server(app):
    running = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{running.server_address[1]}"
    running.shutdown()
    running.server_close()
    thread.join()


def post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_one_scope_at_one_position_equals_attribute(app, bridge):
    answer = app.attribute({"text": TEXT, "scope": "semantic", "target": " paris", "position": "3"})
    expected = ts.attribute(bridge, TEXT, ts.SemanticScope(" paris"), position=3)
    payload = answer["payload"]
    assert payload["positions"] == [3] and payload["tokens"] == expected.tokens[0]
    assert payload["scopes"][0]["rows"][0] == [rounded(v) for v in expected.scores[0, :4].tolist()]
    assert payload["scopes"][0]["targets"] == expected.target_tokens == ["paris"]
    assert payload["predictions"][0][0][0] == expected.top_tokens[0][0]
    # The download is the Attribution file itself.
    saved = json.loads(answer["file"])
    assert saved["tokens"] == expected.tokens and saved["method"] == "semantic"
    assert answer["html"].startswith("<!DOCTYPE html>") and "tlx-data" in answer["html"]


def test_every_position_with_the_three_scopes(app):
    payload = app.explore({"text": TEXT})["payload"]
    assert [s["name"] for s in payload["scopes"]] == ["fisher", "temperature", "semantic"]
    assert payload["positions"] == list(range(len(payload["tokens"])))
    assert len(payload["layers"]) == 3


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"text": "  "}, "The text is empty"),
        ({"text": "the cat " * 10}, "this view explains at most 12"),
        ({"text": TEXT, "scope": "semantic", "target": "new york"}, "is 2 tokens"),
        ({"text": TEXT, "scope": "fisher", "target": " paris"}, "A target is for the semantic"),
        ({"text": TEXT, "scope": "saliency"}, "unknown scope 'saliency'"),
        ({"text": TEXT, "model": "gpt-9"}, "unknown model 'gpt-9'"),
        ({"text": TEXT, "position": "last"}, "must be an integer"),
        ({"text": TEXT, "position": "40"}, "out of range"),
    ],
)
def test_bad_requests_are_messages(app, request_, message):
    with pytest.raises((RequestError, ValueError, IndexError), match=message):
        app.attribute(request_)


def test_explore_has_its_own_length_limit(app):
    with pytest.raises(RequestError, match="at most 8"):
        app.explore({"text": "the cat sat on the mat and the dog"})


def test_positions_parse():
    assert parse_position(None) == -1 and parse_position("") == -1 and parse_position("-2") == -2


def test_models_load_once_and_unknown_defaults_are_refused(bridge):
    loads = []
    app = ExplorerApp({"a": lambda: loads.append(1) or bridge, "b": lambda: bridge}, default="a")
    assert app.model(None) is bridge and app.model("a") is bridge and loads == [1]
    with pytest.raises(ValueError, match="not one of"):
        ExplorerApp({"a": lambda: bridge}, default="c")
    with pytest.raises(ValueError, match="at least one"):
        ExplorerApp({})


def test_the_page_lists_the_models_escaped(bridge):
    page = app_page(ExplorerApp({"<b>x</b>": lambda: bridge}))
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert page.count("<script>") == 2  # the explorer's script and the app's


def test_the_server_answers_and_refuses(server):
    with urllib.request.urlopen(server + "/", timeout=30) as response:
        assert response.status == 200 and b'id="ask"' in response.read()
    status, answer = post(server + "/api/attribute", {"text": TEXT, "scope": "temperature"})
    assert status == 200 and answer["payload"]["scopes"][0]["name"] == "temperature"
    status, answer = post(server + "/api/attribute", {"text": ""})
    assert status == 400 and answer == {
        "error": "The text is empty: type a prompt or a comma-separated series."
    }
    assert post(server + "/api/attribute", b"{nope")[0] == 400
    assert post(server + "/api/attribute", b"[1]") == (
        400,
        {"error": "The request must be a JSON object."},
    )
    assert post(server + "/api/other", {})[0] == 404


def test_an_unexpected_failure_is_a_message_without_traceback(bridge):
    def broken():
        raise RuntimeError("weights missing")

    running = make_server(ExplorerApp({"broken": broken}), "127.0.0.1", 0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{running.server_address[1]}/api/attribute"
        status, answer = post(url, {"text": TEXT})
    finally:
        running.shutdown()
        running.server_close()
    assert status == 500 and answer == {"error": "The server failed (RuntimeError); see its log."}


def test_concurrent_requests_on_one_model_never_mix(server, bridge):
    texts = ["the cat sat on the mat", "the dog is big", TEXT, "one two three four"]
    scopes = ["fisher", "temperature", "semantic", "fisher"]
    expected = {
        text: ts.attribute(bridge, text, cli.explain._make_scope(scope, None, 1)).scores[0]
        for text, scope in zip(texts, scopes, strict=True)
    }
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda pair: post(server + "/api/attribute", {"text": pair[0], "scope": pair[1]}),
                list(zip(texts, scopes, strict=True)) * 2,
            )
        )
    for (status, answer), text in zip(answers, texts * 2, strict=True):
        assert status == 200, answer
        row = answer["payload"]["scopes"][0]["rows"][0]
        assert row == [rounded(v) for v in expected[text].tolist()]
