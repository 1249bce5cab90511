"""Token ids and their display strings, on models with or without a tokenizer.

A TransformerLens model built from a config (``HookedTransformer(cfg)``) has no tokenizer:
TransformerLens' own ``to_str_tokens`` then fails with a bare assertion. tlscopes takes token
ids on every model, and where there is no tokenizer shows a token by its id in angle brackets
(``<17>``), in results, tables, HTML and the command line. Text input on such a model is
refused with an error that says to pass token ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tlscopes.protocols import TransformerLensModel


def has_tokenizer(model: TransformerLensModel) -> bool:
    """Whether the model carries a tokenizer (TransformerLens sets None when built from a cfg)."""
    return getattr(model, "tokenizer", None) is not None


def id_token(token_id: int) -> str:
    """The display string of a token shown by id: ``<17>``."""
    return f"<{int(token_id)}>"


def token_strings(model: TransformerLensModel, token_ids: Tensor | Sequence[int]) -> list[str]:
    """One display string per token id: the tokenizer's, or ``<id>`` without a tokenizer.

    >>> token_strings(model, torch.tensor([5, 17]))  # doctest: +SKIP
    ['<5>', '<17>']
    """
    ids = token_ids.tolist() if isinstance(token_ids, Tensor) else list(token_ids)
    if not has_tokenizer(model):
        return [id_token(i) for i in ids]
    if not ids:
        return []
    return [str(t) for t in model.to_str_tokens(torch.tensor(ids, dtype=torch.long))]


def token_string(model: TransformerLensModel, token_id: int) -> str:
    """The display string of one token id (see :func:`token_strings`)."""
    if not has_tokenizer(model):
        return id_token(token_id)
    return str(model.to_single_str_token(int(token_id)))


def require_tokenizer(model: TransformerLensModel, what: str) -> None:
    """Raises a ValueError naming `what` needed text when the model has no tokenizer."""
    if not has_tokenizer(model):
        raise ValueError(
            f"{what} is text, but this model has no tokenizer (it was built from a config); "
            "pass token ids instead (an integer tensor [pos] or [batch, pos], or a token id)"
        )


def check_token_ids(tokens: Tensor, d_vocab: int, what: str = "token ids") -> None:
    """Refuses ids outside the vocabulary [0, d_vocab), naming the first bad one."""
    if tokens.numel() == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= d_vocab:
        bad = low if low < 0 else high
        where = (tokens == bad).nonzero()[0].tolist()
        raise ValueError(
            f"{what}: id {bad} (at index {where}) is outside the model's vocabulary of "
            f"{d_vocab} tokens (valid ids: 0 to {d_vocab - 1})"
        )
