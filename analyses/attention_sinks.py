"""Attention sinks and where attributions fall (paper appendix A.6).

The paper explains Integrated Gradients' weight on early tokens by attention sinks (Xiao et al.
2024): heads that park attention on the first position. Near the null baseline (alpha -> 0 on
the IG path) the input carries almost no information, and the paper claims sinks then dominate
the gradient. This module measures that claim:

* :func:`attention_patterns` / :func:`sink_mass`: per layer, head and query, the attention mass
  on the first position (and on BOS tokens where present), from ``blocks.{l}.attn.hook_pattern``
  [batch, head_index, query_pos, key_pos] (present on HookedTransformer and TransformerBridge).
* :func:`method_early_shares`: the share of each attribution method's scores on the first
  positions.
* :func:`sink_path`: along the IG path, each layer's mean sink mass next to the share of the
  integrand's norm on the first positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from tlscopes.analysis import (
    DEFAULT_SINK_EPSILON,
    DEFAULT_SINK_HEAD_SHARE,
    PathIntegrand,
    attention_patterns,
    score_share,
    sink_head_share,
    sink_positions,
)
from tlscopes.core import attribute_layers, prepare_inputs
from tlscopes.methods import attribute_methods
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import bos_positions, token_strings

DEFAULT_METHODS = ("semantic", "fisher", "temperature", "input_x_gradient", "integrated_gradients")


def sink_mass(model: TransformerLensModel, text: str | Tensor, scale: float = 1.0) -> pd.DataFrame:
    """Attention mass on the first position (and on BOS) per layer, head and query.

    Args:
        text: one prompt (the model's BOS convention applies), or its token ids [pos].

    Returns:
        One row per (layer, head, query): ``token`` (the query's token), ``first`` (mass on
        key position 0), ``bos`` (mass on every BOS key the query can see; NaN without BOS)
        and ``total`` (the whole row's mass, 1 up to rounding).
    """
    tokens = prepare_inputs(model, text).tokens[0]
    patterns = attention_patterns(model, tokens, scale)
    n_layers, n_heads, n_queries, _ = patterns.shape
    bos = bos_positions(model, tokens)
    first = patterns[..., 0]
    on_bos = patterns[..., bos].sum(-1) if bos else torch.full_like(first, float("nan"))
    layer, head, query = torch.meshgrid(
        torch.arange(n_layers), torch.arange(n_heads), torch.arange(n_queries), indexing="ij"
    )
    names = token_strings(model, tokens)
    return pd.DataFrame(
        {
            "layer": layer.flatten().numpy(),
            "head": head.flatten().numpy(),
            "query": query.flatten().numpy(),
            "token": [names[q] for q in query.flatten().tolist()],
            "first": first.flatten().double().numpy(),
            "bos": on_bos.flatten().double().numpy(),
            "total": patterns.sum(-1).flatten().double().numpy(),
        }
    )


def layer_head_sink(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean mass on the first position per layer (rows) and head (columns), over queries >= 1.

    Query 0 can only attend to itself, so it is left out.
    """
    later = frame[frame["query"] > 0]
    return later.pivot_table(index="layer", columns="head", values="first", aggfunc="mean")


def early_share(scores: Tensor, position: int, n_early: int) -> float:
    """The share of one prompt's scores (up to `position`) on its first `n_early` positions."""
    scores = scores[: position + 1].double()
    return float(scores[:n_early].sum() / scores.sum())


def method_early_shares(
    model: TransformerLensModel,
    text: str,
    *,
    target: int | str | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    n_early: int = 3,
    n_steps: int = 50,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each method's share of its attribution on position 0 and on the first `n_early` tokens.

    Returns:
        The table (method, share_first, share_early) and the Attributions by method name.
    """
    results = attribute_methods(model, text, list(methods), target=target, n_steps=n_steps)
    rows = []
    for name, result in results.items():
        position = int(result.positions[0])
        rows.append(
            {
                "method": name,
                "share_first": early_share(result.scores[0], position, 1),
                f"share_first_{n_early}": early_share(result.scores[0], position, n_early),
            }
        )
    return pd.DataFrame(rows), results


@dataclass(frozen=True)
class SinkPath:
    """Sink mass and the IG integrand's early share along the path alpha X.

    Attributes:
        alphas: path points [n_alpha].
        layer_sink: mean attention on position 0 per alpha and layer, over heads and queries
            >= 1 [n_alpha, layer].
        integrand_share: the share of ||grad_{x_t} z(alpha X)|| on the first `n_early` tokens
            [n_alpha].
        integrand_centre: its norm-weighted mean position, 0 (first token) to 1 (explained)
            [n_alpha].
        integrand_total: the sum over tokens of those norms [n_alpha] (their scale).
        n_early: how many leading tokens count as early.
        tokens: the prompt's token strings.
        target: the explained token.
    """

    alphas: Tensor
    layer_sink: Tensor
    integrand_share: Tensor
    integrand_centre: Tensor
    integrand_total: Tensor
    n_early: int
    tokens: list[str]
    target: str

    def to_pandas(self) -> pd.DataFrame:
        """One row per alpha: mean sink mass over layers, the integrand's early share, centre of
        mass and total."""
        return pd.DataFrame(
            {
                "alpha": self.alphas.numpy(),
                "sink_mass_mean": self.layer_sink.mean(dim=1).numpy(),
                f"integrand_share_first_{self.n_early}": self.integrand_share.numpy(),
                "integrand_centre_of_mass": self.integrand_centre.numpy(),
                "integrand_total": self.integrand_total.numpy(),
            }
        )


def sink_path(
    model: TransformerLensModel, integrand: PathIntegrand, *, n_early: int = 3
) -> SinkPath:
    """Per-layer sink mass at each alpha of an IG path integrand, next to its early share.

    Args:
        integrand: from :func:`tlscopes.analysis.integrated_gradients_path.path_integrand` (its prompt and alphas are used).
        n_early: how many leading tokens count as early.
    """
    sinks = []
    for alpha in integrand.alphas.tolist():
        patterns = attention_patterns(model, integrand.token_ids, alpha)
        sinks.append(patterns[:, :, 1:, 0].double().mean(dim=(1, 2)))
    norms = integrand.norms[:, : integrand.position + 1].double()
    return SinkPath(
        alphas=integrand.alphas,
        layer_sink=torch.stack(sinks),
        integrand_share=integrand.early_share(n_early),
        integrand_centre=integrand.centre_of_mass(),
        integrand_total=norms.sum(dim=1),
        n_early=n_early,
        tokens=integrand.tokens,
        target=integrand.target,
    )


def plot_attention_sinks(
    frame: pd.DataFrame, path: SinkPath, shares: pd.DataFrame | None = None
) -> Figure:
    """Four panels: (a) attention on position 0 per layer and head on the real input; (b) per
    layer along the IG path; (c) the mean sink mass, the integrand's share on the first tokens
    and its total norm against alpha; (d) each method's share on the first tokens."""
    panels = 4 if shares is not None else 3
    figure = Figure(figsize=(4.4 * panels, 4.6), layout="constrained")
    axes = figure.subplots(1, panels, gridspec_kw={"width_ratios": [0.8, 1.3, 1.2, 1][:panels]})
    table = layer_head_sink(frame)
    image = axes[0].imshow(table.to_numpy(), aspect="auto", cmap="magma", vmin=0, vmax=1)
    axes[0].set_xlabel("head")
    axes[0].set_ylabel("layer")
    axes[0].set_title("(a) attention on position 0\nreal input, mean over queries ≥ 1", fontsize=10)

    axes[1].imshow(
        path.layer_sink.numpy().T,
        aspect="auto",
        cmap="magma",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    axes[1].set_xticks(range(len(path.alphas)))
    axes[1].set_xticklabels([f"{a:g}" for a in path.alphas.tolist()], rotation=60)
    axes[1].set_xlabel("α (embeddings scaled by α)")
    axes[1].set_ylabel("layer")
    axes[1].set_title(
        "(b) attention on position 0 along the IG path\n(mean over heads, queries ≥ 1)", fontsize=10
    )
    figure.colorbar(image, ax=axes[:2], pad=0.01, shrink=0.9, label="attention mass")

    alphas = path.alphas.numpy()
    axes[2].plot(
        alphas, path.layer_sink.mean(dim=1).numpy(), "o-", label="sink mass, mean of layers"
    )
    axes[2].plot(
        alphas,
        path.integrand_share.numpy(),
        "s-",
        label=f"integrand share on first {path.n_early} tokens",
    )
    axes[2].plot(
        alphas,
        path.integrand_centre.numpy(),
        "d-",
        label="integrand centre of mass (0 first, 1 last)",
    )
    axes[2].set_xscale("log")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("α")
    totals = axes[2].twinx()
    totals.plot(
        alphas,
        path.integrand_total.numpy(),
        "^:",
        color="0.4",
        label="integrand norm (sum over tokens)",
    )
    totals.set_yscale("log")
    totals.set_ylabel("Σₜ ‖∇ₓₜ z(αX)‖ (log)", color="0.4")
    handles = axes[2].get_legend_handles_labels()
    extra = totals.get_legend_handles_labels()
    axes[2].legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="upper right")
    axes[2].set_title(f"(c) along the path, target {path.target!r}", fontsize=10)

    if shares is not None:
        column = f"share_first_{path.n_early}"
        positions = range(len(shares))
        axes[3].barh(
            positions, shares[column], color="#1f5fbf", label=f"first {path.n_early} tokens"
        )
        axes[3].barh(positions, shares["share_first"], color="#e07b00", label="position 0")
        axes[3].set_yticks(list(positions))
        axes[3].set_yticklabels(shares["method"])
        axes[3].invert_yaxis()
        axes[3].set_xlim(0, 1)
        axes[3].set_xlabel("share of the attribution")
        axes[3].legend(fontsize=7, loc="lower right")
        axes[3].set_title("(d) attribution on early tokens, real input", fontsize=10)
    return figure


__all__ = [
    "DEFAULT_METHODS",
    "SinkPath",
    "attention_patterns",
    "early_share",
    "layer_head_sink",
    "method_early_shares",
    "plot_attention_sinks",
    "sink_mass",
    "sink_path",
]


# Sinks beside the attributions (issue: layer resolution) ------------------------------------------


def sink_table(
    model: TransformerLensModel, text: str | Tensor, *, epsilon: float = DEFAULT_SINK_EPSILON
) -> pd.DataFrame:
    """Per layer and key position, the share of the layer's heads that sink on it: the standard
    metric (a key's importance for a head is its mean attention over queries; the head sinks on
    it when that exceeds epsilon, 0.3 by default)."""
    tokens = prepare_inputs(model, text).tokens[0]
    share = sink_head_share(attention_patterns(model, tokens), epsilon)  # [layer, pos]
    names = token_strings(model, tokens)
    layer, position = torch.meshgrid(
        torch.arange(share.shape[0]), torch.arange(share.shape[1]), indexing="ij"
    )
    return pd.DataFrame(
        {
            "layer": layer.flatten().numpy(),
            "position": position.flatten().numpy(),
            "token": [names[p] for p in position.flatten().tolist()],
            "head_share": share.flatten().numpy(),
        }
    )


def layer_sink_shares(
    model: TransformerLensModel,
    text: str | Tensor,
    scope: Any,
    *,
    epsilon: float = DEFAULT_SINK_EPSILON,
    min_head_share: float = DEFAULT_SINK_HEAD_SHARE,
) -> tuple[pd.DataFrame, Any, list[int]]:
    """How much of each layer's scope score falls on sink positions.

    Returns:
        The table (layer, share_on_sinks, share_on_bos; layer -1 is the input tokens), the
        LayerAttribution, and the detected sink positions.
    """
    tokens = prepare_inputs(model, text).tokens[0]
    sinks = sink_positions(attention_patterns(model, tokens), epsilon, min_head_share)
    bos = bos_positions(model, tokens)
    layered = attribute_layers(model, tokens, scope)
    rows = [
        {
            "layer": -1,
            "share_on_sinks": float(score_share(layered.input_scores[0], sinks)),
            "share_on_bos": float(score_share(layered.input_scores[0], bos)),
        }
    ]
    for layer in range(layered.n_layers):
        scores = layered.scores[0, layer]
        rows.append(
            {
                "layer": layer,
                "share_on_sinks": float(score_share(scores, sinks)),
                "share_on_bos": float(score_share(scores, bos)),
            }
        )
    return pd.DataFrame(rows), layered, sinks


def path_sink_shares(
    model: TransformerLensModel,
    integrand: PathIntegrand,
    *,
    epsilon: float = DEFAULT_SINK_EPSILON,
    min_head_share: float = DEFAULT_SINK_HEAD_SHARE,
) -> pd.DataFrame:
    """Along the IG path (paper appendix A.6): at each alpha, the sink positions detected in that
    alpha's attention patterns and the share of the integrand's norm on them."""
    rows = []
    for row, alpha in enumerate(integrand.alphas.tolist()):
        patterns = attention_patterns(model, integrand.token_ids, alpha)
        sinks = sink_positions(patterns, epsilon, min_head_share)
        norms = integrand.norms[row, : integrand.position + 1]
        rows.append(
            {
                "alpha": alpha,
                "sinks": sinks,
                "share_on_sinks": float(score_share(norms, sinks)),
            }
        )
    return pd.DataFrame(rows)


def plot_layer_sink_shares(tables: dict[str, pd.DataFrame]) -> Figure:
    """Each scope's share of its score on sink positions, by layer (input tokens at -1)."""
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axis = figure.subplots()
    for name, table in tables.items():
        axis.plot(table["layer"], table["share_on_sinks"], "o-", label=name, markersize=3)
    axis.set_xlabel("layer (-1: input tokens)")
    axis.set_ylabel("share of the score on sink positions")
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=8)
    return figure
