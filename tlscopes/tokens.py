"""Token ids, their display strings and the special tokens, on models with or without a
tokenizer. This is the one home of the special token ids (BOS, EOS, pad).

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


def _special_id(model: TransformerLensModel, name: str) -> int | None:
    """One rule for every special token: the tokenizer's id; without a tokenizer, the id the
    model's config names (``cfg.default_prepend_bos`` says that a BOS would be prepended, not
    which id it is, so only an id counts)."""
    tokenizer = getattr(model, "tokenizer", None)
    source = tokenizer if tokenizer is not None else getattr(model, "cfg", None)
    value = getattr(source, name, None)
    return None if value is None else int(value)


def bos_token_id(model: TransformerLensModel) -> int | None:
    """The model's BOS token id, or None if it has none (see :func:`_special_id` for the rule)."""
    return _special_id(model, "bos_token_id")


def eos_token_id(model: TransformerLensModel) -> int | None:
    """The model's end-of-sequence id, or None if it has none."""
    return _special_id(model, "eos_token_id")


def pad_token_id(model: TransformerLensModel) -> int | None:
    """The model's pad token id, or None if it has none (SmolLM2's is its EOS)."""
    return _special_id(model, "pad_token_id")


def padding_id(model: TransformerLensModel) -> int:
    """The id that right-pads a batch: the pad token, else EOS, else 0. Any id works, since
    right padding never reaches an explained position of a causal model."""
    for value in (pad_token_id(model), eos_token_id(model)):
        if value is not None:
            return value
    return 0


def bos_positions(model: TransformerLensModel, tokens: Tensor) -> list[int]:
    """Positions of a prompt's token ids [pos] (or [1, pos]) that hold the BOS token."""
    bos = bos_token_id(model)
    if bos is None:
        return []
    return (tokens.reshape(-1) == bos).nonzero().flatten().tolist()
