"""Attribution methods by name: the scopes and the baselines (saliency, Input x Gradient, IG, random).

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.methods.baselines import (
        input_x_gradient,
        integrated_gradients,
        random_attribution,
        saliency,
    )
    from tlscopes.methods.registry import (
        METHODS,
        Method,
        attribute_by_name,
        attribute_methods,
        get_method,
        method_names,
    )

_HOMES = {
    "Method": "tlscopes.methods.registry",
    "METHODS": "tlscopes.methods.registry",
    "method_names": "tlscopes.methods.registry",
    "get_method": "tlscopes.methods.registry",
    "attribute_by_name": "tlscopes.methods.registry",
    "attribute_methods": "tlscopes.methods.registry",
    "saliency": "tlscopes.methods.baselines",
    "input_x_gradient": "tlscopes.methods.baselines",
    "integrated_gradients": "tlscopes.methods.baselines",
    "random_attribution": "tlscopes.methods.baselines",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
