"""The exact references the tests check against (they live in :mod:`tlscopes.testing.reference`)."""

from tlscopes.testing.reference import (
    activation_jacobian,
    activation_of,
    embeddings_of,
    exact_jacobian,
    final_state_fn,
    fisher_eig,
    scores_for,
)

__all__ = [
    "activation_jacobian",
    "activation_of",
    "embeddings_of",
    "exact_jacobian",
    "final_state_fn",
    "fisher_eig",
    "scores_for",
]
