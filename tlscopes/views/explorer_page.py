"""The explorer's page: a JSON payload and one copy of the explorer's script, in one HTML file.

The script and style are package assets (``tlscopes/views/assets/explorer.js`` and ``.css``),
inlined once per page so the file opens offline and renders inside a notebook. The payload goes
in as JSON made safe for an inline script (:func:`tlscopes.views.html.script_json`), and the script
puts every token into the page with ``textContent``, so no token can become markup.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any
from uuid import uuid4

from tlscopes.views.html import HtmlReport, html_page, script_json


@cache
def asset(name: str) -> str:
    """A file from ``tlscopes/views/assets`` (the explorer's script or style), made safe to inline:
    no ``</`` that could end the element it is inlined in."""
    text = resources.files("tlscopes.views").joinpath("assets", name).read_text(encoding="utf-8")
    return re.sub(r"</", r"<\\/", text)


def explorer_markup(payload: dict[str, Any]) -> str:
    """The explorer's element: a container holding its payload; the script mounts it."""
    element_id = f"tlx-{uuid4().hex[:12]}"
    return (
        f'<div class="tlx" id="{element_id}">'
        f'<script type="application/json" class="tlx-data">{script_json(payload)}</script></div>'
    )


def scripts_markup() -> str:
    """The explorer's style and script, once."""
    return f"<style>{asset('explorer.css')}</style><script>{asset('explorer.js')}</script>"


def explorer_html(payload: dict[str, Any]) -> str:
    """One self-contained page showing `payload` (from :mod:`tlscopes.views.explorer_data`)."""
    return html_page(
        str(payload.get("title", "tlscopes explorer")),
        [
            explorer_markup(payload),
            scripts_markup(),
        ],
    )


def explorer_report(payload: dict[str, Any]) -> HtmlReport:
    """The page as an HtmlReport: a notebook displays it, ``.save(path)`` writes it."""
    return HtmlReport(explorer_html(payload))


__all__ = ["asset", "explorer_html", "explorer_markup", "explorer_report", "scripts_markup"]
