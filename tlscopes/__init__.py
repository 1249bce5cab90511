"""tlscopes: Jacobian Scopes (arXiv 2601.16407) for TransformerLens models.

The public API, re-exported from the subpackages that hold it (each has its own face):
``core`` (the engine and the scopes), ``models``, ``fisher``, ``results``, ``views``,
``methods``, ``generation``, ``evaluation``, ``analysis``, ``app`` and ``testing``. Names are
imported on first use, so that ``tlscopes --help`` does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.core.engine import attribute, attribute_many
    from tlscopes.core.inputs import prepare_inputs
    from tlscopes.core.layers import attribute_layers
    from tlscopes.core.matrix import attribution_matrix
    from tlscopes.core.scopes import (
        DirectionScope,
        FisherScope,
        Scope,
        SemanticScope,
        TemperatureScope,
        contrast_direction,
        scope_from_name,
    )
    from tlscopes.fisher.directions import fisher_directions, fisher_matrix
    from tlscopes.generation.attribution import attribute_generation
    from tlscopes.models.facts import weight_processing
    from tlscopes.models.loading import load_model
    from tlscopes.results.attribution import Attribution
    from tlscopes.results.feature_attribution import FeatureAttribution
    from tlscopes.results.generation_attribution import GenerationAttribution
    from tlscopes.results.layer_attribution import LayerAttribution
    from tlscopes.sae.feature_scope import FeatureScope
    from tlscopes.sae.features import attribute_features
    from tlscopes.sae.formats import load_sae
    from tlscopes.sae.model import SAE
    from tlscopes.tokens import token_string, token_strings

# Each public name and the module that defines it.
_HOMES = {
    "Attribution": "tlscopes.results.attribution",
    "DirectionScope": "tlscopes.core.scopes",
    "FeatureAttribution": "tlscopes.results.feature_attribution",
    "FeatureScope": "tlscopes.sae.feature_scope",
    "FisherScope": "tlscopes.core.scopes",
    "GenerationAttribution": "tlscopes.results.generation_attribution",
    "LayerAttribution": "tlscopes.results.layer_attribution",
    "SAE": "tlscopes.sae.model",
    "Scope": "tlscopes.core.scopes",
    "SemanticScope": "tlscopes.core.scopes",
    "TemperatureScope": "tlscopes.core.scopes",
    "attribute": "tlscopes.core.engine",
    "attribute_features": "tlscopes.sae.features",
    "attribute_generation": "tlscopes.generation.attribution",
    "attribute_layers": "tlscopes.core.layers",
    "attribute_many": "tlscopes.core.engine",
    "attribution_matrix": "tlscopes.core.matrix",
    "contrast_direction": "tlscopes.core.scopes",
    "fisher_directions": "tlscopes.fisher.directions",
    "fisher_matrix": "tlscopes.fisher.directions",
    "load_model": "tlscopes.models.loading",
    "load_sae": "tlscopes.sae.formats",
    "prepare_inputs": "tlscopes.core.inputs",
    "scope_from_name": "tlscopes.core.scopes",
    "token_string": "tlscopes.tokens",
    "token_strings": "tlscopes.tokens",
    "weight_processing": "tlscopes.models.facts",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
