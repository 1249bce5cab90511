"""Jacobian Scopes: each scope picks directions v in hidden space and returns the hooks it needs.

A scope's influence score for input token t is ||v^T J_t||_2 with J_t = dy/dx_t (paper eq. 1),
where y is the final norm's output at the explained position (weight and bias included) and
x_t the token embedding at position t. The engine in :mod:`tlscopes.core.engine` runs one forward
pass with the scope's hooks, asks the scope for its directions given y, and pulls all of them
back through that one recorded graph (input-only backward passes, several directions per vmapped
pass when the input is short). Directions are constants in the backward pass (the paper
differentiates v^T y with v fixed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from tlscopes._types import Directions, DirectionWeights, HiddenStates, Logits
from tlscopes.core.hooks import Capture, HookList
from tlscopes.fisher.directions import fisher_directions
from tlscopes.models.facts import WeightProcessing, logit_softcap, unembedding
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import require_tokenizer, token_strings


@dataclass(frozen=True)
class ScopeInputs:
    """What a scope may look at to choose its directions (all detached from the graph).

    Attributes:
        final_state: y at the explained position of each prompt [batch, d_model].
        logits: y W_U + b_U at that position [batch, d_vocab] (soft-capped where the model caps).
        W_U: unembedding [d_model, d_vocab].
        model: the model, for tokenizer look-ups.
        explained: activations at internal hook points at the explained positions, by hook
            name [batch, d] (for scopes that explain an internal quantity).
    """

    final_state: HiddenStates
    logits: Logits
    W_U: Float[Tensor, "d_model d_vocab"]
    model: TransformerLensModel
    explained: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class ScopeDirections:
    """Directions to pull back and how to combine them into one score per token.

    The score is sqrt(sum_r weights[b, r] * ||vectors[b, r]^T J_t||^2); with one direction and
    weight 1 that is ||v^T J_t||.

    Attributes:
        vectors: [batch, rank, d_model].
        weights: [batch, rank], non-negative.
        target_ids: the target token per prompt [batch], for scopes that attribute one.
        details: per-scope record kept in the result (eigenvalues, beta_eff, ...).
    """

    vectors: Directions
    weights: DirectionWeights
    target_ids: Tensor | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Scope:
    """Base of all scopes. Subclasses are frozen dataclasses that implement `directions`."""

    name: ClassVar[str]
    # Which weight processing leaves this scope's scores unchanged (see `check_model`).
    invariant_to_folded_norm: ClassVar[bool] = False
    invariant_to_centered_unembed: ClassVar[bool] = True

    @property
    def explained_hook(self) -> str | None:
        """The hook point whose activation this scope explains; None: y, the final norm's output."""
        return None

    def hooks(self, capture: Capture) -> HookList:
        """The TransformerLens hooks this scope needs: the embedding patch and the y capture."""
        return capture.hooks()

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        raise NotImplementedError

    def check_model(self, processing: WeightProcessing) -> None:
        """Refuses models whose weight processing would silently change this scope's scores."""
        if processing.folded_final_norm and not self.invariant_to_folded_norm:
            raise ValueError(
                f"{type(self).__name__} is defined on y, the final norm's output with its weight "
                "and bias, but this model's final norm weights were folded into W_U (fold_ln or "
                "TransformerLens 4.x compatibility mode), which changes y. Load the model without "
                "weight processing: tlscopes.load_model(...), "
                "HookedTransformer.from_pretrained_no_processing(...), or a TransformerBridge "
                "without enable_compatibility_mode()"
            )
        if processing.centered_unembed and not self.invariant_to_centered_unembed:
            raise ValueError(
                f"{type(self).__name__} attributes a single logit, but this model's W_U was "
                "centred over the vocabulary (center_unembed), which shifts every logit by the "
                "vocabulary mean. Load the model with center_unembed=False"
            )


def resolve_token(model: TransformerLensModel, target: int | str) -> int:
    """A token id from an id or from a string that the tokenizer keeps as exactly one token."""
    d_vocab = int(model.cfg.d_vocab)
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise TypeError(f"target must be a token id or a string, got {type(target).__name__}")
    if isinstance(target, int):
        if not 0 <= target < d_vocab:
            raise ValueError(f"target token id {target} is outside the vocabulary [0, {d_vocab})")
        return target
    if target == "":
        raise ValueError("target is an empty string; pass one token or a token id")
    require_tokenizer(model, f"target {target!r}")
    ids = model.to_tokens(target, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        pieces = token_strings(model, ids)
        raise ValueError(
            f"target {target!r} is {len(ids)} tokens {pieces}; pass one token or a token id"
        )
    return int(ids[0])


def resolve_targets(model: TransformerLensModel, target: Any, batch_size: int) -> Tensor:
    """One target id per prompt, from one target for all prompts or a sequence of them."""
    if isinstance(target, (int, str)) and not isinstance(target, bool):
        ids = [resolve_token(model, target)] * batch_size
    elif isinstance(target, Tensor) and target.ndim == 0:
        ids = [resolve_token(model, int(target))] * batch_size
    elif isinstance(target, (Sequence, Tensor)):
        items = target.tolist() if isinstance(target, Tensor) else list(target)
        if len(items) != batch_size:
            raise ValueError(f"got {len(items)} targets for {batch_size} prompts; pass one each")
        ids = [resolve_token(model, item) for item in items]
    else:
        raise TypeError(
            f"target must be a token id, a string or a sequence of them, got {target!r}"
        )
    return torch.tensor(ids, dtype=torch.long)


_FULL_PRECISION = (torch.float32, torch.float64)


def _softcap_slopes(inputs: ScopeInputs, W_U: Tensor) -> Tensor | None:
    """d(capped logit)/d(pre-cap logit) per prompt and token [batch, d_vocab], or None uncapped."""
    cap = logit_softcap(inputs.model)
    if cap is None:
        return None
    _, b_U = unembedding(inputs.model)
    pre_cap = inputs.final_state.to(W_U.dtype) @ W_U + b_U.detach().to(W_U.dtype)
    return 1.0 - torch.tanh(pre_cap / cap).pow(2)


def _unit_weights(vectors: Tensor) -> Tensor:
    return torch.ones(vectors.shape[:2], dtype=vectors.dtype, device=vectors.device)


@dataclass(frozen=True)
class SemanticScope(Scope):
    """Semantic Scope (paper eq. 3-4): v = w_target, the target token's column of W_U.

    The score ||w_target^T J_t|| is the gradient norm of the target logit z_target.

    Args:
        target: a token id, a string that is exactly one token, or a sequence with one of those
            per prompt; None attributes each prompt's top predicted token.
    """

    target: int | str | tuple[int | str, ...] | None = None
    name: ClassVar[str] = "semantic"
    invariant_to_folded_norm: ClassVar[bool] = True  # w'^T y' = w^T (y - b): same gradient
    invariant_to_centered_unembed: ClassVar[bool] = False

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        if self.target is None:
            ids = inputs.logits.argmax(dim=-1)
        else:
            ids = resolve_targets(inputs.model, self.target, inputs.final_state.shape[0])
        ids = ids.to(inputs.W_U.device)
        vectors = inputs.W_U[:, ids].T[:, None, :].to(inputs.final_state.dtype)
        return ScopeDirections(vectors, _unit_weights(vectors), target_ids=ids.cpu())


@dataclass(frozen=True)
class FisherScope(Scope):
    """Fisher Scope (paper eq. 5-6, appendix A.9).

    v = u_1, the top eigenvector of F = W_U^T (diag p - p p^T) W_U: the hidden-space direction
    along which y most changes the predicted distribution. Rank 1 scores ||u_1^T J_t|| (eq. 6);
    rank r > 1 scores sqrt(sum_i lambda_i ||u_i^T J_t||^2), the rank-r approximation of the
    total information tr(F_t) (eq. 18), with all r products from the same forward pass.

    Args:
        rank: how many leading Fisher eigenvectors to use.
    """

    rank: int = 1
    name: ClassVar[str] = "fisher"

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"FisherScope rank must be a positive integer, got {self.rank!r}")

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        d_model = inputs.W_U.shape[0]
        if self.rank > d_model:
            raise ValueError(f"FisherScope rank {self.rank} exceeds d_model={d_model}")
        # Half-precision models: p and F in float32, since a bfloat16 softmax does not sum to 1
        # within what the eigensolver can certify (scores are still pulled back in the
        # model's dtype).
        W_U = inputs.W_U if inputs.W_U.dtype in _FULL_PRECISION else inputs.W_U.float()
        probs = torch.softmax(inputs.logits.to(W_U.dtype), dim=-1)
        cap_slopes = _softcap_slopes(inputs, W_U)
        eigenvalues, vectors = [], []
        for index, row in enumerate(probs):
            # Under a final-logit soft-cap, p is the capped distribution and its Fisher
            # information with respect to y is J^T (diag p - p p^T) J with J = diag(s) W_U^T,
            # s = 1 - tanh^2(z / cap) the cap's slope at each pre-cap logit z.
            W = W_U if cap_slopes is None else W_U * cap_slopes[index]
            values, vecs = fisher_directions(W, row, rank=self.rank)
            eigenvalues.append(values)
            vectors.append(vecs.T)
        values = torch.stack(eigenvalues).to(inputs.final_state.dtype)
        stacked = torch.stack(vectors).to(inputs.final_state.dtype)
        # Rank 1 drops lambda_1, as the paper does: it is constant across positions.
        weights = _unit_weights(stacked) if self.rank == 1 else values.clamp_min(0)
        return ScopeDirections(stacked, weights, details={"eigenvalues": values.tolist()})


@dataclass(frozen=True)
class TemperatureScope(Scope):
    """Temperature Scope (paper eq. 7-8): v = y/||y||, so v^T y = ||y|| = beta_eff.

    The score attributes the effective inverse temperature, which sets the predictive spread.
    """

    name: ClassVar[str] = "temperature"

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        y = inputs.final_state
        norms = y.norm(dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("TemperatureScope needs y != 0, but the final state is exactly zero")
        vectors = (y / norms)[:, None, :]
        return ScopeDirections(
            vectors, _unit_weights(vectors), details={"beta_eff": norms[:, 0].tolist()}
        )


@dataclass(frozen=True)
class LogProbScope(Scope):
    """The gradient of log p(target) at the explained position: v = W_U (e_target - p).

    Exact for the first derivative, since d log p_target / dy = W_U (e_target - p) (times the
    soft-cap's slope per logit where the model caps), p the prediction at the same input. The
    score ||v^T J_t|| is the norm of the cross-entropy gradient (their signs differ; norms do
    not). Input x Gradient and Integrated Gradients use it for their ``log_prob`` objective,
    as the authors' benchmark script does.

    Args:
        target: one token id per prompt (or one for all).
    """

    target: int | tuple[int, ...]
    name: ClassVar[str] = "log_prob"
    invariant_to_folded_norm: ClassVar[bool] = True  # a gradient of logits, as Semantic Scope

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        ids = resolve_targets(inputs.model, self.target, inputs.final_state.shape[0])
        W_U = inputs.W_U.to(inputs.final_state.dtype)
        ids = ids.to(W_U.device)
        probs = torch.softmax(inputs.logits.to(W_U.dtype), dim=-1)
        slopes = _softcap_slopes(inputs, W_U)
        coefficients = -probs
        coefficients[torch.arange(len(ids)), ids] += 1.0
        if slopes is not None:
            coefficients = coefficients * slopes.to(W_U.dtype)
        vectors = (coefficients @ W_U.T)[:, None, :]
        return ScopeDirections(vectors, _unit_weights(vectors), target_ids=ids.cpu())


@dataclass(frozen=True)
class DirectionScope(Scope):
    """Any fixed direction v (the paper's general vector-Jacobian framework).

    By default the explained quantity is v^T y, y the final norm's output: e.g. a contrast
    w_a - w_b between two tokens' unembedding columns. With ``at`` it is v^T h, h the activation
    at that TransformerLens hook point at the explained position (an SAE feature's encoder
    direction, a linear probe, a steering vector at ``blocks.8.hook_resid_post``). The vector is
    used as given (not normalised), so scores scale with its norm.

    Args:
        vector: [d], or [batch, d] with one direction per prompt; d is d_model for y, else the
            hook point's last axis.
        label: a name for the direction, kept in the result.
        at: a hook point name (``model.hook_dict``), taken before the unembedding; None: y.
    """

    vector: Tensor
    label: str = "direction"
    at: str | None = None
    name: ClassVar[str] = "direction"

    def __post_init__(self) -> None:
        if not isinstance(self.vector, Tensor) or self.vector.ndim not in (1, 2):
            raise ValueError("DirectionScope vector must be a tensor [d] or [batch, d]")
        if not bool(torch.isfinite(self.vector).all()):
            raise ValueError("DirectionScope vector has non-finite entries")
        if self.at is not None and (not isinstance(self.at, str) or not self.at):
            raise ValueError(
                f"DirectionScope at must be a hook point name or None, got {self.at!r}"
            )

    @property
    def explained_hook(self) -> str | None:
        return self.at

    def hooks(self, capture: Capture) -> HookList:
        extra = [] if self.at is None else [(self.at, capture.explain_hook(self.at))]
        return capture.hooks() + extra

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        h = inputs.final_state if self.at is None else inputs.explained[self.at]
        where = "the model's d_model" if self.at is None else f"{self.at}'s last axis"
        if h.ndim != 2:
            raise ValueError(
                f"DirectionScope at={self.at!r}: that hook point's activation at one position has "
                f"shape {tuple(h.shape[1:])}; pick one of shape [d] (e.g. a residual stream hook)"
            )
        vector = self.vector.to(device=h.device, dtype=h.dtype)
        if vector.shape[-1] != h.shape[-1]:
            raise ValueError(
                f"DirectionScope vector has {vector.shape[-1]} entries; {where} is {h.shape[-1]}"
            )
        if vector.ndim == 1:
            vector = vector.expand(h.shape[0], -1)
        elif vector.shape[0] != h.shape[0]:
            raise ValueError(
                f"DirectionScope has {vector.shape[0]} vectors for {h.shape[0]} prompts"
            )
        vectors = vector[:, None, :]
        details = {"label": self.label} if self.at is None else {"label": self.label, "at": self.at}
        return ScopeDirections(vectors, _unit_weights(vectors), details=details)


def contrast_direction(
    model: TransformerLensModel, token_a: int | str, token_b: int | str
) -> Tensor:
    """w_a - w_b: the direction that raises token a's logit against token b's."""
    a, b = resolve_token(model, token_a), resolve_token(model, token_b)
    return (model.W_U[:, a] - model.W_U[:, b]).detach()


# The scopes that can be named on the command line, in the app and the explorer, in that order.
SCOPE_NAMES = ("fisher", "temperature", "semantic")


def scope_from_name(
    name: str | Scope, *, target: int | str | None = None, rank: int | None = None
) -> Scope:
    """The scope called `name` ("fisher", "temperature" or "semantic"); a Scope passes through.

    Args:
        name: one of :data:`SCOPE_NAMES`, or a Scope, returned as it is.
        target: the semantic scope's target (a token id or a one-token string); None explains
            each prompt's top prediction. Refused for the other scopes.
        rank: the Fisher scope's rank (default 1). Refused for the other scopes.
    """
    if isinstance(name, Scope):
        return name
    if name not in SCOPE_NAMES:
        raise ValueError(
            f"unknown scope {name!r}; choose from {', '.join(SCOPE_NAMES)} or pass a Scope"
        )
    if target is not None and name != "semantic":
        raise ValueError(f"a target is for the semantic scope, not {name}; leave it out")
    if rank is not None and name != "fisher":
        raise ValueError(f"a rank is for the Fisher scope, not {name}; leave it out")
    if name == "fisher":
        return FisherScope(rank=1 if rank is None else rank)
    if name == "temperature":
        return TemperatureScope()
    return SemanticScope(target)
