"""SAE features as scopes: load SAEs from their own formats, explain one feature (FeatureScope)
or every active feature at once (attribute_features).

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.sae.feature_scope import FeatureScope
    from tlscopes.sae.features import active_features, attribute_features
    from tlscopes.sae.formats import load_sae, transformer_lens_hook
    from tlscopes.sae.model import SAE

_HOMES = {
    "FeatureScope": "tlscopes.sae.feature_scope",
    "SAE": "tlscopes.sae.model",
    "active_features": "tlscopes.sae.features",
    "attribute_features": "tlscopes.sae.features",
    "load_sae": "tlscopes.sae.formats",
    "transformer_lens_hook": "tlscopes.sae.formats",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
