"""Analyses inside the model: attention sinks, the IG path integrand, number series.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.analysis.attention import (
        DEFAULT_SINK_EPSILON,
        DEFAULT_SINK_HEAD_SHARE,
        attention_patterns,
        key_importance,
        score_share,
        sink_head_share,
        sink_heads,
        sink_positions,
        streamed_key_importance,
        without_positions,
    )
    from tlscopes.analysis.integrated_gradients_path import (
        DEFAULT_ALPHAS,
        PathIntegrand,
        path_integrand,
    )
    from tlscopes.analysis.timeseries import (
        Serialized,
        brownian_motion,
        geometric_brownian_motion,
        lorenz_x,
        next_value_distribution,
        serialize,
        value_scores,
        value_token_groups,
    )

_HOMES = {
    "DEFAULT_SINK_EPSILON": "tlscopes.analysis.attention",
    "DEFAULT_SINK_HEAD_SHARE": "tlscopes.analysis.attention",
    "attention_patterns": "tlscopes.analysis.attention",
    "sink_positions": "tlscopes.analysis.attention",
    "streamed_key_importance": "tlscopes.analysis.attention",
    "sink_heads": "tlscopes.analysis.attention",
    "sink_head_share": "tlscopes.analysis.attention",
    "key_importance": "tlscopes.analysis.attention",
    "score_share": "tlscopes.analysis.attention",
    "without_positions": "tlscopes.analysis.attention",
    "DEFAULT_ALPHAS": "tlscopes.analysis.integrated_gradients_path",
    "PathIntegrand": "tlscopes.analysis.integrated_gradients_path",
    "path_integrand": "tlscopes.analysis.integrated_gradients_path",
    "serialize": "tlscopes.analysis.timeseries",
    "Serialized": "tlscopes.analysis.timeseries",
    "lorenz_x": "tlscopes.analysis.timeseries",
    "brownian_motion": "tlscopes.analysis.timeseries",
    "geometric_brownian_motion": "tlscopes.analysis.timeseries",
    "value_scores": "tlscopes.analysis.timeseries",
    "value_token_groups": "tlscopes.analysis.timeseries",
    "next_value_distribution": "tlscopes.analysis.timeseries",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
