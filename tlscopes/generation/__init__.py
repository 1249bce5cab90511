"""Explaining every step of a generated continuation.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.generation.attribution import attribute_generation
    from tlscopes.generation.decoding import Sampler, generate_ids

_HOMES = {
    "attribute_generation": "tlscopes.generation.attribution",
    "Sampler": "tlscopes.generation.decoding",
    "generate_ids": "tlscopes.generation.decoding",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
