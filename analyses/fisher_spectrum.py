"""How low-rank is the Fisher matrix F? (paper appendix A.9, figure 16)

Fisher Scope keeps only the top eigenvector u_1 of F = W_U^T (diag p - p p^T) W_U. Three checks
of that choice, on passages whose last token is the prediction target (as in the AOPC
evaluation, :mod:`tlscopes.evaluation.runner`):

* :func:`fisher_spectra`: every eigenvalue of F at the predicted position of each passage (F
  formed explicitly in float64 and diagonalised), with tr F computed independently as
  sum_i p_i ||w_i||^2 - ||sum_i p_i w_i||^2;
* :meth:`FisherSpectra.explained_variance`: sum_{i<=r} lambda_i / tr F for every r;
* :func:`aopc_by_rank`: AOPC of rank-r Fisher Scope, sqrt(sum_{i<=r} lambda_i ||u_i^T J_t||^2)
  (eq. 18), for several r. All ranks come from one pull-back of the largest rank's
  directions: the rank-r score is a partial sum of the largest one's terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from tlscopes.core import FisherScope, prepare_inputs, scope_gradients
from tlscopes.evaluation import (
    FRACTIONS,
    Settings,
    aopc_from_scores,
    evaluate_passage,
    prepare_passage,
)
from tlscopes.fisher import fisher_matrix
from tlscopes.models import unembedding
from tlscopes.protocols import TransformerLensModel

DEFAULT_RANKS = (1, 4, 16, 64)
DEFAULT_BASELINES = ("semantic", "temperature", "input_x_gradient", "random")


@dataclass(frozen=True)
class FisherSpectra:
    """Fisher eigenvalues at the predicted position of each passage.

    Attributes:
        eigenvalues: [n_passages, d_model], descending; rounding-level negatives set to 0.
        traces: tr F per passage [n_passages], computed without the eigenvalues.
    """

    eigenvalues: Tensor
    traces: Tensor

    def explained_variance(self) -> Tensor:
        """sum_{i<=r} lambda_i / tr F for r = 1..d_model [n_passages, d_model]: non-decreasing,
        and 1 at r = d_model up to rounding."""
        return self.eigenvalues.cumsum(dim=1) / self.traces[:, None]


def passage_probabilities(model: TransformerLensModel, text: str) -> Tensor:
    """The next-token distribution at a passage's last input position (its last token held out)."""
    passage = prepare_passage(model, text)
    with torch.no_grad():
        logits = model(passage.tokens.to(model.W_U.device))[0, -1]
    return torch.softmax(logits.double(), dim=-1)


def fisher_spectrum(W_U: Tensor, probs: Tensor) -> tuple[Tensor, Tensor]:
    """All eigenvalues of F (descending, float64) and tr F = sum p_i ||w_i||^2 - ||W_U p||^2."""
    W = W_U.double()
    p = probs.double().to(W.device)
    values = torch.linalg.eigvalsh(fisher_matrix(W, p)).flip(0).clamp_min(0)
    mean = W @ p
    trace = (W.square().sum(dim=0) * p).sum() - mean @ mean
    return values.cpu(), trace.cpu()


def fisher_spectra(
    model: TransformerLensModel, texts: Sequence[str], *, progress: bool = True
) -> FisherSpectra:
    """The Fisher spectrum at the predicted position of each passage."""
    W_U, _ = unembedding(model)
    values, traces = [], []
    for text in tqdm(texts, desc="Fisher spectra", disable=not progress):
        eigenvalues, trace = fisher_spectrum(W_U.detach(), passage_probabilities(model, text))
        values.append(eigenvalues)
        traces.append(trace)
    return FisherSpectra(torch.stack(values), torch.stack(traces))


def rank_scores(
    model: TransformerLensModel, tokens: Tensor, ranks: Sequence[int]
) -> dict[int, Tensor]:
    """Rank-r Fisher Scope scores [pos] for each r, from one pass of max(ranks) directions.

    The rank-1 score here is sqrt(lambda_1) ||u_1^T J_t||, FisherScope()'s score times a
    constant, so it ranks tokens identically.
    """
    prepared = prepare_inputs(model, tokens)
    result = scope_gradients(
        model, prepared.tokens, [FisherScope(rank=max(ranks))], positions=prepared.positions
    )
    squared = result.gradients[0][0].double().pow(2).sum(dim=-1)  # [rank, pos]
    eigenvalues = torch.tensor(result.directions[0].details["eigenvalues"][0]).double()
    eigenvalues = eigenvalues.clamp_min(0).to(squared.device)
    partial = (squared * eigenvalues[:, None]).cumsum(dim=0).sqrt().cpu()
    return {rank: partial[rank - 1] for rank in ranks}


def aopc_by_rank(
    model: TransformerLensModel,
    texts: Sequence[str],
    *,
    ranks: Sequence[int] = DEFAULT_RANKS,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    fractions: Sequence[float] = FRACTIONS,
    progress: bool = True,
) -> pd.DataFrame:
    """AOPC of rank-r Fisher Scope and of baseline methods, per passage.

    Ablation follows the paper's protocol (the top k% context tokens' embeddings zeroed, Delta
    log p of the held-out last token): the rank-r scores through
    :func:`tlscopes.evaluation.aopc_from_scores`, the baselines by
    :func:`tlscopes.evaluation.evaluate_passage` itself.

    Returns:
        One row per (passage, method): passage, method ("fisher_r4", "semantic", ...), rank
        (0 for baselines) and aopc.
    """
    ranks = sorted(set(ranks))
    rows: list[dict[str, Any]] = []
    for index, text in enumerate(tqdm(texts, desc="AOPC by rank", disable=not progress)):
        passage = prepare_passage(model, text)
        scores = rank_scores(model, passage.tokens, ranks)
        measured = aopc_from_scores(
            model,
            text,
            {f"fisher_r{rank}": values for rank, values in scores.items()},
            settings=Settings(fractions=tuple(fractions)),
        )
        for rank in scores:
            rows.append(
                {
                    "passage": index,
                    "method": f"fisher_r{rank}",
                    "rank": rank,
                    "aopc": measured[f"fisher_r{rank}"],
                }
            )
        if baselines:
            for row in evaluate_passage(model, text, list(baselines), index=index):
                rows.append(
                    {"passage": index, "method": row["method"], "rank": 0, "aopc": row["aopc"]}
                )
    return pd.DataFrame(rows)


def plot_fisher_spectrum(
    spectra: FisherSpectra, aopc_frame: pd.DataFrame | None = None, n_curves: int = 10
) -> Figure:
    """Figure 16: eigenvalue spectra (log-log), mean explained variance +- 1 sd, AOPC vs rank."""
    panels = 3 if aopc_frame is not None else 2
    figure = Figure(figsize=(5.2 * panels, 4.2))
    axes = figure.subplots(1, panels)
    values = spectra.eigenvalues.numpy()
    ranks = np.arange(1, values.shape[1] + 1)
    for row in values[:n_curves]:
        positive = row > 0
        axes[0].loglog(ranks[positive], row[positive], lw=1, alpha=0.8)
    axes[0].set_xlabel("eigenvalue index i")
    axes[0].set_ylabel("λᵢ")
    axes[0].set_title(f"Fisher spectrum, {min(n_curves, len(values))} passages", fontsize=10)

    explained = spectra.explained_variance().numpy()
    mean, spread = explained.mean(axis=0), explained.std(axis=0)
    axes[1].plot(ranks, mean, color="#1f5fbf")
    axes[1].fill_between(
        ranks, mean - spread, np.minimum(mean + spread, 1), alpha=0.25, color="#1f5fbf"
    )
    axes[1].set_xscale("log")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_xlabel("rank r")
    axes[1].set_ylabel("Σᵢ≤ᵣ λᵢ / tr F")
    axes[1].set_title(
        f"explained variance, {len(values)} passages (r=1: {mean[0]:.0%} ± {spread[0]:.0%})",
        fontsize=10,
    )
    axes[1].grid(alpha=0.3)

    if aopc_frame is not None:
        summary = aopc_frame.groupby("method")["aopc"].agg(["mean", "sem"])
        fisher = aopc_frame[aopc_frame["rank"] > 0].groupby("rank")["aopc"].agg(["mean", "sem"])
        axes[2].errorbar(
            fisher.index, fisher["mean"], yerr=fisher["sem"], fmt="o-", label="Fisher Scope, rank r"
        )
        for method in [m for m in summary.index if not m.startswith("fisher_r")]:
            axes[2].axhline(
                summary.loc[method, "mean"], ls="--", lw=1, label=method, color=_COLORS.get(method)
            )
        axes[2].set_xscale("log", base=2)
        axes[2].set_xticks(list(fisher.index))
        axes[2].set_xticklabels([str(r) for r in fisher.index])
        axes[2].set_xlabel("rank r")
        axes[2].set_ylabel("AOPC (more negative = more faithful)")
        n = aopc_frame["passage"].nunique()
        axes[2].set_title(f"AOPC vs rank, {n} passages (mean ± sem)", fontsize=10)
        axes[2].legend(fontsize=7)
    figure.tight_layout()
    return figure


_COLORS = {
    "semantic": "tab:green",
    "temperature": "tab:red",
    "input_x_gradient": "tab:purple",
    "integrated_gradients": "tab:brown",
    "random": "tab:gray",
}


__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_RANKS",
    "FisherSpectra",
    "aopc_by_rank",
    "fisher_spectra",
    "fisher_spectrum",
    "passage_probabilities",
    "plot_fisher_spectrum",
    "rank_scores",
]
