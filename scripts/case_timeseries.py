"""Case study: Temperature Scope on in-context time-series forecasting (section 4.3, figure 4).

Three systems (appendix A.3): the x coordinate of a Lorenz system, Brownian motion and
geometric Brownian motion. Each history is written as comma-separated 2-digit integers
(:func:`tlscopes.analysis.timeseries.serialize`: rescaled into 10-99 with headroom, "62,65,66,...,").
SmolLM2's tokenizer splits numbers into single digits, so each value is two digit tokens and a
comma; the prompt ends with a comma, so the explained prediction is the next value's first
digit. Temperature Scope attributes its confidence beta_eff = ||y||; a value's score is the norm
over its two digit tokens (:func:`tlscopes.analysis.timeseries.value_scores`), commas and BOS left out.
The next-value distribution over 10-99 is P(first digit) P(second digit | first), from one
batched forward pass (:func:`tlscopes.analysis.timeseries.next_value_distribution`).

Writes timeseries.png (per system: the series coloured by influence, the influence per value,
and the predicted distribution over the 30 most likely next values, the held-out truth in red)
and timeseries.html (the digit tokens coloured by score).

Usage: python scripts/case_timeseries.py --out DIR [--values N]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

import tlscopes as ts
from tlscopes.analysis import timeseries
from tlscopes.views.plotting import tokens_page

DEFAULT_VALUES = 120
SHOWN_VALUES = 30


def systems(n_values: int) -> dict[str, Tensor]:
    """The three series, each n_values + 1 long (the last value is held out as the truth)."""
    return {
        "Lorenz system (x)": timeseries.lorenz_x(n_values + 1, x0=-3.0, steps_per_value=5),
        "Brownian motion": timeseries.brownian_motion(n_values + 1, seed=2),
        "geometric Brownian motion": timeseries.geometric_brownian_motion(
            n_values + 1, volatility=0.05, seed=5
        ),
    }


@dataclass(frozen=True)
class Forecast:
    """One system's attribution and prediction.

    Attributes:
        serialized: the history as integers and text.
        truth: the held-out next value on the same integer scale.
        result: Temperature Scope over the prompt's tokens.
        value_scores: one score per history value [n_values].
        distribution: next-value probabilities (value, probability, share).
    """

    name: str
    serialized: timeseries.Serialized
    truth: int
    result: ts.Attribution
    value_scores: Tensor
    distribution: pd.DataFrame


def forecast(model: Any, name: str, series: Tensor) -> Forecast:
    serialized = timeseries.serialize(series[:-1])
    truth = int(serialized.encode(series[-1:])[0])
    result = ts.attribute(model, serialized.text, ts.TemperatureScope())
    groups = timeseries.value_token_groups(result.tokens[0], len(serialized.integers))
    return Forecast(
        name=name,
        serialized=serialized,
        truth=truth,
        result=result,
        value_scores=timeseries.value_scores(result.scores[0], groups),
        distribution=timeseries.next_value_distribution(model, serialized.text),
    )


def plot_forecasts(forecasts: list[Forecast]) -> Figure:
    figure = Figure(figsize=(13, 3.4 * len(forecasts)), layout="constrained")
    for panel, item in zip(figure.subfigures(len(forecasts), 1), forecasts, strict=True):
        grid = panel.add_gridspec(2, 2, height_ratios=[2, 1], width_ratios=[2.6, 1])
        series_axes = panel.add_subplot(grid[0, 0])
        score_axes = panel.add_subplot(grid[1, 0], sharex=series_axes)
        dist_axes = panel.add_subplot(grid[:, 1])
        integers = item.serialized.integers.numpy()
        index = range(len(integers))
        scores = (item.value_scores / item.value_scores.max()).numpy()
        series_axes.plot(index, integers, color="0.75", lw=1, zorder=1)
        series_axes.scatter(
            index,
            integers,
            c=scores,
            cmap="Blues",
            vmin=0,
            vmax=1,
            s=16,
            zorder=2,
            edgecolor="0.5",
            linewidth=0.3,
        )
        series_axes.scatter([len(integers)], [item.truth], color="red", s=24, zorder=3)
        beta = item.result.details["beta_eff"][0]
        series_axes.set_title(
            f"{item.name}: history coloured by Temperature Scope (β_eff = {beta:.1f}); "
            "red: held-out next value",
            fontsize=10,
            loc="left",
        )
        series_axes.set_ylabel("value")
        series_axes.tick_params(labelbottom=False)
        score_axes.bar(index, scores, color="#1f5fbf", width=0.9)
        score_axes.set_ylabel("influence")
        score_axes.set_ylim(0, 1.05)
        score_axes.set_xlabel("value index (a value's digit tokens together; commas left out)")
        shown = item.distribution.nlargest(SHOWN_VALUES, "share").sort_values("value")
        colors = ["red" if v == item.truth else "#888888" for v in shown["value"]]
        dist_axes.bar(shown["value"], shown["share"], color=colors, width=0.8)
        dist_axes.set_xlabel("next value")
        dist_axes.set_ylabel("probability")
        mass = item.distribution["probability"].sum()
        dist_axes.set_title(
            f"top {SHOWN_VALUES} next values (truth {item.truth} in red)\n"
            f"P(a 2-digit value) = {mass:.2f}; renormalised",
            fontsize=9,
        )
    return figure


def html_rows(forecasts: list[Forecast]) -> list[tuple[str, list[str], list[float]]]:
    rows = []
    for item in forecasts:
        tokens = item.result.tokens[0]
        scores = item.result.scores[0, : len(tokens)].double()
        digits = torch.tensor([token.strip().isdigit() for token in tokens])
        scores = torch.where(digits, scores, torch.zeros_like(scores))
        values = (scores / scores.max()).tolist()
        rows.append((f"{item.name}: Temperature Scope (commas and BOS left out)", tokens, values))
    return rows


def run(model: Any, out: Path, *, n_values: int = DEFAULT_VALUES) -> list[Path]:
    """Writes timeseries.png and timeseries.html under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    forecasts = []
    for name, series in systems(n_values).items():
        print(f"   time series: {name}, {n_values} values", flush=True)
        forecasts.append(forecast(model, name, series))
    png, page = out / "timeseries.png", out / "timeseries.html"
    plot_forecasts(forecasts).savefig(png, dpi=100)
    page.write_text(
        tokens_page("Temperature Scope on time series", html_rows(forecasts)), encoding="utf-8"
    )
    return [png, page]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--values", type=int, default=DEFAULT_VALUES, help="history length")
    args = parser.parse_args(argv)
    for path in run(ts.load_model(), args.out, n_values=args.values):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
