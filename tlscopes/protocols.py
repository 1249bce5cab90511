"""The TransformerLens model surface tlscopes uses, as a :class:`typing.Protocol`.

Both ``HookedTransformer`` (TransformerLens 3.x) and ``TransformerBridge`` (3.x and 4.x)
satisfy it (tested); anything else that does can be attributed too. A model built from a
config alone has ``tokenizer = None``, which tlscopes handles (tokens shown as ``<id>``).
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
