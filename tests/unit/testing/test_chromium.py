"""The browser's location and arguments: one home for the browser tests and the paint benchmark."""

from __future__ import annotations

import importlib
from pathlib import Path

from tlscopes.testing import chromium


def test_tlscopes_chromium_names_another_binary(monkeypatch):
    before = chromium.CHROMIUM
    monkeypatch.setenv("TLSCOPES_CHROMIUM", "/opt/browsers/chromium")
    try:
        assert importlib.reload(chromium).CHROMIUM == Path("/opt/browsers/chromium")
    finally:
        monkeypatch.undo()
        importlib.reload(chromium)
    assert chromium.CHROMIUM == before


def test_the_browser_starts_headless_and_offline():
    assert chromium.CHROMIUM_ARGS[0] == "--headless"
    assert "--disable-background-networking" in chromium.CHROMIUM_ARGS
