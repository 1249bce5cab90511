"""Rendering results: HTML reports, figures and the explorer page.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.views.explorer_data import explore_generation, explore_layers, explore_matrix
    from tlscopes.views.feature_views import (
        feature_attribution_html,
        feature_token_figure,
        top_features_figure,
    )
    from tlscopes.views.generation_views import (
        confidence_trace,
        generation_heatmap,
        generation_html,
    )
    from tlscopes.views.html import HtmlReport, attribution_html, colored_tokens, combined_html
    from tlscopes.views.plotting import layer_heatmap, series_figure, tokens_page

_HOMES = {
    "HtmlReport": "tlscopes.views.html",
    "attribution_html": "tlscopes.views.html",
    "combined_html": "tlscopes.views.html",
    "colored_tokens": "tlscopes.views.html",
    "layer_heatmap": "tlscopes.views.plotting",
    "series_figure": "tlscopes.views.plotting",
    "tokens_page": "tlscopes.views.plotting",
    "explore_matrix": "tlscopes.views.explorer_data",
    "explore_layers": "tlscopes.views.explorer_data",
    "explore_generation": "tlscopes.views.explorer_data",
    "generation_heatmap": "tlscopes.views.generation_views",
    "confidence_trace": "tlscopes.views.generation_views",
    "generation_html": "tlscopes.views.generation_views",
    "feature_attribution_html": "tlscopes.views.feature_views",
    "feature_token_figure": "tlscopes.views.feature_views",
    "top_features_figure": "tlscopes.views.feature_views",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
