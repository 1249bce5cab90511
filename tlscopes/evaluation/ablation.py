"""AOPC faithfulness evaluation (paper section 5, eq. 9; appendix A.1).

For each passage the target is its last token and the model explains the prediction at the
position before it (the input is every token but the last). The *context* is every input
position, the explained position's own token included, except a BOS token: BOS is never ablated
and never counted. For each ablation fraction k, the top ``n_k = max(1, floor(k * C + 1/2))``
context tokens by a method's score (C context tokens; ties go to the earlier position) have
their input embeddings replaced by zero vectors; positions, attention masks and everything else
are unchanged. Delta_k = log p_ablated(target) - log p(target), negative when ablation hurts.

AOPC is eq. 9 exactly as printed, with k in fractions (0.05, 0.10, 0.20):
AOPC = sum_i (k_{i+1} - k_i)(Delta_i + Delta_{i+1}) / 2, i.e. 0.15 x the trapezoid-weighted
mean of the Delta_k; it is not divided by the span of k. This is the reading that reproduces the
paper's magnitudes: zeroing whole input embeddings costs the target several nats (on
SmolLM2-135M, Delta_k is about -8 for the scopes and -2 for random), so the printed formula
gives about -1.2 and -0.3, as in the paper's Table 1, while the normalised mean would give
about -8. per_passage.csv keeps every raw Delta_k, so any other convention can be recomputed.

Per passage, all methods share their passes (:func:`tlscopes.methods.registry.attribute_methods`), and
every distinct ablation set (methods x fractions, deduplicated) plus the unablated input run
through the model as one batch. Passages: :mod:`tlscopes.evaluation.passages`; the authors' protocol:
:mod:`tlscopes.evaluation.authors_protocol`; measures beside AOPC: :mod:`tlscopes.evaluation.faithfulness`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tlscopes.evaluation.ablate import (
    ablation_outcomes,
)
from tlscopes.evaluation.aopc_arithmetic import (
    FRACTIONS,
    ablation_count,
    aopc,
    fraction_label,
    top_positions,
)
from tlscopes.evaluation.authors_protocol import (
    AUTHORS_ALPHAS,
    PROTOCOLS,
    authors_ablation_count,
    authors_candidates,
    method_options,
)
from tlscopes.evaluation.faithfulness import (
    ABLATIONS,
    comprehensiveness,
    filler_embedding,
    filler_token_id,
    keep_only,
    loo_agreement,
    sufficiency,
)
from tlscopes.evaluation.passages import (
    Passage,
    PassageInput,
    passage_seed,
    prepare_passage,
    text_hash,
)
from tlscopes.methods import baselines
from tlscopes.methods.registry import attribute_methods
from tlscopes.protocols import TransformerLensModel


@dataclass(frozen=True)
class Settings:
    """What a run's numbers depend on besides the model and the passages."""

    fractions: tuple[float, ...] = FRACTIONS
    n_steps: int = baselines.DEFAULT_N_STEPS
    seed: int = 0
    ig_batch_size: int | None = None
    memory_budget: int = baselines.DEFAULT_MEMORY_BUDGET
    protocol: str = "paper"
    ablation: str = "zero"
    filler_token_id: int | None = None
    eraser: bool = False
    loo_limit: int = 0
    ig_baseline: str = "zero"

    def __post_init__(self) -> None:
        baselines.check_ig_baseline(self.ig_baseline)
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        fractions = tuple(self.fractions)
        if len(fractions) < 2 or list(fractions) != sorted(set(fractions)):
            raise ValueError(f"fractions must be at least two increasing values, got {fractions}")
        for fraction in fractions:
            ablation_count(fraction, 1)

    def record(self) -> dict[str, Any]:
        """The settings a resumed run must share (batch sizes change nothing but speed). The
        paper protocol is not named (older run directories hold it); the authors' protocol
        records its name and its Integrated Gradients alphas instead of n_steps."""
        record: dict[str, Any] = {"fractions": list(self.fractions), "n_steps": self.n_steps}
        if self.protocol == "authors":
            record = {"protocol": "authors", "fractions": list(self.fractions)}
            record["ig_alphas"] = list(AUTHORS_ALPHAS)
        record["seed"] = self.seed
        if self.ablation != "zero":  # measures beside AOPC: named only when used
            record.update(ablation=self.ablation, filler_token_id=self.filler_token_id)
        if self.eraser:
            record["eraser"] = True
        if self.loo_limit:
            record["loo_limit"] = self.loo_limit
        if self.ig_baseline != "zero":  # named only when used, as older runs hold none
            record["ig_baseline"] = self.ig_baseline
        return record


def attribute_passages(
    model: TransformerLensModel,
    passages: Sequence[Passage],
    methods: Sequence[str],
    settings: Settings,
    seeds: Sequence[int],
) -> list[dict[str, Any]]:
    """Per passage, name -> Attribution of its ground-truth target in the protocol's variant.

    The passages must have inputs of one length: they run as one batch (random runs per
    passage, from its own seed).
    """
    computed = [name for name in methods if name != "random"]
    tokens = torch.cat([passage.tokens for passage in passages])
    targets = tuple(passage.target_id for passage in passages)
    batch: dict[str, Any] = {}
    if computed:
        options = {name: dict(value) for name, value in method_options(settings.protocol).items()}
        if settings.ig_baseline != "zero":
            options.setdefault("integrated_gradients", {})["baseline"] = settings.ig_baseline
        batch = attribute_methods(
            model,
            tokens,
            computed,
            target=targets,
            n_steps=settings.n_steps,
            ig_batch_size=settings.ig_batch_size,
            memory_budget=settings.memory_budget,
            method_options={name: options[name] for name in computed if name in options},
        )
    results = []
    for row, (passage, seed) in enumerate(zip(passages, seeds, strict=True)):
        result = {name: batch[name][row] for name in batch}
        if "random" in methods:
            result["random"] = baselines.random_attribution(model, passage.tokens, seed=seed)
        results.append({name: result[name] for name in methods})
    return results


def _chosen_sets(
    scores: dict[str, Tensor], passage: Passage, settings: Settings, seed: int
) -> tuple[list[int], dict[str, list[tuple[int, ...]]]]:
    """The ablation counts n_k and each method's ablated positions per fraction.

    Authors' protocol: the target is one more candidate (:func:`authors_candidates`); choosing
    it ablates nothing at the explained position, so it is left out of the ablation set.
    """
    n_context = len(passage.context)
    if settings.protocol == "paper":
        counts = [ablation_count(k, n_context) for k in settings.fractions]
        return counts, {
            name: [top_positions(values, passage.context, c) for c in counts]
            for name, values in scores.items()
        }
    target_slot = passage.tokens.shape[1]
    counts = [authors_ablation_count(k, n_context + 1) for k in settings.fractions]
    chosen = {}
    for name, values in scores.items():
        candidates, ranked = authors_candidates(values, passage.context, name == "random", seed)
        chosen[name] = [
            tuple(p for p in top_positions(ranked, candidates, c) if p != target_slot)
            for c in counts
        ]
    return counts, chosen


def _filler(model: TransformerLensModel, settings: Settings) -> Tensor | None:
    """The embedding ablated tokens get: None for zeros, else the filler token's."""
    if settings.ablation != "filler":
        return None
    token = settings.filler_token_id
    return filler_embedding(model, filler_token_id(model) if token is None else token)


@dataclass(frozen=True)
class _Outcomes:
    """Every ablation set of a passage run as one batch: the measured token, its
    log-probability per set (row 0 the unablated input), each set's KL from the unablated
    prediction, and the row of each set."""

    measured: int
    log_probs: Tensor
    kls: Tensor
    row_of: dict[tuple[int, ...], int]

    @property
    def original(self) -> float:
        return float(self.log_probs[0])

    def deltas(self, sets: Sequence[tuple[int, ...]]) -> list[float]:
        """Delta_k per set: log p(ablated) - log p(unablated)."""
        return [float(self.log_probs[self.row_of[s]]) - self.original for s in sets]


def _measure_sets(
    model: TransformerLensModel,
    passage: Passage,
    sets: Sequence[tuple[int, ...]],
    settings: Settings,
) -> _Outcomes:
    """Runs the unablated input and every distinct set once, with the settings' ablation;
    the paper's protocol measures the passage's target, the authors' the top-1 prediction."""
    every = list(dict.fromkeys([(), *sets]))
    target = None if settings.protocol == "authors" else passage.target_id
    measured, log_probs, kls = ablation_outcomes(
        model, passage, every, target, _filler(model, settings)
    )
    return _Outcomes(measured, log_probs, kls, {s: row for row, s in enumerate(every)})


def aopc_from_scores(
    model: TransformerLensModel,
    text: PassageInput,
    scores: Mapping[str, Tensor],
    *,
    settings: Settings = Settings(),  # noqa: B008 (frozen, immutable)
    task: str = "",
    index: int = 0,
) -> dict[str, float]:
    """AOPC (paper eq. 9) of any scores of a passage, under the settings' protocol and ablation.

    For scores that no registered method makes (a rank-r Fisher Scope, a new method): each
    entry of `scores` is one score per input position of the passage's input (every token but
    the last), in the order :func:`~tlscopes.evaluation.passages.prepare_passage` gives. The
    ablation sets of every entry run through the model as one batch, as in
    :func:`evaluate_passage`, whose AOPC a registered method's scores reproduce.

    Returns:
        name -> AOPC (more negative: the top-scored tokens mattered more).
    """
    passage = prepare_passage(model, text, bos=settings.protocol == "paper")
    n_input = passage.tokens.shape[1]
    checked: dict[str, Tensor] = {}
    for name, values in scores.items():
        values = torch.as_tensor(values).reshape(-1)
        if values.numel() != n_input:
            raise ValueError(
                f"scores {name!r} have {values.numel()} entries; the passage's input has "
                f"{n_input} positions (every token but the last)"
            )
        checked[name] = values.detach().cpu()
    seed = passage_seed(settings.seed, task, index)
    _, chosen = _chosen_sets(checked, passage, settings, seed)
    outcome = _measure_sets(model, passage, [s for sets in chosen.values() for s in sets], settings)
    return {name: aopc(settings.fractions, outcome.deltas(sets)) for name, sets in chosen.items()}


def evaluate_passage(
    model: TransformerLensModel,
    text: PassageInput,
    methods: Sequence[str],
    *,
    task: str = "",
    index: int = 0,
    settings: Settings = Settings(),  # noqa: B008 (frozen, immutable)
) -> list[dict[str, Any]]:
    """One row per method: Delta_k per fraction, the ablated counts, AOPC and method details.

    `text` is a string, or token ids (see :func:`bos_token_id` for how a BOS is recognised
    without a tokenizer). Raises :class:`UnusablePassage` for a passage with fewer than two
    tokens besides BOS. Under the authors' protocol the rows also hold ``prediction_id``, the
    top-1 token whose log-probability Delta_k (and ``logp``) measure; with ``settings.eraser``
    comprehensiveness and sufficiency; with ``settings.loo_limit`` loo_spearman and
    loo_kendall (empty on passages from that index on).
    """
    passage = prepare_passage(model, text, bos=settings.protocol == "paper")
    seed = passage_seed(settings.seed, task, index)
    results = attribute_passages(model, [passage], methods, settings, [seed])[0]
    return passage_rows(model, passage, text, results, task=task, index=index, settings=settings)


def passage_rows(
    model: TransformerLensModel,
    passage: Passage,
    text: PassageInput,
    results: dict[str, Any],
    *,
    task: str,
    index: int,
    settings: Settings,
) -> list[dict[str, Any]]:
    """The rows of :func:`evaluate_passage` from a passage's attributions (its ablation sets
    run as one batch)."""
    authors = settings.protocol == "authors"
    seed = passage_seed(settings.seed, task, index)
    scores = {name: result.scores[0] for name, result in results.items()}
    counts, chosen = _chosen_sets(scores, passage, settings, seed)
    context = passage.context
    kept = {n: [keep_only(context, s) for s in c] for n, c in chosen.items() if settings.eraser}
    singles = [(int(p),) for p in context] if index < settings.loo_limit else []
    every = [s for sets in (*chosen.values(), *kept.values()) for s in sets]
    outcome = _measure_sets(model, passage, [*every, *singles], settings)
    log_probs, row_of, original = outcome.log_probs, outcome.row_of, outcome.original
    rows = []
    for name, result in results.items():
        deltas = outcome.deltas(chosen[name])
        row: dict[str, Any] = {
            "task": task,
            "passage": index,
            "method": name,
            "text_sha": text_hash(text),
            "n_tokens": passage.tokens.shape[1],
            "n_context": len(passage.context),
            "target_id": passage.target_id,
            "logp": original,
        }
        for fraction, count, delta in zip(settings.fractions, counts, deltas, strict=True):
            row[f"n_ablated_{fraction_label(fraction)}"] = count
            row[f"delta_{fraction_label(fraction)}"] = delta
        row["aopc"] = aopc(settings.fractions, deltas)
        is_ig = name == "integrated_gradients"
        steps = len(AUTHORS_ALPHAS) if authors else settings.n_steps
        row["n_steps"] = steps if is_ig else ""
        gap = is_ig and not authors  # the authors' sum is not a path integral's estimate
        row["completeness_gap"] = result.details["completeness_gap"][0] if gap else ""
        row["seed"] = result.details["seed"] if name == "random" else ""
        if authors:
            row["prediction_id"] = outcome.measured
        if settings.eraser:
            removed = [float(log_probs[row_of[s]]) for s in chosen[name]]
            row["comprehensiveness"] = comprehensiveness(original, removed)
            only = [float(log_probs[row_of[s]]) for s in kept[name]]
            row["sufficiency"] = sufficiency(original, only)
        if settings.loo_limit:
            agreement = ("", "")
            if singles:
                kl = outcome.kls[[row_of[s] for s in singles]]
                agreement = loo_agreement(scores[name][context].cpu(), kl)
            row["loo_spearman"], row["loo_kendall"] = agreement
        rows.append(row)
    return rows


__all__ = [
    "aopc_from_scores",
    "Settings",
    "attribute_passages",
    "evaluate_passage",
    "passage_rows",
]
