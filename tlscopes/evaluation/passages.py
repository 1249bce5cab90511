"""Passages as the AOPC evaluation sees them: the input, the target, the ablatable context.

The target is a passage's last token and the explained position the one before it; the
context is every input position except a BOS (never ablated, never counted), or every input
position with ``bos=False`` (the authors' protocol, :mod:`tlscopes.evaluation.authors_protocol`). A passage
is a string or, on a model without a tokenizer, token ids; without a tokenizer the first id is a
BOS only if ``model.cfg.bos_token_id`` names it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tlscopes.models.facts import context_length
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import bos_token_id


@dataclass(frozen=True)
class Passage:
    """A passage as the evaluation sees it.

    Attributes:
        tokens: the input, every token but the last [1, pos].
        target_id: the last token, whose log-probability is measured.
        context: the positions that may be ablated (all input positions but a BOS) [n_context].
    """

    tokens: Tensor
    target_id: int
    context: Tensor

    @property
    def position(self) -> int:
        return self.tokens.shape[1] - 1


class UnusablePassage(ValueError):
    """A passage the evaluation cannot use: fewer than two tokens besides BOS (there must be a
    target and at least one context token), or longer than the model's context.
    :func:`run_evaluation` records it in ``skipped.csv`` and goes on."""


def has_bos(model: TransformerLensModel, tokens: Tensor) -> bool:
    """Whether the first token of `tokens` [1, pos] is the model's BOS (:func:`bos_token_id`)."""
    bos = bos_token_id(model)
    return bos is not None and tokens.shape[1] > 0 and int(tokens[0, 0]) == bos


PassageInput = str | Sequence[int] | Tensor


def passage_tokens(model: TransformerLensModel, text: PassageInput, *, bos: bool = True) -> Tensor:
    """[1, pos] token ids: a string tokenized with the model's BOS convention (none if `bos` is
    False), or ids as given ([pos] or [1, pos]; nothing is prepended to ids)."""
    if isinstance(text, str):
        if getattr(model, "tokenizer", None) is None:
            raise ValueError(
                f"passage {text[:40]!r} is text, but the model has no tokenizer (it was built "
                "from a config); pass each passage as token ids"
            )
        if not bos:
            return model.to_tokens(text, prepend_bos=False, truncate=False).cpu()
        return model.to_tokens(text, truncate=False).cpu()
    tokens = torch.as_tensor(text).cpu()
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"passage token ids must be integers, got dtype {tokens.dtype}")
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 1:
        raise ValueError(f"passage token ids must be [pos] or [1, pos], got {tuple(tokens.shape)}")
    return tokens.long()[None]


def describe_passage(text: PassageInput) -> str:
    if isinstance(text, str):
        return repr(text[:40])
    return f"token ids {torch.as_tensor(text).flatten()[:10].tolist()}"


def prepare_passage(
    model: TransformerLensModel, text: PassageInput, *, bos: bool = True
) -> Passage:
    """Splits off the target (the last token) of a passage given as text or token ids.

    With ``bos=False`` (the authors' protocol) no BOS is prepended to text and the first token
    is context even if it is the BOS id.

    Raises:
        UnusablePassage: fewer than two tokens besides BOS, or an input (every token but the
            last) longer than the model's context.
    """
    tokens = passage_tokens(model, text, bos=bos)
    start = 1 if bos and has_bos(model, tokens) else 0
    if tokens.shape[1] - start < 2:
        raise UnusablePassage(
            f"passage {describe_passage(text)} has {tokens.shape[1] - start} token(s) besides "
            "BOS; it needs at least two (context and target)"
        )
    inputs = tokens[:, :-1]
    if inputs.shape[1] > context_length(model):
        raise UnusablePassage(
            f"passage {describe_passage(text)} is {inputs.shape[1]} tokens before its target, "
            f"longer than the model's context of {context_length(model)} tokens"
        )
    context = torch.arange(start, inputs.shape[1])
    return Passage(inputs, int(tokens[0, -1]), context)


def passage_seed(seed: int, task: str, index: int) -> int:
    """The random method's seed for one passage: fixed by (seed, task, index)."""
    digest = hashlib.sha256(f"{seed}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:6], "little")


def text_hash(text: PassageInput) -> str:
    """A short hash naming a passage's text (or its token ids), to tell passages apart on resume."""
    if not isinstance(text, str):
        text = "token ids: " + " ".join(map(str, torch.as_tensor(text).flatten().tolist()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_order(passages: Mapping[str, Sequence[PassageInput]]) -> list[tuple[str, int]]:
    """(task, index) in the order a run computes them: tasks interleaved, passage 0 of each
    task, then passage 1, ...

    >>> run_order({"a": ["x", "y"], "b": ["z"]})
    [('a', 0), ('b', 0), ('a', 1)]
    """
    return [
        (task, index)
        for index in range(max((len(texts) for texts in passages.values()), default=0))
        for task, texts in passages.items()
        if index < len(texts)
    ]


__all__ = [
    "Passage",
    "PassageInput",
    "UnusablePassage",
    "describe_passage",
    "has_bos",
    "passage_seed",
    "passage_tokens",
    "prepare_passage",
    "run_order",
    "text_hash",
]
