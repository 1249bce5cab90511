"""Headless Chromium (Debian's, through playwright's sync API) for tests that open reports.

Pages open offline: every request that is not for the page's own file is refused and recorded.
Each test's final screenshot goes to tests/artifacts/<test name>.png.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tlscopes.testing.chromium import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install it (apt-get install -y chromium) or point "
            "TLSCOPES_CHROMIUM at one; playwright's own browser download is not used"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class OpenedPage:
    """A page opened from a file, with what it tried to fetch and the errors it raised."""

    page: object
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def open_report(browser, request) -> Iterator:
    """open_report(path) opens an HTML file offline and waits until circuitsvis has rendered."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    opened: list[OpenedPage] = []

    def open_(path: Path, *, rendered: int = 1) -> OpenedPage:
        page = context.new_page()
        result = OpenedPage(page)
        page.on("pageerror", lambda error: result.errors.append(str(error)))
        page.on("dialog", lambda dialog: (result.errors.append(dialog.message), dialog.dismiss()))

        def refuse(route):
            if route.request.url != path.resolve().as_uri():
                result.requests.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        page.route("**/*", refuse)
        page.goto(path.resolve().as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('.colored-tokens').length >= {rendered}", timeout=15_000
        )
        opened.append(result)
        return result

    yield open_
    for index, result in enumerate(opened):
        suffix = "" if index == 0 else f"-{index}"
        name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        result.page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
    context.close()
