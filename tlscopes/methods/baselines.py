"""Baselines the paper compares the scopes against (section 5, appendix A.1 and A.6).

* Saliency: ||dz_target/dx_t||_2, the plain gradient norm (equal to Semantic Scope, eq. 11).
* Input x Gradient (Shrikumar et al. 2017; paper eq. 10): ||x_t * dz_target/dx_t||_2.
* Integrated Gradients (Sundararajan et al. 2017; paper eq. 13-14): the straight path
  X(alpha) = X' + alpha (X - X') from a baseline X' (the paper's null baseline X' = 0 by
  default; a pad, BOS or EOS token's embedding at every position, or the mean token embedding:
  :data:`IG_BASELINES`), score ||IG_t||_2.
* Random: seeded uniform scores, a ranking that knows nothing about the model.

Input x Gradient and Integrated Gradients differentiate an *objective* of the target token:
``"logit"`` (the paper's text): z_target, the target's logit before any soft-cap,
w_target^T y + b_target, the quantity Semantic Scope differentiates (its gradient with respect
to x_t is w_target^T J_t); or ``"log_prob"`` (the authors' benchmark script): log p(target),
whose gradient with respect to y is W_U (e_target - p) (:class:`~tlscopes.core.scopes.LogProbScope`).
Each method declares the objectives it takes in the registry (:mod:`tlscopes.methods.registry`).
The target
is a token id or a one-token string per prompt; None explains each prompt's top prediction.
Every function returns the same :class:`~tlscopes.results.attribution.Attribution` as the scopes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from tlscopes.core.assemble import build_attribution
from tlscopes.core.engine import ScopeGradients, scope_gradients
from tlscopes.core.hooks import EmbeddingTransform
from tlscopes.core.inputs import Inputs, PreparedInputs, prepare_inputs
from tlscopes.core.scopes import LogProbScope, Scope, SemanticScope, resolve_targets
from tlscopes.models.facts import unembedding
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.attribution import Attribution
from tlscopes.tokens import bos_token_id, eos_token_id, pad_token_id

Target = int | str | Sequence[int | str] | Tensor | None

Objective = Literal["logit", "log_prob"]
OBJECTIVES: tuple[str, ...] = ("logit", "log_prob")

IntegratedGradientsBaseline = Literal["zero", "pad", "bos", "eos", "mean"]
IG_BASELINES: tuple[str, ...] = ("zero", "pad", "bos", "eos", "mean")

DEFAULT_N_STEPS = 100
DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of activations per batch of path points


def prompt_gradients(
    model: TransformerLensModel,
    prepared: PreparedInputs,
    scopes: Sequence[Scope],
    *,
    transform: EmbeddingTransform | None = None,
) -> ScopeGradients:
    """The engine (:func:`tlscopes.core.engine.scope_gradients`) at each prompt's explained
    position: its raw gradients, which Input x Gradient needs, not just their norms."""
    return scope_gradients(
        model, prepared.tokens, scopes, positions=prepared.positions, transform=transform
    )


def semantic_scope(target: Target) -> SemanticScope:
    """A SemanticScope for a target given as an id, a string, a sequence or a tensor of ids."""
    if isinstance(target, Tensor):
        target = int(target) if target.ndim == 0 else tuple(int(t) for t in target.tolist())
    elif isinstance(target, Sequence) and not isinstance(target, str):
        target = tuple(target)
    return SemanticScope(target)


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


def objective_scope(objective: Objective, target_ids: Tensor) -> Scope:
    """The scope whose gradient is the objective's: the target logit or its log-probability."""
    check_objective(objective)
    ids = tuple(int(t) for t in target_ids.reshape(-1).tolist())
    return SemanticScope(ids) if objective == "logit" else LogProbScope(ids)


def saliency(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Target = None,
    position: int = -1,
    top_k: int = 10,
) -> Attribution:
    """Plain gradient norm ||dz_target/dx_t||_2 (identical to Semantic Scope, paper eq. 11)."""
    prepared = prepare_inputs(model, inputs, position)
    result = prompt_gradients(model, prepared, [semantic_scope(target)])
    return build_attribution(
        model,
        prepared,
        result.scores(0),
        method="saliency",
        logits=result.logits,
        target_ids=result.directions[0].target_ids,
        details={},
        top_k=top_k,
        parameters={"position": position},
    )


def input_x_gradient_scores(embeddings: Tensor, gradient: Tensor) -> Tensor:
    """||x_t * g_t||_2 per token from embeddings and gradients [batch, pos, d_model]."""
    return (embeddings * gradient).norm(dim=-1)


def input_x_gradient(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Target = None,
    position: int = -1,
    top_k: int = 10,
    objective: Objective = "logit",
) -> Attribution:
    """Input x Gradient (paper eq. 10): ||x_t * df/dx_t||_2, x_t the token embedding and f the
    objective: the target's logit (``"logit"``, the paper) or its log-probability
    (``"log_prob"``, the authors' script)."""
    check_objective(objective)
    prepared = prepare_inputs(model, inputs, position)
    if objective == "logit":
        scope: Scope = semantic_scope(target)
    else:
        scope = objective_scope(objective, resolve_target_ids(model, target, prepared))
    result = prompt_gradients(model, prepared, [scope])
    scores = input_x_gradient_scores(result.embeddings, result.gradients[0][:, 0])
    return build_attribution(
        model,
        prepared,
        scores,
        method="input_x_gradient",
        logits=result.logits,
        target_ids=result.directions[0].target_ids,
        details={"differentiates": objective},
        top_k=top_k,
        parameters={"position": position, "objective": objective},
    )


def path_alphas(n_steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The midpoint rule's path points alpha_k = (k - 1/2) / n_steps, k = 1..n_steps."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    return (torch.arange(n_steps, dtype=dtype) + 0.5) / n_steps


def bytes_per_path_point(model: TransformerLensModel, n_positions: int) -> int:
    """A rough size of the activations one sequence keeps for its backward pass.

    Per layer and token: the residual stream and its norms, q/k/v/output and the MLP's hidden
    units (a few copies each for the nonlinearity and the norm), and the attention pattern.
    """
    cfg = model.cfg
    d_model = int(cfg.d_model)
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
    n_heads = int(getattr(cfg, "n_heads", 1))
    per_token = 16 * d_model + 4 * d_mlp + 3 * n_heads * n_positions
    element = torch.finfo(model.W_U.dtype).bits // 8
    return int(cfg.n_layers) * n_positions * per_token * element


def path_batch_size(model: TransformerLensModel, n_positions: int, memory_budget: int) -> int:
    """How many path points fit in `memory_budget` bytes of activations (at least one)."""
    return max(1, int(memory_budget) // bytes_per_path_point(model, n_positions))


def scaled_forward(
    model: TransformerLensModel, prepared: PreparedInputs, scale: float = 1.0
) -> ScopeGradients:
    """One forward pass, no graph, with the embeddings scaled by `scale` (for z(X) and z(0))."""
    return prompt_gradients(model, prepared, [], transform=lambda x: x * scale)


def target_logit(model: TransformerLensModel, state: ScopeGradients, target_ids: Tensor) -> Tensor:
    """z_target = w_target^T y + b_target (before any soft-cap) per prompt [batch]."""
    W_U, b_U = unembedding(model)
    ids = target_ids.to(W_U.device)
    values = (state.final_state * W_U[:, ids].T).sum(dim=-1) + b_U[ids]
    return values.detach().cpu()


def resolve_target_ids(
    model: TransformerLensModel,
    target: Target,
    prepared: PreparedInputs,
    logits: Tensor | None = None,
) -> Tensor:
    """Each prompt's target token id [batch]: `target` resolved, or where it is None each
    prompt's top prediction, from `logits` at the explained positions (a forward pass is run
    only when they are not given).

    >>> from tlscopes.testing.toy import build_bridge
    >>> model = build_bridge()
    >>> prepared = prepare_inputs(model, torch.tensor([[0, 5, 6]]), -1)
    >>> resolve_target_ids(model, 7, prepared).tolist()
    [7]
    """
    if target is not None:
        return resolve_targets(model, semantic_scope(target).target, len(prepared.lengths))
    if logits is None:
        logits = scaled_forward(model, prepared).logits
    return logits.argmax(dim=-1).cpu()


def scaled_by(scale: Tensor) -> EmbeddingTransform:
    """The transform that puts each batch row b at alpha_b X on the straight path (paper eq. 13).

    >>> scaled_by(torch.tensor([0.5, 1.0]))(torch.ones(2, 1, 1)).flatten().tolist()
    [0.5, 1.0]
    """

    def along_path(x: Tensor) -> Tensor:
        return x * scale.to(device=x.device, dtype=x.dtype)[:, None, None]

    return along_path


def along_path(scale: Tensor, baseline: Tensor | None = None) -> EmbeddingTransform:
    """The transform that puts batch row b at X'_b + alpha_b (X_b - X'_b) on the straight path
    (paper eq. 13); a None baseline is the null baseline, alpha_b X_b (:func:`scaled_by`).

    >>> along_path(torch.tensor([0.5]), torch.full((1, 1, 1), 2.0))(torch.ones(1, 1, 1)).item()
    1.5
    """
    if baseline is None:
        return scaled_by(scale)

    def to_path_point(x: Tensor) -> Tensor:
        start = baseline.to(device=x.device, dtype=x.dtype)
        alpha = scale.to(device=x.device, dtype=x.dtype)[:, None, None]
        return start + alpha * (x - start)

    return to_path_point


def path_gradient_sum(
    model: TransformerLensModel,
    prepared: PreparedInputs,
    scope_for: Callable[[Tensor], Scope],
    target_ids: Tensor,
    alphas: Tensor,
    weights: Tensor,
    batch_size: int,
    baseline: Tensor | None = None,
) -> Tensor:
    """sum_k weights_k grad_x f(X' + alpha_k (X - X')) for each prompt [n_prompts, pos,
    d_model]: the gradients along the straight path that Integrated Gradients averages (paper
    eq. 13).

    Every (prompt, path point) pair is one row of a batch; rows run `batch_size` at a time
    through the engine with the input moved to its path point (the gradient is taken there).
    `scope_for(ids)` gives the scope explaining a batch whose rows target `ids`. `baseline` is
    X' [n_prompts, pos, d_model]; None is the null baseline X' = 0.
    """
    n_prompts = prepared.tokens.shape[0]
    pairs = [(b, a) for b in range(n_prompts) for a in range(len(alphas))]
    summed: Tensor | None = None
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        rows = torch.tensor([b for b, _ in chunk])
        points = [a for _, a in chunk]
        chunk_inputs = PreparedInputs(
            prepared.tokens[rows], prepared.lengths[rows], prepared.positions[rows]
        )
        scope = scope_for(target_ids[rows])
        start_points = None if baseline is None else baseline[rows.to(baseline.device)]
        transform = along_path(alphas[points], start_points)
        result = prompt_gradients(model, chunk_inputs, [scope], transform=transform)
        grads = result.gradients[0][:, 0].cpu()
        grads = grads * weights[points].to(grads.dtype)[:, None, None]
        if summed is None:
            summed = torch.zeros((n_prompts, *grads.shape[1:]), dtype=grads.dtype)
        summed.index_add_(0, rows, grads)
    assert summed is not None
    return summed


class _EmbeddingTaken(Exception):
    """Stops a forward pass once ``hook_embed`` has been read."""


def token_embeddings(model: TransformerLensModel, token_ids: Tensor) -> Tensor:
    """What ``hook_embed`` outputs for each token id [n] -> [n, d_model]: the input embedding
    x_t the attribution differentiates (with any scaling the model applies there, e.g. Gemma's
    sqrt(d_model) where TransformerLens folds it into W_E). Each id runs as its own length-1
    sequence and the pass stops at ``hook_embed``."""
    taken: dict[str, Tensor] = {}

    def take(tensor: Tensor, *, hook: Any) -> Tensor:
        taken["x"] = tensor[:, 0].detach().clone()
        raise _EmbeddingTaken

    tokens = token_ids.reshape(-1, 1).to(model.W_U.device)
    with torch.no_grad(), model.hooks(fwd_hooks=[("hook_embed", take)]):
        try:
            model(tokens)
        except _EmbeddingTaken:
            pass
    return taken["x"]


def mean_token_embedding(model: TransformerLensModel, chunk: int = 8192) -> Tensor:
    """The mean of :func:`token_embeddings` over the whole vocabulary [d_model], accumulated in
    float64 over chunks of `chunk` ids."""
    d_vocab = int(model.cfg.d_vocab)
    total: Tensor | None = None
    for start in range(0, d_vocab, chunk):
        ids = torch.arange(start, min(d_vocab, start + chunk))
        part = token_embeddings(model, ids).double().sum(dim=0)
        total = part if total is None else total + part
    assert total is not None
    return total / d_vocab


_SPECIAL_IDS = {"pad": pad_token_id, "bos": bos_token_id, "eos": eos_token_id}


def check_ig_baseline(baseline: str) -> None:
    if baseline not in IG_BASELINES:
        raise ValueError(
            f"unknown Integrated Gradients baseline {baseline!r}; choose from "
            f"{', '.join(IG_BASELINES)}"
        )


def baseline_token_id(model: TransformerLensModel, baseline: str) -> int | None:
    """The token whose embedding a ``"pad"``, ``"bos"`` or ``"eos"`` baseline puts at every
    position (from :mod:`tlscopes.tokens`); None for ``"zero"`` and ``"mean"``. A model without
    that token raises, naming the baselines it can use."""
    check_ig_baseline(baseline)
    if baseline not in _SPECIAL_IDS:
        return None
    token = _SPECIAL_IDS[baseline](model)
    if token is None:
        raise ValueError(
            f"this model has no {baseline} token (its tokenizer and config name none), so the "
            f"Integrated Gradients baseline {baseline!r} is undefined; use zero or mean"
        )
    return token


def baseline_embeddings(
    model: TransformerLensModel, embeddings: Tensor, baseline: str
) -> Tensor | None:
    """Integrated Gradients' starting point X' shaped like `embeddings` [batch, pos, d_model]:
    None for ``"zero"`` (the null baseline), else the same vector at every position: the pad,
    BOS or EOS token's embedding (:func:`token_embeddings`), or the mean token embedding over
    the vocabulary (:func:`mean_token_embedding`)."""
    token = baseline_token_id(model, baseline)
    if baseline == "zero":
        return None
    if token is None:
        vector = mean_token_embedding(model)
    else:
        vector = token_embeddings(model, torch.tensor([token]))[0]
    vector = vector.to(device=embeddings.device, dtype=embeddings.dtype)
    return vector.expand(embeddings.shape).clone()


def integrated_gradients(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Target = None,
    position: int = -1,
    n_steps: int = DEFAULT_N_STEPS,
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    top_k: int = 10,
    objective: Objective = "logit",
    path_points: Sequence[float] | None = None,
    baseline: IntegratedGradientsBaseline = "zero",
) -> Attribution:
    """Integrated Gradients (paper eq. 13-14) on the straight path from a baseline X'.

    IG_t = (x_t - x'_t) * (1/n) sum_k dz_target/dx_t evaluated at X' + alpha_k (X - X'),
    alpha_k = (k - 1/2)/n: the midpoint Riemann sum of the integral in eq. 13 (exact as
    n_steps -> infinity; its error falls as 1/n_steps^2 for a smooth path). The score is
    ||IG_t||_2 (eq. 14). Every token, BOS included, starts at the baseline, as in the paper
    (where X' = 0).

    The null path is not smooth near alpha = 0 for RMSNorm models (Llama, SmolLM2):
    RMSNorm(alpha x) no longer depends on alpha once alpha |x| >> sqrt(eps), so z jumps within
    a tiny interval at the start of the path that a uniform grid does not resolve, and the
    completeness gap stays large (on SmolLM2 with 5 points, typically ~10 logits) until n_steps
    is very large. LayerNorm models with moderate eps converge as expected. A token or mean
    baseline avoids the jump at 0 but not every roughness: on SmolLM2-135M ("The capital of
    France is the city of" -> " Paris") z along the BOS-baseline path swings by ~20 logits
    within alpha steps of 0.04, and the gap with 16 or 64 points is still several to hundreds
    of logits for every baseline.

    Path points of all prompts are run in batches of `batch_size` sequences; by default as many
    as fit in `memory_budget` bytes of activations (:func:`path_batch_size`).

    Args:
        n_steps: path points (the paper's appendix uses 100; its AOPC table script used 5).
        objective: ``"logit"`` (z_target, the paper) or ``"log_prob"`` (log p(target)).
        path_points: the authors' script's variant instead of the midpoint rule: these alphas
            (it used 0.2, 0.4, ..., 1.0), with the gradient taken with respect to the embedding
            *before* it moves along the path, so each point's gradient carries a factor alpha:
            IG_t = (x_t - x'_t) * (1/n) sum_alpha alpha grad f(X' + alpha (X - X')). It is not a
            path integral's estimate, so no completeness check is reported. n_steps is then
            len(path_points).
        baseline: X' (:data:`IG_BASELINES`): ``"zero"`` (the paper), ``"pad"``, ``"bos"`` or
            ``"eos"`` (that token's ``hook_embed`` output at every position; ids from
            :mod:`tlscopes.tokens`), or ``"mean"`` (the mean ``hook_embed`` output over the
            vocabulary, at every position).

    Returns:
        An Attribution whose details hold n_steps, batch_size, the objective, the baseline, and
        (midpoint rule, logit objective) per prompt the completeness check: ig_sum (sum of IG
        over tokens and dimensions), logit_difference (z(X) - z(X')) and completeness_gap
        (their difference), which shrinks with n_steps.
    """
    check_objective(objective)
    check_ig_baseline(baseline)
    prepared = prepare_inputs(model, inputs, position)
    if path_points is None:
        alphas = path_alphas(n_steps)
        weights = torch.full((n_steps,), 1.0 / n_steps, dtype=torch.float64)
    else:
        alphas = torch.tensor([float(a) for a in path_points], dtype=torch.float64)
        if alphas.numel() == 0 or not bool(((alphas > 0) & (alphas <= 1)).all()):
            raise ValueError(f"path_points must be in (0, 1], got {list(path_points)}")
        n_steps = int(alphas.numel())
        weights = alphas / n_steps  # the chain rule of the gradient at the unscaled input
    full = scaled_forward(model, prepared)
    target_ids = resolve_target_ids(model, target, prepared, full.logits)
    start = baseline_embeddings(model, full.embeddings, baseline)
    n_prompts, n_positions = prepared.tokens.shape
    if batch_size is None:
        batch_size = path_batch_size(model, n_positions, memory_budget)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    mean = path_gradient_sum(
        model,
        prepared,
        lambda ids: objective_scope(objective, ids),
        target_ids,
        alphas,
        weights,
        batch_size,
        start,
    )
    difference_from_baseline = full.embeddings if start is None else full.embeddings - start
    ig = difference_from_baseline.cpu().to(mean.dtype) * mean
    details: dict[str, Any] = {
        "n_steps": n_steps,
        "batch_size": batch_size,
        "differentiates": objective,
        "baseline": baseline,
    }
    parameters: dict[str, Any] = {
        "n_steps": n_steps,
        "batch_size": batch_size,
        "position": position,
        "objective": objective,
        "baseline": baseline,
    }
    if baseline in _SPECIAL_IDS:
        details["baseline_token_id"] = baseline_token_id(model, baseline)
    if path_points is not None:
        details["alphas"] = parameters["path_points"] = alphas.tolist()
    elif objective == "logit":
        if start is None:
            null = scaled_forward(model, prepared, scale=0.0)
        else:
            null = prompt_gradients(model, prepared, [], transform=lambda x: start.to(x))
        difference = target_logit(model, full, target_ids) - target_logit(model, null, target_ids)
        difference = difference.double()
        ig_sum = ig.double().sum(dim=(1, 2))
        details["ig_sum"] = ig_sum.tolist()
        details["logit_difference"] = difference.tolist()
        details["completeness_gap"] = (ig_sum - difference).tolist()
    return build_attribution(
        model,
        prepared,
        ig.norm(dim=-1),
        method="integrated_gradients",
        logits=full.logits,
        target_ids=target_ids,
        details=details,
        top_k=top_k,
        parameters=parameters,
    )


def random_scores(lengths: Sequence[int], positions: Sequence[int], generator: Any) -> Tensor:
    """Uniform scores in (0, 1] up to each explained position, 0 after it [batch, max length]."""
    scores = torch.zeros((len(lengths), max(lengths)), dtype=torch.float64)
    for index, position in enumerate(positions):
        values = torch.rand(int(position) + 1, generator=generator, dtype=torch.float64)
        scores[index, : int(position) + 1] = 1.0 - values
    return scores


def random_attribution(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    seed: int = 0,
    position: int = -1,
    top_k: int = 10,
) -> Attribution:
    """A seeded random ranking (the paper's random-ablation baseline); same seed, same scores."""
    prepared = prepare_inputs(model, inputs, position)
    generator = torch.Generator().manual_seed(int(seed))
    scores = random_scores(prepared.lengths.tolist(), prepared.positions.tolist(), generator)
    logits = scaled_forward(model, prepared).logits
    return build_attribution(
        model,
        prepared,
        scores,
        method="random",
        logits=logits,
        target_ids=None,
        details={"seed": int(seed)},
        top_k=top_k,
        parameters={"seed": int(seed), "position": position},
    )


__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_N_STEPS",
    "IG_BASELINES",
    "IntegratedGradientsBaseline",
    "along_path",
    "baseline_embeddings",
    "baseline_token_id",
    "check_ig_baseline",
    "mean_token_embedding",
    "token_embeddings",
    "OBJECTIVES",
    "Objective",
    "check_objective",
    "objective_scope",
    "bytes_per_path_point",
    "input_x_gradient",
    "input_x_gradient_scores",
    "integrated_gradients",
    "path_alphas",
    "path_gradient_sum",
    "path_batch_size",
    "random_attribution",
    "random_scores",
    "resolve_target_ids",
    "saliency",
    "prompt_gradients",
    "semantic_scope",
    "scaled_by",
    "scaled_forward",
    "target_logit",
]
