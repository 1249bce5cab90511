"""The app's page: the handlers (what a request puts in the page), bad input as messages, one
shared model under concurrent requests, the sandboxed explorer frame, and the Gradio app itself
answering through gradio_client."""

from __future__ import annotations

import html.parser
import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tlscopes as ts
from tests.unit.sae import sae_files
from tlscopes import cli
from tlscopes.app.explorer_app import ExplorerApp
from tlscopes.app.ui import (
    INSTALL_HINT,
    Answer,
    AppHandlers,
    frame_html,
    gradio_installed,
    message_html,
    start,
)

TEXT = "the capital of france is"


@pytest.fixture(scope="module")
def handlers(bridge, tmp_path_factory):
    app = ExplorerApp({"tiny": lambda: bridge}, max_tokens=12, max_explore_tokens=8)
    return AppHandlers(app, directory=tmp_path_factory.mktemp("app-files"))


def test_explaining_shows_tokens_prediction_and_offers_the_files(handlers, bridge):
    answer = handlers.explain(TEXT, "semantic", None, " paris", 3, "tiny")
    expected = ts.attribute(bridge, TEXT, ts.SemanticScope(" paris"), position=3)
    assert not answer.error, answer.message
    assert answer.message.startswith("Done: semantic scope on tiny-llama")
    assert "after token 3 'of', target 'paris'" in answer.message
    assert [token for token, _ in answer.highlights] == expected.tokens[0]
    assert list(answer.prediction) == expected.top_tokens[0]
    assert list(answer.prediction.values()) == pytest.approx(expected.top_probs[0].tolist(), 1e-2)
    assert answer.series is None and answer.explorer is None
    saved = ts.Attribution.load(answer.files["json"])
    assert saved.scores.tolist() == expected.scores.tolist() and saved.method == "semantic"
    assert answer.files["json"].endswith("attribution.json")
    with open(answer.files["html"], encoding="utf-8") as page:
        assert "tlx-data" in page.read()


def test_the_target_and_the_rank_count_only_for_their_scope(handlers, bridge):
    # The page hides the field of the other scope; whatever it still holds is not sent.
    answer = handlers.explain(TEXT, "fisher", 2, " paris", -1, "tiny")
    expected = ts.attribute(bridge, TEXT, ts.FisherScope(rank=2))
    assert ts.Attribution.load(answer.files["json"]).scores.tolist() == expected.scores.tolist()
    answer = handlers.explain(TEXT, "temperature", 2, " paris", None, None)
    assert not answer.error and answer.message.startswith("Done: temperature scope")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("  ",), "The text is empty"),
        ((None,), "The text is empty"),
        (("the cat " * 10,), "this view explains at most 12"),
        ((TEXT, "semantic", None, "new york"), "is 2 tokens"),
        ((TEXT, "fisher", 0), "rank must be a positive integer"),
        ((TEXT, "fisher", 1, "", 99), "out of range"),
        ((TEXT, "fisher", 1, "", -1, "gpt-9"), "unknown model 'gpt-9'"),
        ((TEXT, "saliency"), "unknown scope 'saliency'"),
    ],
)
def test_bad_input_is_a_message_not_an_exception(handlers, values, message):
    answer = handlers.explain(*values)
    assert answer.error and message in answer.message and "Traceback" not in answer.message
    assert answer.highlights is None and answer.prediction is None and answer.files == {}


def test_explore_has_its_own_limit_and_answers_with_the_explorer(handlers):
    assert "at most 8" in handlers.explore("the cat sat on the mat and the dog", "tiny").message
    answer = handlers.explore(TEXT, None)
    assert not answer.error and answer.message.startswith("Done: every position, three scopes")
    assert answer.explorer.startswith("<!DOCTYPE html>") and "tlx-data" in answer.explorer
    payload = json.loads(open(answer.files["json"], encoding="utf-8").read())
    assert [scope["name"] for scope in payload["scopes"]] == ["fisher", "temperature", "semantic"]
    assert open(answer.files["html"], encoding="utf-8").read() == answer.explorer


def test_only_the_newest_files_are_kept(bridge, tmp_path, monkeypatch):
    import tlscopes.app.ui

    monkeypatch.setattr(tlscopes.app.ui, "KEPT_FILES", 3)
    handlers = AppHandlers(ExplorerApp({"tiny": lambda: bridge}), directory=tmp_path)
    first = handlers.explain(TEXT).files
    answers = [handlers.explain(TEXT).files for _ in range(3)]
    assert len(list(tmp_path.iterdir())) == 3
    assert not any(Path(path).exists() for path in first.values())
    assert all(Path(path).exists() for path in answers[-1].values())


def test_an_unexpected_failure_is_a_message_and_the_traceback_goes_to_the_log(tmp_path, caplog):
    def broken():
        raise RuntimeError("weights missing")

    handlers = AppHandlers(ExplorerApp({"broken": broken}), directory=tmp_path)
    with caplog.at_level(logging.ERROR, logger="tlscopes.app.ui"):
        answer = handlers.explain(TEXT)
    assert answer == Answer("The app failed (RuntimeError); see its log.", error=True)
    assert "weights missing" in caplog.text


def test_concurrent_requests_on_one_model_never_mix(handlers, bridge):
    texts = ["the cat sat on the mat", "the dog is big", TEXT, "one two three four"]
    scopes = [ts.FisherScope(), ts.TemperatureScope(), ts.SemanticScope(), ts.FisherScope()]
    expected = {
        text: ts.attribute(bridge, text, scope).scores[0].tolist()
        for text, scope in zip(texts, scopes, strict=True)
    }
    requests = list(zip(texts, [scope.name for scope in scopes], strict=True)) * 2
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda pair: handlers.explain(*pair), requests))
    for answer, (text, _) in zip(answers, requests, strict=True):
        assert not answer.error, answer.message
        assert ts.Attribution.load(answer.files["json"]).scores[0].tolist() == expected[text]
        assert [token for token, _ in answer.highlights] == bridge.to_str_tokens(text)


class _Attributes(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append({"tag": tag, **dict(attrs)})


def test_the_explorer_frame_holds_the_page_escaped_and_sandboxed():
    page = "<!DOCTYPE html><p title=\"a 'b'\">&amp; </iframe><script>x()</script>"
    markup = frame_html(page)
    parser = _Attributes()
    parser.feed(markup)
    assert len(parser.found) == 1  # nothing in the page became an element of its own
    frame = parser.found[0]
    assert frame["tag"] == "iframe" and frame["srcdoc"] == page
    assert frame["sandbox"] == "allow-scripts"  # scripts run, in an origin of their own
    assert frame_html(None) == ""


def test_messages_are_escaped():
    shown = message_html(Answer("'<b>x</b>' & \"y\" is 2 tokens", error=True))
    assert shown == (
        '<p class="tla-error" role="alert">&#x27;&lt;b&gt;x&lt;/b&gt;&#x27; &amp; '
        "&quot;y&quot; is 2 tokens</p>"
    )
    assert message_html(Answer("Done.")) == '<p class="tla-done" role="status">Done.</p>'


def test_the_gradio_app_answers_through_its_api(bridge):
    from gradio_client import Client

    page = start(ExplorerApp({"tiny": lambda: bridge}, max_tokens=12), "127.0.0.1", 0)
    try:
        assert page.analytics_enabled is False and page.share is False
        client = Client(page.local_url, verbose=False)
        shown = client.predict(TEXT, "temperature", 1, "", -1, "tiny", api_name="/explain")
        message, tokens, prediction, series, frame, json_file, html_file = shown
        expected = ts.attribute(bridge, TEXT, ts.TemperatureScope())
        assert "Done: temperature scope on tiny-llama" in message
        assert [item["token"] for item in tokens] == expected.tokens[0]
        assert prediction["label"] == expected.top_tokens[0][0]
        assert json_file["visible"] and json_file["value"].endswith("attribution.json")
        assert series["visible"] is False and frame == ""
        shown = client.predict("", "fisher", 1, "", -1, "tiny", api_name="/explain")
        assert 'class="tla-error"' in shown[0] and "The text is empty" in shown[0]
        shown = client.predict(TEXT, "tiny", api_name="/explore")
        assert "Done: every position" in shown[0] and "srcdoc=" in shown[4]
    finally:
        page.close()


@pytest.fixture(scope="module")
def sae_handlers(bridge, tmp_path_factory):
    sae = sae_files.random_sae(bridge.cfg.d_model)
    app = ExplorerApp({"tiny": lambda: bridge}, max_tokens=12, saes={"layer0": lambda: sae})
    return AppHandlers(app, directory=tmp_path_factory.mktemp("feature-files"))


def test_explaining_sae_features_shows_them_in_the_explorer(sae_handlers, bridge):
    answer = sae_handlers.features(TEXT, "layer0", "active", 3, "tiny")
    expected = ts.attribute_features(bridge, TEXT, sae_handlers.app.sae("layer0"), position=3)
    assert not answer.error, answer.message
    assert answer.message.startswith("Done: SAE features at blocks.0.hook_resid_post on tiny")
    assert f"position 3 'of': {len(expected)} features. Click a feature" in answer.message
    assert answer.explorer.startswith("<!DOCTYPE html>") and answer.highlights is None
    payload = json.loads(open(answer.files["json"], encoding="utf-8").read())
    assert [item["id"] for item in payload["features"]["items"]] == expected.features.tolist()
    assert open(answer.files["html"], encoding="utf-8").read() == answer.explorer
    answer = sae_handlers.features(TEXT, None, "2, 999", None, None)
    assert answer.error and "Feature 999 is outside this SAE's 24 features" in answer.message
    assert answer.files == {} and answer.explorer is None


def test_the_gradio_app_explains_sae_features_through_its_api(sae_handlers):
    from gradio_client import Client

    page = start(sae_handlers.app, "127.0.0.1", 0)
    try:
        client = Client(page.local_url, verbose=False)
        shown = client.predict(TEXT, "layer0", "active", 3, "tiny", api_name="/features")
        message, tokens, prediction, series, frame, features_frame, json_file, html_file = shown
        assert "Done: SAE features at blocks.0" in message and frame == ""
        assert "srcdoc=" in features_frame and "tlx-data" in features_frame
        assert json_file["value"].endswith("features.json") and html_file["visible"]
        # The other buttons empty the features frame.
        shown = client.predict(TEXT, "tiny", api_name="/explore")
        assert "srcdoc=" in shown[4] and shown[5] == ""
    finally:
        page.close()


def test_neither_the_library_nor_the_app_logic_imports_gradio():
    code = (
        "import sys, tlscopes, tlscopes.app.explorer_app, tlscopes.app.ui\n"
        "tlscopes.core.engine\n"
        "assert 'gradio' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys):
    import tlscopes.models.loading

    monkeypatch.setitem(sys.modules, "gradio", None)  # what an import of a missing module meets
    loads = []
    monkeypatch.setattr(
        tlscopes.models.loading, "load_model", lambda *args, **kwargs: loads.append(args)
    )
    assert not gradio_installed()
    assert cli.main(["serve"]) == cli.EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert (
        error == f"tlscopes serve: error: {INSTALL_HINT}\n" and 'pip install -e ".[app]"' in error
    )
    assert loads == []  # said before any model loads
