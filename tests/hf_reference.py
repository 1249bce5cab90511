"""Scores computed on a Hugging Face model alone (no TransformerLens): the architecture matrix's
reference.

Each score is ||v^T J_t|| with J_t = dy/dx_t from a full Jacobian (torch.func.jacrev through the
Hugging Face forward pass, eager attention), y the decoder's final-norm output at the explained
position, and x_t = x_scale * E[token_t], E the model's embedding table. `x_scale` says where
the caller's x_t sits: 1 is the table row itself, sqrt(d_model) is Gemma's scaled embedding
(what Hugging Face feeds its first layer). The model's own embedding scale is undone and
re-applied explicitly, so the Jacobian is taken with respect to exactly that x.

The reference is the model as Hugging Face computes it: its eager attention takes the softmax in
float32 and its rotary tables are float32, so a float64 model is exact to ~1e-7 relative, not
to float64 precision. The matrix compares at 1e-6.

Under final-logit soft-capping (capped logits c tanh(z / c), z = W_U^T y pre-cap):

* Semantic and Input x Gradient differentiate the pre-cap logit z_target = w_target^T y;
* Fisher uses the Fisher information of the capped distribution p with respect to y:
  F = A^T (diag p - p p^T) A with A = d(capped logits)/dy = diag(1 - tanh^2(z / c)) W_U^T,
  formed explicitly;
* Temperature keeps v = y / ||y||.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import jacrev

# Families whose Hugging Face embedding module multiplies the table rows by sqrt(d_model).
SCALED_EMBEDDING_TYPES = ("gemma", "gemma2", "gemma3", "gemma3_text")


def hf_embedding_scale(hf_model: Any) -> float:
    """The factor Hugging Face applies to embedding-table rows before the first layer."""
    config = hf_model.config
    if config.model_type in SCALED_EMBEDDING_TYPES:
        # Hugging Face keeps the scale as a float32 tensor, so a float64 model multiplies by
        # sqrt(d_model) rounded to float32 (about 1e-8 relative off); use the same number.
        return float(torch.tensor(math.sqrt(config.hidden_size), dtype=torch.float32))
    return 1.0


def final_logit_cap(hf_model: Any) -> float | None:
    cap = getattr(hf_model.config, "final_logit_softcapping", None)
    return float(cap) if cap is not None and cap > 0 else None


@dataclass(frozen=True)
class Reference:
    """One prompt's exact quantities.

    Attributes:
        x: the token embeddings x_t [pos, d_model] (x_scale times the table rows).
        y: the final-norm output at the explained position [d_model].
        jacobian: dy/dx [d_model, pos, d_model].
        logits: pre-cap logits z = W_U^T y [d_vocab].
        capped_logits: what the model outputs (z where nothing caps) [d_vocab].
        W_U: the unembedding [d_model, d_vocab].
        cap: the final-logit soft-cap c, or None.
    """

    x: Tensor
    y: Tensor
    jacobian: Tensor
    logits: Tensor
    capped_logits: Tensor
    W_U: Tensor
    cap: float | None

    def scores(self, vectors: Tensor, weights: Tensor | None = None) -> Tensor:
        """sqrt(sum_r w_r ||v_r^T J_t||^2) per token, vectors [d_model, r]."""
        projected = torch.einsum("dr,dte->rte", vectors, self.jacobian)
        squared = projected.pow(2).sum(-1)  # [r, pos]
        if weights is None:
            weights = torch.ones(vectors.shape[1], dtype=squared.dtype)
        return (weights[:, None] * squared).sum(0).sqrt()

    def semantic(self, target: int) -> Tensor:
        return self.scores(self.W_U[:, target : target + 1])

    def input_x_gradient(self, target: int) -> Tensor:
        gradient = torch.einsum("d,dte->te", self.W_U[:, target], self.jacobian)
        return (self.x * gradient).norm(dim=-1)

    def temperature(self) -> Tensor:
        return self.scores((self.y / self.y.norm())[:, None])

    def direction(self, vector: Tensor) -> Tensor:
        return self.scores(vector[:, None].to(self.y.dtype))

    def fisher_matrix(self) -> Tensor:
        """F = A^T (diag p - p p^T) A, A = d(capped logits)/dy [d_vocab, d_model]."""
        p = torch.softmax(self.capped_logits, dim=-1)
        A = self.W_U.T
        if self.cap is not None:
            A = (1 - torch.tanh(self.logits / self.cap) ** 2)[:, None] * A
        pA = p @ A
        return A.T @ (p[:, None] * A) - torch.outer(pA, pA)

    def fisher(self, rank: int) -> Tensor:
        values, vectors = torch.linalg.eigh(self.fisher_matrix())
        values, vectors = values.flip(0)[:rank], vectors.flip(1)[:, :rank]
        # Rank 1 is the plain ||u_1^T J_t|| (paper eq. 6); rank r weights by lambda_i (eq. 18).
        return self.scores(vectors, None if rank == 1 else values.clamp_min(0))


def reference(hf_model: Any, tokens: Tensor, position: int, x_scale: float) -> Reference:
    """Exact quantities for one prompt `tokens` [pos] at `position`, x_t = x_scale * E[token_t].

    Runs the model's decoder with eager attention; its own embedding module is bypassed
    (inputs_embeds), so its embedding scale is applied here explicitly.
    """
    hf_model.eval()
    hf_model.set_attn_implementation("eager")
    decoder = hf_model.base_model
    table = hf_model.get_input_embeddings().weight.detach()
    rows = table[tokens]
    to_hf_input = hf_embedding_scale(hf_model) / x_scale

    def final_state(x: Tensor) -> Tensor:
        output = decoder(inputs_embeds=(x * to_hf_input)[None], use_cache=False)
        return output.last_hidden_state[0, position]

    x = x_scale * rows
    with torch.no_grad():
        y = final_state(x)
        W_U = hf_model.get_output_embeddings().weight.detach().T
        logits = y @ W_U
        bias = getattr(hf_model.get_output_embeddings(), "bias", None)
        if bias is not None:
            logits = logits + bias
        cap = final_logit_cap(hf_model)
        capped = logits if cap is None else cap * torch.tanh(logits / cap)
        # The reference's logits must be the model's own: checks the final norm, W_U and cap.
        own = hf_model(input_ids=tokens[None], use_cache=False).logits[0, position]
        torch.testing.assert_close(capped, own, rtol=1e-10, atol=1e-10)
    jacobian = jacrev(final_state)(x)
    return Reference(x, y, jacobian, logits, capped, W_U, cap)
