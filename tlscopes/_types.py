"""Tensor shape aliases used across tlscopes, named with TransformerLens' dimension names."""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

TokenScores = Float[Tensor, "batch pos"]
Tokens = Int[Tensor, "batch pos"]
Embeddings = Float[Tensor, "batch pos d_model"]
HiddenStates = Float[Tensor, "batch d_model"]
Directions = Float[Tensor, "batch rank d_model"]
DirectionWeights = Float[Tensor, "batch rank"]
Logits = Float[Tensor, "batch d_vocab"]
Unembedding = Float[Tensor, "d_model d_vocab"]
UnembeddingBias = Float[Tensor, "d_vocab"]
Probabilities = Float[Tensor, "d_vocab"]
