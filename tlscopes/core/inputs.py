"""Prompts into token ids: tokenizing, right-padding and resolving the explained positions.

Right padding is exact for causal models: pads come after every real token, so they never reach
an explained position, and positions are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tlscopes.models.facts import context_length
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import check_token_ids, padding_id, require_tokenizer

Inputs = str | Sequence[str] | Tensor


@dataclass(frozen=True)
class PreparedInputs:
    """Token ids of a right-padded batch, each prompt's length and its explained position."""

    tokens: Tensor
    lengths: Tensor
    positions: Tensor


def prepare_inputs(
    model: TransformerLensModel, inputs: Inputs, position: int = -1
) -> PreparedInputs:
    """Tokenizes (with the model's BOS convention) and right-pads; resolves `position` per prompt.

    Args:
        inputs: a string, a list of strings, or token ids [pos] or [batch, pos] (used as given).
        position: the position whose next-token prediction is explained. Negative counts from
            each prompt's last real token (-1: the last); non-negative is an absolute index.
    """
    # Tensors made here enter the recorded graph, so never as inference tensors, even when the
    # caller is inside torch.inference_mode().
    with torch.inference_mode(False):
        return _prepare_inputs(model, inputs, position)


def _prepare_inputs(model: TransformerLensModel, inputs: Inputs, position: int) -> PreparedInputs:
    if isinstance(inputs, Tensor):
        tokens = _token_tensor(inputs)
        check_token_ids(tokens, int(model.cfg.d_vocab))
        lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)
    else:
        if isinstance(inputs, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"inputs are {type(inputs).__name__}, not text; decode them first, e.g. "
                f"inputs.decode('utf-8')"
            )
        if not isinstance(inputs, (str, Sequence)):
            raise TypeError(
                f"inputs must be a string, a list of strings or a tensor of token ids, got "
                f"{type(inputs).__name__}"
            )
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise ValueError("inputs is an empty list; pass at least one prompt")
        require_tokenizer(model, "the input")
        rows = []
        for index, text in enumerate(texts):
            if isinstance(text, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"prompt {index} is {type(text).__name__}, not text; decode it first, e.g. "
                    f"prompt.decode('utf-8')"
                )
            if not isinstance(text, str):
                raise TypeError(f"prompt {index} is {type(text).__name__}, expected str")
            _check_encodable(text, index)
            if not text.strip():
                raise ValueError(f"prompt {index} is empty text; there is nothing to attribute")
            rows.append(model.to_tokens(text, truncate=False)[0].cpu())
        tokens, lengths = _right_pad(rows, padding_id(model))
    n_ctx = context_length(model)
    if tokens.shape[1] > n_ctx:
        longest = int(lengths.argmax())
        raise ValueError(
            f"prompt {longest} is {int(lengths[longest])} tokens, longer than the model's "
            f"context of {n_ctx} tokens; shorten it"
        )
    positions = _resolve_positions(position, lengths)
    return PreparedInputs(tokens, lengths, positions)


def _check_encodable(text: str, index: int) -> None:
    """Refuses lone surrogates, which no tokenizer can encode, naming where they are."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        character = text[error.start]
        raise ValueError(
            f"prompt {index} holds a lone surrogate {character!r} at character {error.start}, "
            f"which is not valid Unicode text; remove it, or decode the source with "
            f"errors='replace'"
        ) from None


def _token_tensor(tokens: Tensor) -> Tensor:
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise TypeError(f"token ids must be an integer tensor, got dtype {tokens.dtype}")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[1] == 0 or tokens.shape[0] == 0:
        raise ValueError(
            f"token ids must be [pos] or [batch, pos] and non-empty, got {tuple(tokens.shape)}"
        )
    # A copy, so ids made under torch.inference_mode() can enter the recorded graph.
    return tokens.detach().to("cpu", torch.long, copy=True)


def _right_pad(rows: list[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = row
    return tokens, lengths


def _resolve_positions(position: int, lengths: Tensor) -> Tensor:
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError(f"position must be an int, got {type(position).__name__}")
    resolved = lengths + position if position < 0 else torch.full_like(lengths, position)
    bad = ((resolved < 0) | (resolved >= lengths)).nonzero().flatten().tolist()
    if bad:
        index = bad[0]
        raise IndexError(
            f"position {position} is out of range for prompt {index} of {int(lengths[index])} "
            f"tokens (valid: {-int(lengths[index])} to {int(lengths[index]) - 1})"
        )
    return resolved
