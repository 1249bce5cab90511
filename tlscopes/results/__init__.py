"""Result objects and their files: Attribution, LayerAttribution, GenerationAttribution.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.results.attribution import Attribution
    from tlscopes.results.feature_attribution import FeatureAttribution
    from tlscopes.results.generation_attribution import GenerationAttribution
    from tlscopes.results.layer_attribution import LayerAttribution

_HOMES = {
    "Attribution": "tlscopes.results.attribution",
    "FeatureAttribution": "tlscopes.results.feature_attribution",
    "LayerAttribution": "tlscopes.results.layer_attribution",
    "GenerationAttribution": "tlscopes.results.generation_attribution",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
