"""Loading TransformerLens models and the facts tlscopes reads from them.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.models.facts import (
        WeightProcessing,
        bridge_class,
        context_length,
        hooked_transformer_class,
        is_bridge,
        logit_softcap,
        unembedding,
        weight_processing,
    )
    from tlscopes.models.loading import load_model
    from tlscopes.models.packaged import PackagedModel, packaged_model_dir

_HOMES = {
    "load_model": "tlscopes.models.loading",
    "WeightProcessing": "tlscopes.models.facts",
    "weight_processing": "tlscopes.models.facts",
    "unembedding": "tlscopes.models.facts",
    "context_length": "tlscopes.models.facts",
    "logit_softcap": "tlscopes.models.facts",
    "is_bridge": "tlscopes.models.facts",
    "bridge_class": "tlscopes.models.facts",
    "hooked_transformer_class": "tlscopes.models.facts",
    "PackagedModel": "tlscopes.models.packaged",
    "packaged_model_dir": "tlscopes.models.packaged",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
