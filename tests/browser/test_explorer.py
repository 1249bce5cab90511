"""The explorer file in headless Chromium: clicking a token shows that position's scores, the
controls change the view, SAE features colour the tokens and list what a token drives, hostile
tokens and labels stay text, nothing is fetched."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_reports import IMAGE_HANDLER, LITERAL, SCRIPT_BREAKOUT
from tests.unit.results.test_attribution_file import build_attribution
from tests.unit.sae import sae_files
from tlscopes.app.explorer import explore
from tlscopes.testing.toy import toy_text
from tlscopes.views.explorer_data import explore_matrix

TEXT = "the capital of france is paris and the cat sat"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


@pytest.fixture
def open_explorer(browser, request) -> Iterator:
    """open_explorer(path) opens a file offline (every other request refused and recorded) and
    waits until the explorer has mounted; the last view is saved under tests/artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pages = []

    def open_(path: Path):
        page = context.new_page()
        page.errors, page.requests = [], []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("dialog", lambda dialog: (page.errors.append(dialog.message), dialog.dismiss()))

        def refuse(route):
            if route.request.url == path.resolve().as_uri():
                route.continue_()
            else:
                page.requests.append(route.request.url)
                route.abort()

        page.route("**/*", refuse)
        page.goto(path.resolve().as_uri())
        page.wait_for_selector(".tlx .tlx-token", timeout=15_000)
        pages.append(page)
        return page

    yield open_
    for index, page in enumerate(pages):
        suffix = "" if index == 0 else f"-{index}"
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{suffix}.png"), full_page=True)
    context.close()


def payload_of(html: str) -> dict:
    return json.loads(re.search(r'class="tlx-data">(.*?)</script>', html).group(1))


def shown_scores(page) -> list[float]:
    return page.eval_on_selector_all(
        ".tlx-token", "spans => spans.map(s => Number(s.dataset.score))"
    )


def assert_row_shown(page, row: list[float]) -> None:
    shown = shown_scores(page)
    assert shown[: len(row)] == pytest.approx(row, rel=1e-2, abs=1e-12)
    assert all(value == 0 for value in shown[len(row) :])


def test_clicking_a_token_shows_what_explains_its_prediction(tmp_path, bridge, open_explorer):
    report = explore(bridge, TEXT)
    payload = payload_of(report.html)
    page = open_explorer(report.save(tmp_path / "explorer.html").path)
    tokens = payload["tokens"]
    container = page.locator(".tlx")
    assert page.locator(".tlx-token").all_inner_texts() == tokens
    last = len(tokens) - 1
    assert container.get_attribute("data-position") == str(last)
    assert_row_shown(page, payload["scopes"][0]["rows"][last])

    page.locator(".tlx-token").nth(3).click()
    assert container.get_attribute("data-position") == "3"
    assert_row_shown(page, payload["scopes"][0]["rows"][3])
    assert page.locator(".tlx-token.tlx-after").count() == last - 3
    assert page.locator(".tlx-token").nth(3).get_attribute("class").count("tlx-explained") == 1
    bars = page.locator(".tlx-prediction .tlx-label").all_inner_texts()
    assert bars == [token for token, _ in payload["predictions"][3]]
    assert "after position 3" in page.inner_text(".tlx-status")

    # Another scope: the same position's Temperature scores.
    page.select_option(".tlx-scope", label="temperature")
    assert container.get_attribute("data-scope") == "temperature"
    assert_row_shown(page, payload["scopes"][1]["rows"][3])
    # Arrow keys step through positions.
    container.press("ArrowRight")
    assert container.get_attribute("data-position") == "4"
    # Hovering describes a token; with "hover explains" it also selects it.
    page.locator(".tlx-token").nth(2).hover()
    assert 'position 2 "capital"' in page.inner_text(".tlx-hover-info")
    page.check(".tlx-hover")
    page.locator(".tlx-token").nth(6).hover()
    assert container.get_attribute("data-position") == "6"
    assert page.errors == [] and page.requests == []


def test_colour_scales_colormaps_masking_and_the_layer_map(tmp_path, bridge, open_explorer):
    report = explore(bridge, TEXT, scopes=["fisher"])
    payload = payload_of(report.html)
    page = open_explorer(report.save(tmp_path / "explorer.html").path)
    last = len(payload["tokens"]) - 1
    row = payload["scopes"][0]["rows"][last]
    top = max(range(1, len(row)), key=lambda t: row[t])  # BOS is masked by default
    token = page.locator(".tlx-token")
    background = "el => getComputedStyle(el).backgroundColor"
    assert token.nth(top).evaluate(background) == "rgb(8, 48, 107)"  # blues at the top
    page.select_option(".tlx-cmap", "viridis")
    assert token.nth(top).evaluate(background) == "rgb(253, 231, 37)"
    linear = [token.nth(t).evaluate(background) for t in range(1, last + 1)]
    page.select_option(".tlx-scale", "log")
    logarithmic = [token.nth(t).evaluate(background) for t in range(1, last + 1)]
    assert linear != logarithmic and logarithmic[top - 1] == "rgb(253, 231, 37)"
    assert "log colour" in page.inner_text(".tlx-legend")

    # BOS is masked at first; masking the top token renormalises the rest.
    assert "tlx-masked" in token.nth(0).get_attribute("class")
    page.check(".tlx-maskmode")
    token.nth(top).click()
    assert "tlx-masked" in token.nth(top).get_attribute("class")
    shares = page.locator(".tlx-top td:nth-child(4)").all_inner_texts()
    positions = [int(p) for p in page.locator(".tlx-top td:nth-child(1)").all_inner_texts()]
    assert top not in positions and 0 not in positions
    assert sum(float(share.rstrip("%")) for share in shares[:10]) == pytest.approx(
        100
        * sum(sorted((row[t] for t in range(1, len(row)) if t != top), reverse=True)[:10])
        / sum(row[t] for t in range(1, len(row)) if t != top),
        abs=0.3,
    )
    page.click(".tlx-unmask")
    assert page.locator(".tlx-token.tlx-masked").count() == 0

    # The layer x token map of the last position, on a canvas: one cell per layer and token,
    # the largest unmasked score in the top colour (viridis, log: the view's settings), BOS grey.
    token.nth(0).click()  # in mask mode: BOS masked again
    layer_map = payload["layers"][0]
    canvas = page.locator(".tlx-layer-map")
    geometry = canvas.evaluate("c => ({...c.dataset})")
    assert int(geometry["layers"]) == bridge.cfg.n_layers == len(layer_map["rows"])
    assert (int(geometry["columns"]), int(geometry["tokensPerColumn"])) == (last + 1, 1)
    peak_layer, peak_token = max(
        ((layer, t) for layer in range(len(layer_map["rows"])) for t in range(1, last + 1)),
        key=lambda cell: layer_map["rows"][cell[0]][cell[1]],
    )
    assert layer_cell_colour(canvas, peak_layer, peak_token) == [253, 231, 37]
    assert layer_cell_colour(canvas, peak_layer, 0) == [221, 221, 221]
    point_at_layer_cell(page, canvas, peak_layer, peak_token)
    said = page.inner_text(".tlx-layer-info")
    assert said.startswith(f'layer {peak_layer}, position {peak_token} "')
    assert float(said.rsplit(": ", 1)[1]) == pytest.approx(
        layer_map["rows"][peak_layer][peak_token], rel=1e-2
    )
    page.uncheck(".tlx-maskmode")
    token.nth(2).click()
    assert page.locator(".tlx-layer-map").count() == 0
    page.click(".tlx-layer-go")
    assert page.locator(".tlx").get_attribute("data-position") == str(last)
    assert page.errors == [] and page.requests == []


def layer_cell_point(canvas, layer: int, token: int) -> tuple[float, float]:
    """The centre of a layer map cell, in CSS pixels from the canvas' corner."""
    geometry = canvas.evaluate("c => ({...c.dataset})")
    column = token // int(geometry["tokensPerColumn"])
    x = int(geometry["gutter"]) + (column + 0.5) * int(geometry["cellWidth"])
    return x, (layer + 0.5) * int(geometry["rowHeight"])


def layer_cell_colour(canvas, layer: int, token: int) -> list[int]:
    """The colour drawn at a layer map cell's centre, [r, g, b]."""
    x, y = layer_cell_point(canvas, layer, token)
    return canvas.evaluate(
        """(c, [x, y]) => {
            const ratio = c.width / c.getBoundingClientRect().width;
            const pixel = c.getContext("2d").getImageData(Math.floor(x * ratio), Math.floor(y * ratio), 1, 1);
            return Array.from(pixel.data.slice(0, 3));
        }""",
        [x, y],
    )


def point_at_layer_cell(page, canvas, layer: int, token: int) -> None:
    x, y = layer_cell_point(canvas, layer, token)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)


def test_a_number_series_is_plotted_with_influence_bars(tmp_path, open_explorer):
    tokens = ["<bos>", "2", "9", ",", "3", "0", ",", "4", "5", ","]
    length = len(tokens)
    scores = torch.zeros(length, length)
    for position in range(length):
        scores[position, : position + 1] = torch.arange(1, position + 2, dtype=torch.float32)
    result = build_attribution(
        scores=scores,
        tokens=[tokens] * length,
        token_ids=torch.arange(length).repeat(length, 1),
        positions=torch.arange(length),
        top_token_ids=torch.zeros(length, 2, dtype=torch.long),
        top_tokens=[["5", "6"]] * length,
        top_probs=torch.full((length, 2), 0.25),
        target_ids=None,
        target_probs=None,
        target_tokens=None,
        method="fisher",
        details={},
        info={"bos_token_id": 0},  # position 0 holds the BOS, as the provenance records it
    )
    page = open_explorer(explore_matrix(result).save(tmp_path / "series.html").path)
    # Three values, three bars: the delimiters and BOS get none.
    assert page.locator(".tlx-series .tlx-point").count() == 3
    heights = page.eval_on_selector_all(
        ".tlx-influence", "bars => bars.map(b => Number(b.getAttribute('height')))"
    )
    # Value influence is the norm over its digits: sqrt(2^2+3^2) < sqrt(5^2+6^2) < sqrt(8^2+9^2).
    expected = [(2**2 + 3**2) ** 0.5, (5**2 + 6**2) ** 0.5, (8**2 + 9**2) ** 0.5]
    assert [h / heights[-1] for h in heights] == pytest.approx(
        [e / expected[-1] for e in expected], rel=1e-3
    )
    page.locator(".tlx-token").nth(5).click()
    heights = page.eval_on_selector_all(
        ".tlx-influence", "bars => bars.map(b => Number(b.getAttribute('height')))"
    )
    assert heights[2] == 0 and heights[1] > heights[0] > 0
    assert page.errors == [] and page.requests == []


def test_hostile_tokens_and_titles_stay_text(tmp_path, open_explorer):
    hostile = [SCRIPT_BREAKOUT, IMAGE_HANDLER, LITERAL[0], LITERAL[1]]
    result = build_attribution(
        scores=torch.tensor([[0.5, 1.25, 0.0, 2.0]]),
        tokens=[hostile],
        token_ids=torch.tensor([[2, 10, 11, 12]]),
        positions=torch.tensor([3]),
        top_token_ids=torch.tensor([[5, 6]]),
        top_tokens=[[SCRIPT_BREAKOUT, IMAGE_HANDLER]],
        top_probs=torch.tensor([[0.5, 0.25]]),
        target_ids=torch.tensor([5]),
        target_probs=torch.tensor([0.5]),
        target_tokens=[IMAGE_HANDLER],
        details={},
        model_name=SCRIPT_BREAKOUT,
    )
    page = open_explorer(explore_matrix(result, title=IMAGE_HANDLER).save(tmp_path / "h.html").path)
    assert page.title() == IMAGE_HANDLER
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0 and page.locator("[onerror]").count() == 0
    assert page.locator("script").count() == 1  # the explorer's own; its data block is consumed
    assert page.locator(".tlx-token").all_inner_texts() == hostile
    labels = page.locator(".tlx-prediction .tlx-label").all_inner_texts()
    assert labels == [SCRIPT_BREAKOUT, IMAGE_HANDLER]
    assert json.dumps(IMAGE_HANDLER) in page.inner_text(".tlx-status")
    assert page.errors == [] and page.requests == []


def test_a_thousand_token_text_wraps_within_the_window_and_keeps_its_spaces(
    tmp_path, open_explorer
):
    n = 1000
    # Digits and commas, as in a number series, and a token with inner spaces: no space at
    # either end of a token for a line to break at.
    tokens = ["<bos>"] + [["1", "7", "a  b", ",", "x\ty"][i % 5] for i in range(n - 1)]
    result = build_attribution(
        scores=torch.linspace(0.0, 1.0, n, dtype=torch.float64)[None],
        tokens=[tokens],
        token_ids=torch.arange(n)[None],
        positions=torch.tensor([n - 1]),
        top_token_ids=torch.tensor([[5, 6]]),
        top_tokens=[[" on", " down"]],
        top_probs=torch.tensor([[0.5, 0.25]]),
        target_ids=None,
        target_probs=None,
        target_tokens=None,
    )
    page = open_explorer(explore_matrix(result).save(tmp_path / "long.html").path)
    window = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= window
    row = page.eval_on_selector(".tlx-tokens", "r => r.getBoundingClientRect().width")
    assert row <= window
    lines = page.evaluate(
        "new Set([...document.querySelectorAll('.tlx-token')]"
        ".map(s => Math.round(s.getBoundingClientRect().top))).size"
    )
    assert lines > 10  # wrapped onto many lines
    # Every token is shown whole, its spaces and tab kept and visible.
    assert page.locator(".tlx-token").all_text_contents() == tokens
    spaced = page.locator(".tlx-token").nth(3)
    assert spaced.text_content() == "a  b"
    assert spaced.evaluate("s => getComputedStyle(s).whiteSpace") in ("pre", "break-spaces")
    width = "s => s.getBoundingClientRect().width"
    one = page.locator(".tlx-token").nth(1).evaluate(width)  # "1"
    # "a  b" is four characters wide in the monospace font: its two spaces are not collapsed.
    assert spaced.evaluate(width) - one == pytest.approx(3 * (one - 4), abs=1.5)
    assert page.errors == [] and page.requests == []


def test_an_8192_token_page_renders_every_token_and_a_click_recolours(tmp_path, open_explorer):
    length = 8192
    model = helpers.build_bridge(max_position_embeddings=length, dtype=torch.float32)
    report = explore(model, toy_text(length), ["fisher"], positions=[-1])
    payload = payload_of(report.html)
    tokens, row = payload["tokens"], payload["scopes"][0]["rows"][0]
    assert len(tokens) == len(row) == length
    page = open_explorer(report.save(tmp_path / "long.html").path)
    container = page.locator(".tlx")
    spans = page.locator(".tlx-token")

    # Every token is in the DOM as text, with its score and its colour (BOS masked).
    assert spans.all_text_contents() == tokens
    assert container.get_attribute("data-position") == str(length - 1)
    assert_row_shown(page, row)
    ranked = sorted(range(1, length), key=lambda t: (-row[t], t))
    colours = background_colours(page)
    assert colours[ranked[0]] == "rgb(8, 48, 107)"  # the top of blues
    assert "rgba(0, 0, 0, 0)" not in colours[1:]
    # The token box scrolls, and shows the explained (last) token.
    assert page.evaluate(
        """() => {
            const box = document.querySelector(".tlx-tokens");
            const last = box.querySelectorAll(".tlx-token")[box.querySelectorAll(".tlx-token").length - 1];
            const outer = box.getBoundingClientRect(), inner = last.getBoundingClientRect();
            return box.scrollTop > 0 && inner.top >= outer.top && inner.bottom <= outer.bottom;
        }"""
    )

    # The layer map: neighbouring tokens share a column, coloured by their largest score.
    layer_map = payload["layers"][0]
    canvas = page.locator(".tlx-layer-map")
    geometry = canvas.evaluate("c => ({...c.dataset})")
    per_column, columns = int(geometry["tokensPerColumn"]), int(geometry["columns"])
    assert per_column > 1 and columns == -(-length // per_column)
    assert canvas.evaluate("c => c.getBoundingClientRect().right") <= page.evaluate(
        "window.innerWidth"
    )
    layer, peak = max(
        ((layer, t) for layer in range(len(layer_map["rows"])) for t in range(1, length)),
        key=lambda cell: layer_map["rows"][cell[0]][cell[1]],
    )
    assert layer_cell_colour(canvas, layer, peak) == [8, 48, 107]
    point_at_layer_cell(page, canvas, layer, peak)
    first = peak // per_column * per_column
    said = page.inner_text(".tlx-layer-info")
    last = min(first + per_column, length) - 1
    assert said.startswith(f"layer {layer}, positions {first} to {last}: ")
    assert f"at position {peak} " in said

    # Alt-click masks the top token: the colours are renormalised, the second takes the top.
    spans.nth(ranked[0]).click(modifiers=["Alt"])
    assert "tlx-masked" in spans.nth(ranked[0]).get_attribute("class")
    recoloured = background_colours(page)
    assert recoloured[ranked[1]] == "rgb(8, 48, 107)" != colours[ranked[1]]
    changed = sum(a != b for a, b in zip(colours, recoloured, strict=True))
    assert changed > length // 2
    # A click on a token that is not explained leaves the view where it was.
    spans.nth(100).click()
    assert container.get_attribute("data-position") == str(length - 1)
    assert page.errors == [] and page.requests == []


def background_colours(page) -> list[str]:
    return page.eval_on_selector_all(
        ".tlx-token", "spans => spans.map(s => getComputedStyle(s).backgroundColor)"
    )


def expected_drivers(items: list[dict], token: int) -> list[int]:
    """The features `token` drives most, as the page should list them: by its score in each
    feature's row, highest first (ties in the listed order), zero scores left out."""
    ranked = [(item["row"][token], index) for index, item in enumerate(items)]
    ranked = sorted((entry for entry in ranked if entry[0]), key=lambda e: (-e[0], e[1]))
    return [items[index]["id"] for _, index in ranked[:10]]


def test_sae_features_colour_the_tokens_and_list_what_a_token_drives(
    tmp_path, bridge, open_explorer
):
    sae = sae_files.random_sae(bridge.cfg.d_model, source=SCRIPT_BREAKOUT)
    active = ts.attribute_features(bridge, TEXT, sae, position=6).features.tolist()
    labels = {active[0]: SCRIPT_BREAKOUT, active[1]: IMAGE_HANDLER}
    report = explore(
        bridge,
        TEXT,
        ["fisher"],
        layers=False,
        sae=sae,
        feature_position=6,
        feature_labels=labels,
    )
    payload = payload_of(report.html)
    section = payload["features"]
    items = section["items"]
    assert len(items) >= 3 and section["position"] == 6
    page = open_explorer(report.save(tmp_path / "features.html").path)
    container = page.locator(".tlx")
    last = len(payload["tokens"]) - 1

    # The panel lists the features at position 6 with their activations; labels are text.
    rows = page.locator(".tlx-features .tlx-feature-row")
    assert rows.count() == len(items)
    assert page.locator(".tlx-features .tlx-feature").all_inner_texts() == [
        f"feature {item['id']}" for item in items
    ]
    shown_labels = page.locator(".tlx-features .tlx-feature-label").all_text_contents()
    assert shown_labels[:2] == [SCRIPT_BREAKOUT, IMAGE_HANDLER]
    assert SCRIPT_BREAKOUT in page.inner_text(".tlx-features .tlx-note")  # the SAE's source
    assert page.title() == payload["title"] and page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    assert rows.nth(0).locator("td").nth(3).inner_text() == "yes"

    # Clicking a feature colours the tokens by its token map, BOS masked as a sink.
    scope_colours = background_colours(page)
    assert container.get_attribute("data-mode") == "scope"
    page.locator(".tlx-features .tlx-feature").nth(2).click()
    feature = items[2]
    assert container.get_attribute("data-mode") == "feature"
    assert container.get_attribute("data-feature") == str(feature["id"])
    assert_row_shown(page, feature["row"])
    colours = background_colours(page)
    assert colours != scope_colours
    assert "tlx-masked" in page.locator(".tlx-token").nth(0).get_attribute("class")
    top = max(range(1, 7), key=lambda t: feature["row"][t])
    assert colours[top] == "rgb(8, 48, 107)"  # the top unmasked token gets the full colour
    assert f"Feature {feature['id']}" in page.inner_text(".tlx-status")
    assert page.locator(".tlx-token.tlx-after").count() == last - 6
    # Another feature, another map.
    page.locator(".tlx-features .tlx-feature").nth(0).click()
    assert_row_shown(page, items[0]["row"])
    assert background_colours(page) != colours

    # Clicking a token lists the features it drives most; the colours stay the feature's.
    assert page.locator(".tlx-drivers h3").inner_text().startswith("features token 6 ")
    page.locator(".tlx-token").nth(2).click()
    assert container.get_attribute("data-token") == "2"
    assert container.get_attribute("data-feature") == str(items[0]["id"])
    assert 'features token 2 ("capital")' in page.inner_text(".tlx-drivers h3")
    listed = page.locator(".tlx-drivers .tlx-feature").all_inner_texts()
    assert listed == [f"feature {f}" for f in expected_drivers(items, 2)] and listed
    scores = page.locator(".tlx-drivers .tlx-driver-score").all_inner_texts()
    assert [float(v) for v in scores] == pytest.approx(
        sorted((item["row"][2] for item in items if item["row"][2]), reverse=True)[:10], rel=1e-2
    )
    # A token after the features' position drives none of them.
    page.locator(".tlx-token").nth(last).click()
    assert "drives none of the features there" in page.inner_text(".tlx-drivers")
    # A listed driver can be picked; back to the scopes restores the scope's colours.
    page.locator(".tlx-token").nth(2).click()
    page.locator(".tlx-drivers .tlx-feature").nth(0).click()
    picked = expected_drivers(items, 2)[0]
    assert container.get_attribute("data-feature") == str(picked)
    page.click(".tlx-back")
    assert container.get_attribute("data-mode") == "scope"
    assert_row_shown(page, payload["scopes"][0]["rows"][last])
    assert background_colours(page) == scope_colours
    assert page.errors == [] and page.requests == []


def test_a_page_without_features_has_no_features_panel(tmp_path, open_explorer):
    page = open_explorer(explore_matrix(build_attribution()[0]).save(tmp_path / "plain.html").path)
    assert page.locator(".tlx-features, .tlx-drivers").count() == 0
    assert page.locator(".tlx").get_attribute("data-mode") == "scope"
    assert page.errors == [] and page.requests == []
