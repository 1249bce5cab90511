"""Structural types: the TransformerLens model surface tlscopes uses, and what the views read
of a result.

Both ``HookedTransformer`` (TransformerLens 3.x) and ``TransformerBridge`` (3.x and 4.x)
satisfy :class:`TransformerLensModel` (tested); anything else that does can be attributed too.
A model built from a config alone has ``tokenizer = None``, which tlscopes handles (tokens
shown as ``<id>``).

The views (:mod:`tlscopes.views`) take :class:`AttributionLike`, :class:`LayerAttributionLike`,
:class:`GenerationAttributionLike` and :class:`FeatureAttributionLike` and know no result class,
so that results can call their views without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class TransformerLensModel(Protocol):
    """What tlscopes reads and calls on a model.

    Attributes:
        cfg: the TransformerLens config (d_model, d_vocab, n_layers, n_ctx, model_name, ...).
        tokenizer: a Hugging Face tokenizer, or None for a model built from a config.
        W_U: the unembedding [d_model, d_vocab]; ``b_U`` [d_vocab] where the model has one.
        hook_dict: every hook point by name.
    """

    cfg: Any
    tokenizer: Any
    hook_dict: dict[str, Any]

    @property
    def W_U(self) -> Tensor: ...

    def __call__(self, tokens: Tensor, *args: Any, **kwargs: Any) -> Any: ...

    def hooks(self, fwd_hooks: Any = ..., *args: Any, **kwargs: Any) -> AbstractContextManager[Any]:
        """Attaches hooks for the duration of a ``with`` block (TransformerLens' own)."""
        ...

    def to_tokens(self, text: Any, *args: Any, **kwargs: Any) -> Tensor: ...

    def to_str_tokens(self, tokens: Any, *args: Any, **kwargs: Any) -> Any: ...

    def to_single_str_token(self, token_id: int) -> str: ...

    def parameters(self, recurse: bool = True) -> Iterator[Any]: ...


__all__ = ["TransformerLensModel"]


class AttributionLike(Protocol):
    """What a view reads of an Attribution (:class:`tlscopes.results.Attribution`)."""

    scores: Tensor
    tokens: list[list[str]]
    token_ids: Tensor
    positions: Tensor
    method: str
    top_token_ids: Tensor
    top_tokens: list[list[str]]
    top_probs: Tensor
    target_ids: Tensor | None
    target_probs: Tensor | None
    target_tokens: list[str] | None
    details: dict[str, Any]
    model_name: str
    info: dict[str, Any]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> AttributionLike: ...


class LayerAttributionLike(Protocol):
    """What a view reads of a LayerAttribution: scores [batch, layer, pos], optional
    head_scores [batch, layer, head_index, pos] and the input-token result."""

    scores: Tensor
    head_scores: Tensor | None
    inputs: AttributionLike

    @property
    def tokens(self) -> list[list[str]]: ...

    @property
    def positions(self) -> Tensor: ...

    @property
    def n_layers(self) -> int: ...


class GenerationAttributionLike(Protocol):
    """What a view reads of a GenerationAttribution: per prompt and generated step, the scores
    over the sequence, the generated token, its probability, the entropy and beta_eff."""

    scores: Tensor
    tokens: list[list[str]]
    token_ids: Tensor
    positions: Tensor
    method: str
    prompt_lengths: Tensor
    generated_lengths: Tensor
    generated_tokens: list[list[str]]
    probs: Tensor
    entropy: Tensor
    beta_eff: Tensor
    top_tokens: list[list[list[str]]]
    top_probs: Tensor
    model_name: str
    info: dict[str, Any]

    def __len__(self) -> int: ...


class FeatureAttributionLike(Protocol):
    """What a view reads of a FeatureAttribution: scores [feature, pos] for SAE features at one
    explained position, the features' ids, pre-activations and activations there, the sink
    positions the views leave out and the SAE's description."""

    scores: Tensor
    features: Tensor
    pre_activations: Tensor
    activations: Tensor
    tokens: list[str]
    position: int
    hook: str
    sink_positions: list[int]
    include_bos: bool
    sae: dict[str, Any]

    @property
    def fires(self) -> Tensor: ...

    def __len__(self) -> int: ...
