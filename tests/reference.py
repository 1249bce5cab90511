"""The exact references the tests check against (they live in :mod:`tlscopes.reference`)."""

from tlscopes.reference import embeddings_of, exact_jacobian, final_state_fn, fisher_eig, scores_for

__all__ = ["embeddings_of", "exact_jacobian", "final_state_fn", "fisher_eig", "scores_for"]
