"""tlscopes: Jacobian Scopes (arXiv 2601.16407) for TransformerLens models."""

from tlscopes.attribute import attribute, attribute_many, prepare_inputs
from tlscopes.fisher import fisher_directions, fisher_matrix
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

__all__ = [
    "Attribution",
    "DirectionScope",
    "FisherScope",
    "Scope",
    "SemanticScope",
    "TemperatureScope",
    "attribute",
    "attribute_many",
    "contrast_direction",
    "fisher_directions",
    "fisher_matrix",
    "load_model",
    "prepare_inputs",
    "token_string",
    "token_strings",
    "weight_processing",
]
