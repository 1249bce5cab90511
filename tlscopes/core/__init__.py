"""The engine: scopes, hooks, one forward pass and input-only backward passes, layers.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.core.engine import (
        ScopeGradients,
        attribute,
        attribute_many,
        final_logits,
        scope_gradients,
    )
    from tlscopes.core.inputs import PreparedInputs, prepare_inputs
    from tlscopes.core.layers import attribute_layers
    from tlscopes.core.matrix import attribution_matrix
    from tlscopes.core.scopes import (
        SCOPE_NAMES,
        DirectionScope,
        FisherScope,
        Scope,
        SemanticScope,
        TemperatureScope,
        contrast_direction,
        scope_from_name,
    )

_HOMES = {
    "attribute": "tlscopes.core.engine",
    "attribute_many": "tlscopes.core.engine",
    "scope_gradients": "tlscopes.core.engine",
    "ScopeGradients": "tlscopes.core.engine",
    "final_logits": "tlscopes.core.engine",
    "prepare_inputs": "tlscopes.core.inputs",
    "PreparedInputs": "tlscopes.core.inputs",
    "Scope": "tlscopes.core.scopes",
    "SemanticScope": "tlscopes.core.scopes",
    "FisherScope": "tlscopes.core.scopes",
    "TemperatureScope": "tlscopes.core.scopes",
    "DirectionScope": "tlscopes.core.scopes",
    "contrast_direction": "tlscopes.core.scopes",
    "scope_from_name": "tlscopes.core.scopes",
    "SCOPE_NAMES": "tlscopes.core.scopes",
    "attribute_layers": "tlscopes.core.layers",
    "attribution_matrix": "tlscopes.core.matrix",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
