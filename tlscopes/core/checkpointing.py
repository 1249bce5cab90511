"""Activation checkpointing of the input-only backward pass: memory linear in the prompt's length.

Without it the forward pass keeps every layer's activations for the backward pass, and the
explicit attention of most families keeps head x T x T scores and patterns: at 8,192 tokens
SmolLM2-135M needed 11.6 GiB. With ``checkpoint=True`` the engine's forward pass

* runs each block under :func:`torch.utils.checkpoint.checkpoint` (non-reentrant), so only the
  residual stream entering each block is kept; the backward pass reruns one block at a time
  and frees it before the next;
* runs attention through :func:`tlscopes.models.chunked_attention.chunked_attention`: the fused
  kernel where it is exact, else the module's own arithmetic a query chunk at a time, each chunk
  recomputed in the backward pass, so no T x T tensor is kept.

The graph keeps its shape (only saved tensors are recomputed), so gradients with respect to
hook points inside blocks (layer and head resolution) come from the same passes. Hooks inside
a block fire again when the block is recomputed; the engine's own hooks keep the first value
they see, and read-only observers are skipped during recomputation (:func:`observer`).

The result equals the plain path's to floating-point rounding (checked to 1e-12 on float64
models of every family in the tests); the price is one more forward pass through each block.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint
from tqdm.auto import tqdm

from tlscopes.models.chunked_attention import chunked_attention, fused_attention_applies
from tlscopes.protocols import TransformerLensModel

Checkpoint = Literal["auto"] | bool

# "auto" checkpoints once the plain path's estimated memory passes this share of what is free.
AUTO_MEMORY_SHARE = 0.5
# Bytes the plain path keeps per token, layer and d_model (resp. d_mlp) unit, per dtype byte:
# fitted to SmolLM2-135M's measured curve (2,048 tokens: 2.9 GiB; 8,192: 11.6 GiB). Head x T x T
# tensors kept per explicit attention layer: fitted to Gemma-3-270M's.
_KEPT_PER_D_MODEL = 10
_KEPT_PER_D_MLP = 4
_KEPT_SCORES = 2


# Tokens per chunk of a block's MLP while checkpointing: the MLP acts on each position alone, so
# it runs a chunk at a time, each under its own checkpoint, once the prompt is longer than this.
# A recomputed block then keeps one chunk's d_mlp-wide activations at a time, not T of them.
MLP_CHUNK_TOKENS = 4096

# Keyword arguments by which Hugging Face decoder layers receive a KV cache.
_CACHE_ARGUMENTS = ("past_key_values", "past_key_value", "layer_past", "cache")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_free_heap() -> None:
    """Hands the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Called after each block a checkpointed pass runs or recomputes.

    A long prompt's attention runs hundreds of query chunks per block, and blocks smaller than
    glibc's mmap threshold come from its heap, where a few small objects that live on (the
    autograd graph's nodes) pin the freed pages around them: the process's resident memory
    grew with the number of chunks, not with what was alive. On a random model of
    Gemma-3-270M's width (6 layers, 4,096 tokens, 32 queries per chunk) trimming at each block
    took the resident peak above the loaded model from 0.54 to 0.40 GiB.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class BlockProgress:
    """A progress bar (stderr) of the blocks a checkpointed pass has run: each block once in the
    forward pass, then again in every backward pass, which recomputes it.

    The forward phase counts up to the model's blocks; :meth:`backward` switches to the backward
    phase once the number of backward passes is known (the forward pass may stop early, e.g. at
    an SAE's hook point, so only the blocks it ran are recomputed). Disabled, it does nothing.
    """

    def __init__(self, n_blocks: int, enabled: bool) -> None:
        self.enabled = enabled
        self.forward_blocks = 0
        self._bar: Any = None
        if enabled:
            self._bar = tqdm(total=n_blocks, desc="forward", unit="block", leave=False)

    def step(self) -> None:
        """One block run (forward) or recomputed (backward)."""
        if self._bar is None:
            return
        if self._bar.desc == "forward":
            self.forward_blocks += 1
        self._bar.update(1)

    def backward(self, passes: list[tuple[int, int]]) -> None:
        """The backward phase: for each explained quantity, (its backward passes, the last block
        that can influence it: n_blocks - 1 for y, L for a hook point in block L). Each pass
        recomputes the blocks up to that one that the forward pass ran."""
        if self._bar is None:
            return
        total = sum(count * min(self.forward_blocks, last + 1) for count, last in passes)
        n_passes = sum(count for count, _ in passes)
        self._bar.reset(total=max(1, total))
        self._bar.set_description(f"backward ({n_passes} pass{'es' if n_passes > 1 else ''})")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Recomputing:
    """Whether a checkpointed block is being recomputed (set only inside the backward pass).

    Also the context manager that checkpointing enters around each recomputation; reusable,
    since every backward pass through the same graph (one per direction) recomputes again.
    A :class:`BlockProgress` given here counts each block run and recomputed.
    """

    def __init__(self, progress: BlockProgress | None = None) -> None:
        self._depth = 0
        self.progress = progress

    @property
    def active(self) -> bool:
        return self._depth > 0

    def block_done(self) -> None:
        """A block finished its forward pass or its recomputation: its free heap is handed back
        (:func:`release_free_heap`) and the progress bar steps."""
        release_free_heap()
        if self.progress is not None:
            self.progress.step()

    def __enter__(self) -> Recomputing:
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.block_done()


def observer(fn: Callable[..., Any], recomputing: Recomputing) -> Callable[..., Any]:
    """A read-only hook run once per forward pass: skipped while a block is recomputed, and run
    without recording a graph (so recomputation saves exactly what the forward pass saved)."""

    @functools.wraps(fn)
    def hook(tensor: Any, *, hook: Any) -> None:
        if recomputing.active:
            return None
        with torch.no_grad():
            fn(tensor.detach() if isinstance(tensor, torch.Tensor) else tensor, hook=hook)
        return None

    return hook


def _hooked(module: torch.nn.Module) -> bool:
    """Whether a hook is attached to a hook point inside `module` (it would see chunks)."""
    return any(
        type(child).__name__ == "HookPoint" and (child._forward_hooks or child._backward_hooks)
        for child in module.modules()
    )


def _token_chunked(mlp: torch.nn.Module, original: Callable[..., Any]) -> Callable[..., Any]:
    """`mlp`'s forward run MLP_CHUNK_TOKENS positions at a time, each chunk checkpointed, where
    that is the same computation: a [batch, pos, d_model] input alone, gradients on, a prompt
    longer than one chunk, and no hook inside the MLP."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if (
            not isinstance(x, torch.Tensor)
            or x.ndim != 3
            or x.shape[1] <= MLP_CHUNK_TOKENS
            or not torch.is_grad_enabled()
            or _hooked(mlp)
        ):
            return original(*args, **kwargs)
        parts = [
            torch_checkpoint(
                original, x[:, lo : lo + MLP_CHUNK_TOKENS].contiguous(), use_reentrant=False
            )
            for lo in range(0, x.shape[1], MLP_CHUNK_TOKENS)
        ]
        return torch.cat(parts, dim=1)

    return forward


@contextlib.contextmanager
def checkpointed_blocks(
    model: TransformerLensModel, recomputing: Recomputing | None = None
) -> Iterator[int]:
    """Runs each block of `model` under a non-reentrant checkpoint, attention chunked, and the
    MLP of a long prompt a chunk of positions at a time (:data:`MLP_CHUNK_TOKENS`).

    Yields the number of blocks switched. Every block's, attention module's and MLP's own
    ``forward`` is restored on exit, also after an error.
    """
    recomputing = recomputing or Recomputing()

    def contexts() -> tuple[contextlib.AbstractContextManager, Recomputing]:
        return contextlib.nullcontext(), recomputing

    switched = []
    mlps = []
    with chunked_attention(model):
        try:
            for block in getattr(model, "blocks", []):
                if "forward" in block.__dict__:
                    continue
                mlp = getattr(block, "mlp", None)
                if isinstance(mlp, torch.nn.Module) and "forward" not in mlp.__dict__:
                    object.__setattr__(mlp, "forward", _token_chunked(mlp, mlp.forward))
                    mlps.append(mlp)
                original = block.forward

                def forward(*args: Any, original: Any = original, **kwargs: Any) -> Any:
                    if not torch.is_grad_enabled():
                        return original(*args, **kwargs)
                    # A KV cache would grow again when the block is recomputed; one forward
                    # pass over the whole prompt never reads it.
                    for name in _CACHE_ARGUMENTS:
                        if kwargs.get(name) is not None:
                            kwargs[name] = None
                    output = torch_checkpoint(
                        original, *args, use_reentrant=False, context_fn=contexts, **kwargs
                    )
                    recomputing.block_done()
                    return output

                # Straight into the instance dict: bridge components route attribute writes.
                object.__setattr__(block, "forward", forward)
                switched.append(block)
            yield len(switched)
        finally:
            for module in switched + mlps:
                object.__delattr__(module, "forward")


def plain_path_bytes(model: TransformerLensModel, n_tokens: int) -> int:
    """An estimate of the memory the plain (not checkpointed) path keeps for `n_tokens` tokens.

    Every layer keeps a few d_model- and d_mlp-wide activations per token; each layer whose
    attention runs explicitly (not the fused kernel) also keeps about two head x T x T tensors.
    The constants are fitted to measured peaks (SmolLM2-135M, fused: 5.9 GiB above the model at
    4,096 tokens; Gemma-3-270M, explicit: 4.6 GiB at 2,048).
    """
    cfg = model.cfg
    itemsize = torch.empty((), dtype=cfg.dtype).element_size()
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * cfg.d_model)
    per_token = cfg.n_layers * (_KEPT_PER_D_MODEL * cfg.d_model + _KEPT_PER_D_MLP * d_mlp)
    explicit = sum(not fused_attention_applies(model, block.attn) for block in model.blocks)
    quadratic = _KEPT_SCORES * explicit * cfg.n_heads * n_tokens * n_tokens
    return int((n_tokens * per_token + quadratic) * itemsize)


def available_bytes(device: torch.device) -> int:
    """Free memory where the activations live: the accelerator's, or the host's."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 0


def resolve_checkpoint(checkpoint: Checkpoint, model: TransformerLensModel, n_tokens: int) -> bool:
    """Whether to checkpoint: `checkpoint` itself if a bool; for ``"auto"``, once the plain
    path's estimated memory (:func:`plain_path_bytes`) passes ``AUTO_MEMORY_SHARE`` of the free
    memory (:func:`available_bytes`), so short prompts keep the plain, faster path.

    Raises:
        ValueError: for anything but ``"auto"``, True or False.
    """
    if isinstance(checkpoint, bool):
        return checkpoint
    if checkpoint != "auto":
        raise ValueError(f'checkpoint must be "auto", True or False, got {checkpoint!r}')
    device = model.W_U.device
    free = available_bytes(device)
    return free > 0 and plain_path_bytes(model, n_tokens) > AUTO_MEMORY_SHARE * free


__all__ = [
    "AUTO_MEMORY_SHARE",
    "BlockProgress",
    "Checkpoint",
    "MLP_CHUNK_TOKENS",
    "Recomputing",
    "available_bytes",
    "checkpointed_blocks",
    "observer",
    "plain_path_bytes",
    "resolve_checkpoint",
]
