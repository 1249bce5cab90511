"""The Fisher information of the next-token distribution and its top eigenvectors.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.fisher.directions import fisher_directions, fisher_directions_exact, fisher_matrix

_HOMES = {
    "fisher_matrix": "tlscopes.fisher.directions",
    "fisher_directions": "tlscopes.fisher.directions",
    "fisher_directions_exact": "tlscopes.fisher.directions",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
