"""Generating token ids for :func:`tlscopes.generation.attribution.attribute_generation`: greedy, or
sampling that a seed makes reproducible, with plain forward passes (the engine's forward pass
alone, stopped at y) and no cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tlscopes.core.checkpointing import Checkpoint
from tlscopes.core.engine import scope_gradients
from tlscopes.core.inputs import PreparedInputs
from tlscopes.protocols import TransformerLensModel

__all__ = ["Sampler", "generate_ids"]


@dataclass(frozen=True)
class Sampler:
    """How the next token is chosen from the logits: greedy, or seeded sampling.

    Sampling draws from softmax(logits / temperature) restricted to the top_k most likely
    tokens (all tokens when top_k is None). Every prompt has its own torch.Generator seeded
    with `seed`, so a prompt's continuation does not depend on the other prompts in the batch.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
            raise TypeError(f"temperature must be a number, got {self.temperature!r}")
        if not self.temperature > 0 or self.temperature == float("inf"):
            raise ValueError(f"temperature must be positive and finite, got {self.temperature}")
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise ValueError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if not self.do_sample and (self.temperature != 1.0 or self.top_k is not None):
            raise ValueError(
                "temperature and top_k shape sampling, but do_sample is False (greedy); pass "
                "do_sample=True to sample, or leave them at their defaults"
            )

    def generators(self, batch: int) -> list[torch.Generator] | None:
        if not self.do_sample:
            return None
        return [torch.Generator().manual_seed(self.seed) for _ in range(batch)]

    def choose(
        self, logits: Tensor, rows: Tensor, generators: list[torch.Generator] | None
    ) -> Tensor:
        """The next token id of each prompt in `rows` from its logits [rows, d_vocab]."""
        if generators is None:
            return logits.argmax(dim=-1).cpu()
        scaled = logits.detach().double().cpu() / self.temperature
        if self.top_k is not None and self.top_k < scaled.shape[-1]:
            kept = scaled.topk(self.top_k, dim=-1)
            scaled = torch.full_like(scaled, -torch.inf).scatter(-1, kept.indices, kept.values)
        probs = torch.softmax(scaled, dim=-1)
        chosen = [
            torch.multinomial(probs[i], 1, generator=generators[int(row)])
            for i, row in enumerate(rows)
        ]
        return torch.cat(chosen)


def generate_ids(
    model: TransformerLensModel,
    prepared: PreparedInputs,
    *,
    max_new_tokens: int,
    sampler: Sampler,
    eos_id: int | None,
    pad_id: int,
    checkpoint: Checkpoint = "auto",
) -> tuple[Tensor, Tensor]:
    """Continues each prompt of a right-padded batch, one plain forward pass per step.

    Each step runs the prompts still generating (over their longest text so far, right-padded,
    which a causal model never sees at a real token) and reads the logits at each one's last
    token. A prompt stops after generating `eos_id` (None: never). `checkpoint` as in the
    engine: a long prompt's steps run with chunked attention (no T x T tensor).

    Returns:
        The generated ids [batch, max_new_tokens] (`pad_id` after a prompt stopped) and how
        many each prompt generated [batch].
    """
    batch = prepared.tokens.shape[0]
    lengths = prepared.lengths.clone()
    text = torch.full((batch, int(lengths.max()) + max_new_tokens), pad_id, dtype=torch.long)
    for index, length in enumerate(lengths.tolist()):
        text[index, :length] = prepared.tokens[index, :length]
    generated = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long)
    counts = torch.zeros(batch, dtype=torch.long)
    active = torch.ones(batch, dtype=torch.bool)
    generators = sampler.generators(batch)
    for step in range(max_new_tokens):
        rows = active.nonzero().flatten()
        if len(rows) == 0:
            break
        current = lengths[rows] + step  # every active prompt has generated `step` tokens
        tokens = text[rows, : int(current.max())]
        # No scopes: the engine's forward pass alone, stopped at y, with the logits there.
        logits = scope_gradients(
            model, tokens, [], positions=current - 1, checkpoint=checkpoint
        ).logits
        chosen = sampler.choose(logits, rows, generators)
        text[rows, current] = chosen
        generated[rows, step] = chosen
        counts[rows] += 1
        if eos_id is not None:
            active[rows[chosen == eos_id]] = False
    return generated, counts
