"""tlscopes: Jacobian Scopes (arXiv 2601.16407) for TransformerLens models.

The public names below are imported on first use, so that ``import tlscopes.cli`` (and
``tlscopes --help``) does not pay for importing torch and TransformerLens.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlscopes.attribute import attribute, attribute_many, prepare_inputs
    from tlscopes.fisher import fisher_directions, fisher_matrix
    from tlscopes.generation import GenerationAttribution, attribute_generation
    from tlscopes.layers import LayerAttribution, attribute_layers
    from tlscopes.models import load_model, weight_processing
    from tlscopes.results import Attribution
    from tlscopes.scopes import (
        DirectionScope,
        FisherScope,
        Scope,
        SemanticScope,
        TemperatureScope,
        contrast_direction,
    )
    from tlscopes.tokens import token_string, token_strings

# Each public name and the module that defines it.
_HOMES = {
    "Attribution": "tlscopes.results",
    "DirectionScope": "tlscopes.scopes",
    "FisherScope": "tlscopes.scopes",
    "Scope": "tlscopes.scopes",
    "SemanticScope": "tlscopes.scopes",
    "TemperatureScope": "tlscopes.scopes",
    "attribute": "tlscopes.attribute",
    "attribute_many": "tlscopes.attribute",
    "attribute_generation": "tlscopes.generation",
    "GenerationAttribution": "tlscopes.generation",
    "attribute_layers": "tlscopes.layers",
    "LayerAttribution": "tlscopes.layers",
    "contrast_direction": "tlscopes.scopes",
    "fisher_directions": "tlscopes.fisher",
    "fisher_matrix": "tlscopes.fisher",
    "load_model": "tlscopes.models",
    "prepare_inputs": "tlscopes.attribute",
    "token_string": "tlscopes.tokens",
    "token_strings": "tlscopes.tokens",
    "weight_processing": "tlscopes.models",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        # Submodules (``tlscopes.scopes``, ``tlscopes.hooks``, ...) stay reachable as attributes,
        # as they were when this package imported them eagerly.
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'tlscopes' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps a public function when the import system binds a same-named submodule.

    ``tlscopes.attribute`` is both a function (the public API) and a module (the engine).
    Importing the module makes Python set the package attribute to the module; eager imports
    used to rebind it to the function right after, and this keeps that meaning with lazy ones.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            self.__dict__.pop(name, None)  # resolved again, as the function, by __getattr__
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
