"""The two hooks every attribution needs, and a guard that freezes parameters for its duration.

* At ``hook_embed`` the token embeddings are replaced by a leaf tensor that requires grad, so
  the backward pass ends at x_t (optionally after transforming them: zeroing for ablation,
  scaling along an Integrated Gradients path).
* At ``unembed.hook_in`` y is taken at the explained position of each prompt, and the forward
  pass is stopped: the unembedding over every position is never needed, only at the explained
  one, which the engine computes itself.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from tlscopes._types import Embeddings
from tlscopes.core.checkpointing import Recomputing, checkpointed_blocks
from tlscopes.models.facts import EMBED_HOOK, FINAL_STATE_HOOK
from tlscopes.models.fused_attention import fused_attention
from tlscopes.protocols import TransformerLensModel

EmbeddingTransform = Callable[[Embeddings], Embeddings]
# TransformerLens forward hooks: (hook point name, fn(tensor, *, hook) -> tensor | None).
HookList = list[tuple[str, Callable[..., Any]]]


class StopForward(Exception):
    """Raised by the final-state hook once y is captured; the engine catches it."""


class Capture:
    """Holds what the hooks capture during one forward pass.

    Args:
        positions: the explained positions [states]: y is taken at ``(rows[i], positions[i])``.
        transform: applied to the (detached) token embeddings before they become the leaf, e.g.
            to ablate or scale them; None keeps them as they are.
        stop: stop the forward pass at the unembedding once y is captured.
        rows: the batch row of each explained position [states]; None: row i for position i
            (one explained position per prompt). A row may appear several times (a matrix of
            positions in one prompt).
    """

    def __init__(
        self,
        positions: Tensor,
        transform: EmbeddingTransform | None = None,
        *,
        stop: bool = True,
        rows: Tensor | None = None,
    ) -> None:
        self.positions = positions
        self.rows = torch.arange(len(positions)) if rows is None else rows
        self.transform = transform
        self.stop = stop
        self.embeddings: Embeddings | None = None
        self.final_state: Tensor | None = None
        # Activations at internal hook points: taken at the explained positions (the explained
        # quantity of an internal DirectionScope), or whole (layer resolution).
        self.explained: dict[str, Tensor] = {}
        self.tapped: dict[str, Tensor] = {}
        self._explain_hooks: dict[str, Callable[..., Any]] = {}
        self._tap_hooks: dict[str, Callable[..., Any]] = {}

    def embed_hook(self, tensor: Tensor, *, hook: Any) -> Tensor:
        leaf = tensor.detach()
        if self.transform is not None:
            leaf = self.transform(leaf)
        leaf.requires_grad_(torch.is_grad_enabled())
        self.embeddings = leaf
        return leaf

    def final_state_hook(self, tensor: Tensor, *, hook: Any) -> Tensor:
        device = tensor.device
        self.final_state = tensor[self.rows.to(device), self.positions.to(device)]
        if self.stop:
            raise StopForward
        return tensor

    def explain_hook(self, name: str) -> Callable[..., Any]:
        """A hook keeping the activation at `name` at the explained positions, in the graph."""
        if name not in self._explain_hooks:

            def keep(tensor: Tensor, *, hook: Any) -> Tensor:
                device = tensor.device
                # The first value only: a checkpointed block's recomputation fires hooks again.
                taken = tensor[self.rows.to(device), self.positions.to(device)]
                self.explained.setdefault(name, taken)
                return tensor

            self._explain_hooks[name] = keep
        return self._explain_hooks[name]

    def tap_hook(self, name: str) -> Callable[..., Any]:
        """A hook keeping the whole activation at `name`, to differentiate with respect to."""
        if name not in self._tap_hooks:

            def keep(tensor: Tensor, *, hook: Any) -> Tensor:
                self.tapped.setdefault(name, tensor)  # the first value, as in explain_hook
                return tensor

            self._tap_hooks[name] = keep
        return self._tap_hooks[name]

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [(EMBED_HOOK, self.embed_hook), (FINAL_STATE_HOOK, self.final_state_hook)]


_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: TransformerLensModel) -> threading.RLock:
    """The one re-entrant lock of `model`, shared by every tlscopes call on it.

    Attribution attaches hooks to the model and flips its parameters' requires_grad flags, both
    of which are visible to every thread using the same model object. Holding this lock for a
    whole attribution serialises concurrent calls on one model (calls on different models still
    run in parallel), so no call sees another's hooks and the flags are restored exactly.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
        return lock


@contextlib.contextmanager
def frozen_parameters(model: TransformerLensModel) -> Iterator[None]:
    """Turns parameter gradients off and restores every requires_grad flag afterwards.

    Also holds the model's lock (:func:`model_lock`) and leaves any enclosing
    ``torch.inference_mode()``, under which no graph could be recorded.
    """
    with model_lock(model), torch.inference_mode(False), torch.enable_grad():
        yield from _frozen(model)


def _frozen(model: TransformerLensModel) -> Iterator[None]:
    # A TransformerBridge lists TransformerLens-style parameters; the wrapped Hugging Face
    # model's own parameters are what its forward pass uses, so take both, once each.
    found: dict[int, torch.nn.Parameter] = {}
    for module in (model, getattr(model, "original_model", None)):
        if module is not None:
            found.update((id(p), p) for p in module.parameters())
    parameters = list(found.values())
    flags = [p.requires_grad for p in parameters]
    try:
        for p in parameters:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)


def run_hooked(
    model: TransformerLensModel,
    tokens: Tensor,
    hooks: list[tuple[str, Callable[..., Any]]],
    *,
    grad: bool = True,
) -> None:
    """Runs the model with temporary hooks, until a hook stops it or the forward pass ends.

    Hooks are attached only inside ``model.hooks``, which removes them on every exit, so none
    stays attached after an error. A HookedTransformer's attention runs through the fused
    kernel where that is exact (:mod:`tlscopes.models.fused_attention`), also restored on every exit.

    Args:
        grad: record the graph (the embeddings leaf needs it); False runs under no_grad.
    """
    with hooked_forward(model, tokens, hooks, grad=grad):
        pass


@contextlib.contextmanager
def hooked_forward(
    model: TransformerLensModel,
    tokens: Tensor,
    hooks: list[tuple[str, Callable[..., Any]]],
    *,
    grad: bool = True,
    checkpoint: bool = False,
    recomputing: Recomputing | None = None,
) -> Iterator[None]:
    """Runs the forward pass as :func:`run_hooked` does and keeps its hooks and attention
    paths in place until the block ends, for backward passes that rerun parts of it.

    Args:
        grad: as in :func:`run_hooked`.
        checkpoint: run the blocks checkpointed and attention chunked
            (:func:`tlscopes.core.checkpointing.checkpointed_blocks`): memory linear in the
            length, one more forward pass through each block in the backward pass, which must
            run inside this block (recomputation needs the same hooks and attention). Without
            `grad` nothing is recomputed: attention is chunked and long MLPs run a chunk of
            positions at a time, so a forward pass alone forms no T x T tensor either.
        recomputing: the flag that checkpointing sets while it recomputes a block (for
            observers to skip); a fresh one if None.
    """
    blocks = checkpointed_blocks(model, recomputing) if checkpoint else contextlib.nullcontext()
    with (
        model_lock(model),
        torch.inference_mode(False),
        torch.set_grad_enabled(grad),
        model.hooks(fwd_hooks=hooks),
        blocks,
        fused_attention(model),
    ):
        try:
            model(tokens.clone())
        except StopForward:
            pass
        yield


def block_of(hook_name: str, n_layers: int) -> int:
    """The block a hook point belongs to: -1 before the blocks (embeddings), n_layers after."""
    match = re.match(r"blocks\.(\d+)\.", hook_name)
    if match:
        return int(match.group(1))
    if hook_name.startswith(("hook_embed", "hook_pos_embed", "embed.", "pos_embed.")):
        return -1
    return n_layers
