"""The Integrated Gradients path integrand, token by token (paper appendix A.6, figure 15).

IG with the null baseline integrates grad z(X~(alpha)) over X~(alpha) = alpha X, alpha in
[0, 1] (eq. 13). For each alpha on a grid this module computes the token-wise norm
||grad_{x_t} z(X~(alpha))||_2, the quantity figure 15 plots. At alpha = 1 it is the gradient
of z at the real input: the Semantic Scope score (eq. 4, 11). Near alpha = 0 the input is
almost the null sequence, far from anything the model saw in training; the paper reports
that there the gradient is large and piles up on the first tokens (attention sinks).

All alphas run as one batch (chunked by `batch_size`): one forward and one backward pass per
chunk, through the engine (:func:`tlscopes.methods.baselines.prompt_gradients`) with an embedding transform that
scales row k by alpha_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tlscopes.core.inputs import PreparedInputs, prepare_inputs
from tlscopes.core.scopes import SemanticScope
from tlscopes.methods.baselines import prompt_gradients, scaled_by, scaled_forward
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import token_string, token_strings

# Dense near 0, where the paper finds the integrand changes most; 1.0 is the real input.
DEFAULT_ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class PathIntegrand:
    """Token-wise norms of the IG integrand along the straight path from the null input.

    Attributes:
        alphas: the path points [n_alpha].
        norms: ||grad_{x_t} z(alpha X)||_2 [n_alpha, pos] (0 after the explained position).
        tokens: the prompt's token strings.
        token_ids: its token ids [pos].
        position: the explained position.
        target_id: the token whose logit z is differentiated.
        target: its string.
    """

    alphas: Tensor
    norms: Tensor
    tokens: list[str]
    token_ids: Tensor
    position: int
    target_id: int
    target: str

    def early_share(self, n_early: int) -> Tensor:
        """The share of each alpha's total norm that falls on the first `n_early` tokens."""
        norms = self.norms[:, : self.position + 1].double()
        return norms[:, :n_early].sum(dim=1) / norms.sum(dim=1)

    def centre_of_mass(self) -> Tensor:
        """Each alpha's norm-weighted mean position, scaled to [0, 1] (0: the first token, 1: the
        explained one); 0.5 for norms spread evenly, lower when early tokens dominate."""
        norms = self.norms[:, : self.position + 1].double()
        positions = torch.linspace(0, 1, norms.shape[1], dtype=torch.float64)
        return (norms * positions).sum(dim=1) / norms.sum(dim=1)


def path_integrand(
    model: TransformerLensModel,
    text: str | Tensor,
    *,
    target: int | str | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    position: int = -1,
    batch_size: int = 16,
) -> PathIntegrand:
    """||grad_{x_t} z_target(alpha X)||_2 for every token and every alpha.

    Args:
        text: one prompt (with the model's BOS convention; BOS is scaled too, as in the paper).
        target: the token whose logit z is explained; None takes the top prediction at
            alpha = 1 (the real input), the same target for every alpha.
        alphas: path points in (0, 1].
        batch_size: path points per forward/backward pass.
    """
    alpha_tensor = torch.as_tensor(list(alphas), dtype=torch.float64)
    if alpha_tensor.ndim != 1 or len(alpha_tensor) == 0:
        raise ValueError("alphas must be a non-empty sequence of floats")
    if bool((alpha_tensor <= 0).any() | (alpha_tensor > 1).any()):
        raise ValueError(f"alphas must lie in (0, 1], got {alpha_tensor.tolist()}")
    prepared = prepare_inputs(model, text, position)
    if prepared.tokens.shape[0] != 1:
        raise ValueError("path_integrand explains one prompt; pass a single string")
    if target is None:
        target = int(scaled_forward(model, prepared).logits[0].argmax())
    scope = SemanticScope(target)
    parts, target_id = [], None
    for chunk in alpha_tensor.split(batch_size):
        rows = len(chunk)
        batch = PreparedInputs(
            prepared.tokens.expand(rows, -1),
            prepared.lengths.expand(rows),
            prepared.positions.expand(rows),
        )
        result = prompt_gradients(model, batch, [scope], transform=scaled_by(chunk))
        parts.append(result.gradients[0][:, 0].norm(dim=-1).cpu())
        target_id = int(result.directions[0].target_ids[0])
    tokens = token_strings(model, prepared.tokens[0])
    return PathIntegrand(
        alphas=alpha_tensor,
        norms=torch.cat(parts),
        tokens=tokens,
        token_ids=prepared.tokens[0].cpu(),
        position=int(prepared.positions[0]),
        target_id=int(target_id),
        target=token_string(model, int(target_id)),
    )


__all__ = ["DEFAULT_ALPHAS", "PathIntegrand", "path_integrand"]
