"""Faithfulness measures beside AOPC, from the same ablation batches where possible.

- **Filler ablation** (``--ablation filler``): an ablated token's input embedding is replaced
  by a filler token's embedding instead of zeros, so the passage keeps its length and every
  position holds a real token. The filler is the tokenizer's pad token when it is neither BOS
  nor EOS (Gemma-3: ``<pad>``), else a single space when that is one token (SmolLM2, whose pad
  token is its EOS ``<|im_end|>``), or a token given by the caller; BOS and EOS are refused.
- **ERASER comprehensiveness and sufficiency** (DeYoung et al. 2020), in their AOPC form over
  the same fractions k as AOPC, in probabilities of the measured token (the ground-truth target
  under the paper protocol, the top-1 prediction under the authors'):
  comprehensiveness = mean_k [p(x) - p(x without its top-k tokens)] (higher is better: the
  chosen tokens were needed; the removal sets are exactly AOPC's),
  sufficiency = mean_k [p(x) - p(only the top-k tokens kept)] (lower is better: they suffice;
  every other context token is ablated, BOS never).
- **Leave-one-out agreement**: each context token is ablated alone and the KL divergence
  KL(p(x) || p(x without t)) of the whole next-token distribution is its importance; a method's
  agreement is Spearman's rho and Kendall's tau-b between its scores and these KLs over the
  context (:mod:`tlscopes.evaluation.statistics`). It costs one sequence per context token, so it runs on
  the first ``loo_limit`` passages of each task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tlscopes.evaluation.statistics import kendall_tau_b, spearman
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import (
    bos_token_id,
    check_token_ids,
    eos_token_id,
    pad_token_id,
    require_tokenizer,
)

ABLATIONS = ("zero", "filler")


class _Captured(Exception):
    """Stops a forward pass once the embedding has been captured."""


def filler_token_id(model: TransformerLensModel, token: int | str | None = None) -> int:
    """The filler token: `token` if given, else the pad token if it is neither BOS nor EOS, else
    a single space if that is one token. BOS and EOS are refused."""
    tokenizer = getattr(model, "tokenizer", None)
    special = {bos_token_id(model), eos_token_id(model)} - {None}
    if token is None:
        pad = pad_token_id(model)
        if pad is not None and pad not in special:
            return int(pad)
        if tokenizer is None:
            raise ValueError("this model has no tokenizer; pass the filler token as an id")
        ids = model.to_tokens(" ", prepend_bos=False)[0].tolist()
        if len(ids) != 1:
            raise ValueError("the pad token is BOS or EOS and ' ' is not one token; pass a filler")
        token = int(ids[0])
    if isinstance(token, str):
        require_tokenizer(model, f"filler {token!r}")
        ids = model.to_tokens(token, prepend_bos=False)[0].tolist()
        if len(ids) != 1:
            raise ValueError(f"filler {token!r} is {len(ids)} tokens; pass one token")
        token = int(ids[0])
    if isinstance(token, bool) or not hasattr(token, "__index__"):
        raise TypeError(f"the filler token must be an int id or one token of text, got {token!r}")
    token = int(token)
    check_token_ids(torch.tensor([token]), int(model.cfg.d_vocab), "the filler token")
    if token in special:
        raise ValueError(f"filler token {token} is the model's BOS or EOS; choose another token")
    return token


def filler_embedding(model: TransformerLensModel, token_id: int) -> Tensor:
    """What ``hook_embed`` outputs for `token_id` [d_model] (a one-token pass, stopped there)."""
    captured: dict[str, Tensor] = {}

    def take(tensor: Tensor, *, hook: Any) -> Tensor:
        captured["x"] = tensor[0, 0].detach().clone()
        raise _Captured

    tokens = torch.tensor([[token_id]], device=model.W_U.device)
    with torch.no_grad(), model.hooks(fwd_hooks=[("hook_embed", take)]):
        try:
            model(tokens)
        except _Captured:
            pass
    return captured["x"]


def keep_only(context: Tensor, kept: Sequence[int]) -> tuple[int, ...]:
    """The ablation set that keeps only `kept` of the context (sufficiency's input)."""
    chosen = set(kept)
    return tuple(p for p in context.tolist() if p not in chosen)


def comprehensiveness(log_p: float, removed: Sequence[float]) -> float:
    """mean_k [p(x) - p(x without the top-k)], from log-probabilities."""
    p = torch.tensor([log_p, *removed], dtype=torch.float64).exp()
    return float((p[0] - p[1:]).mean())


def sufficiency(log_p: float, kept: Sequence[float]) -> float:
    """mean_k [p(x) - p(only the top-k kept)], from log-probabilities."""
    return comprehensiveness(log_p, kept)


def kl_divergences(reference: Tensor, ablated: Tensor) -> Tensor:
    """KL(p || q) for each row of `ablated` [n, d_vocab] against `reference` [d_vocab], both
    log-probabilities."""
    return (reference.exp() * (reference - ablated)).sum(dim=-1)


def loo_agreement(scores: Tensor, kls: Tensor) -> tuple[float, float]:
    """Spearman's rho and Kendall's tau-b between a method's context scores and the
    leave-one-out KLs (same order)."""
    x, y = scores.double().numpy(), kls.double().numpy()
    return spearman(x, y), kendall_tau_b(x, y)


__all__ = [
    "ABLATIONS",
    "comprehensiveness",
    "filler_embedding",
    "filler_token_id",
    "keep_only",
    "kl_divergences",
    "loo_agreement",
    "sufficiency",
]
