"""Where the headless browser for the browser tests and the explorer's paint benchmark lives,
and how it is started: Debian's Chromium (``apt-get install -y chromium``; Playwright's own
browser download cannot work offline), or the binary named by ``TLSCOPES_CHROMIUM``."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("TLSCOPES_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]
