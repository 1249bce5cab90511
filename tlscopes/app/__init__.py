"""The explorer: every position of a text explained on one offline page, and the live app
(request handling and its Gradio page).

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.app.explorer import explore, explore_payload
    from tlscopes.app.explorer_app import ExplorerApp, RequestError
    from tlscopes.app.ui import build_blocks, gradio_installed, start

_HOMES = {
    "explore": "tlscopes.app.explorer",
    "explore_payload": "tlscopes.app.explorer",
    "ExplorerApp": "tlscopes.app.explorer_app",
    "RequestError": "tlscopes.app.explorer_app",
    "build_blocks": "tlscopes.app.ui",
    "start": "tlscopes.app.ui",
    "gradio_installed": "tlscopes.app.ui",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
