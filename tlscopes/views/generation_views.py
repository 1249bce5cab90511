"""Figures and the offline page of a GenerationAttribution.

* :func:`generation_heatmap`: generated step x source token, each step's scores (by default
  over that step's largest), the tokens after its explained position left blank;
* :func:`confidence_trace`: beta_eff = ||y|| and the next-token entropy at each step;
* :func:`generation_html`: per prompt the text, a table of the steps (generated token, its
  probability, entropy, beta_eff, top sources and predictions), both figures as inline images
  and the text coloured by any step's scores (circuitsvis, JavaScript inlined once).

Every token and label enters the page escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from tlscopes.views.html import METHOD_NOTES, Widget, colored_tokens_multi, html_page
from tlscopes.views.plotting import display_token

if TYPE_CHECKING:
    from tlscopes.protocols import GenerationAttributionLike

# How many source tokens and predictions the page's step table lists per step.
TABLE_TOP = 3


def _check_index(result: GenerationAttributionLike, index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(result):
        raise IndexError(f"prompt {index!r} is out of range for {len(result)} prompts")


def generation_heatmap(
    result: GenerationAttributionLike, index: int = 0, *, normalize: str = "step"
) -> Figure:
    """Generated step (rows) x source token (columns) for one prompt.

    Args:
        normalize: "step" scales each step's row to its largest score (what each step draws
            on), "global" one scale for the whole prompt (which steps draw hardest).
    """
    if normalize not in ("step", "global"):
        raise ValueError(f"normalize must be 'step' or 'global', got {normalize!r}")
    _check_index(result, index)
    count = int(result.generated_lengths[index])
    prompt_length = int(result.prompt_lengths[index])
    width = prompt_length + count - 1  # sources: every position some step explains
    scores = result.scores[index, :count, :width].double().clone()
    future = torch.arange(width)[None, :] > result.positions[index, :count, None]
    peak = scores.amax(dim=1, keepdim=True) if normalize == "step" else scores.max()
    shown = scores / torch.as_tensor(peak).clamp_min(1e-300)
    shown[future] = math.nan
    figure = Figure(figsize=(max(5.0, 0.32 * width + 2.5), max(3.0, 0.3 * count + 2.2)))
    axes = figure.subplots()
    blues = colormaps["Blues"].with_extremes(bad="white")
    image = axes.imshow(shown.numpy(), aspect="auto", cmap=blues, vmin=0, vmax=1)
    axes.axvline(prompt_length - 0.5, color="red", linewidth=1)
    axes.set_xticks(range(width))
    axes.set_xticklabels([display_token(t) for t in result.tokens[index][:width]], rotation=70)
    axes.set_yticks(range(count))
    axes.set_yticklabels([display_token(t) for t in result.generated_tokens[index]])
    axes.set_xlabel("source token (red line: end of the prompt)")
    axes.set_ylabel("generated token")
    axes.set_title(f"{result.method} scope, step by step ({normalize} scale)")
    figure.colorbar(image, ax=axes, fraction=0.04)
    figure.tight_layout()
    return figure


def confidence_trace(result: GenerationAttributionLike, index: int = 0) -> Figure:
    """beta_eff = ||y|| (top) and the next-token entropy in nats (bottom) at each step."""
    _check_index(result, index)
    count = int(result.generated_lengths[index])
    steps = list(range(count))
    figure = Figure(figsize=(max(5.0, 0.35 * count + 2.0), 4.5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(steps, result.beta_eff[index, :count].tolist(), marker="o", color="#1f5fbf")
    top.set_ylabel("β_eff = ‖y‖")
    top.set_title("confidence at each generated step")
    bottom.plot(steps, result.entropy[index, :count].tolist(), marker="o", color="#bf5f1f")
    bottom.set_ylabel("entropy (nats)")
    bottom.set_xticks(steps)
    bottom.set_xticklabels([display_token(t) for t in result.generated_tokens[index]], rotation=70)
    bottom.set_xlabel("generated token")
    figure.tight_layout()
    return figure


def _png(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _code(token: str) -> str:
    return f"<code>{html.escape(repr(token))}</code>"


def _parameters(result: GenerationAttributionLike, index: int) -> str:
    settings = result.info.get("parameters", {})
    rows = [
        ("method", METHOD_NOTES.get(result.method, result.method)),
        ("model", result.model_name or "unknown"),
        ("prompt tokens", str(int(result.prompt_lengths[index]))),
        ("generated tokens", str(int(result.generated_lengths[index]))),
    ]
    if settings:
        rows.append(("generation", ", ".join(f"{key}={value}" for key, value in settings.items())))
    cells = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return f'<table class="parameters">{cells}</table>'


def _step_table(result: GenerationAttributionLike, index: int) -> str:
    rows = []
    for step in range(int(result.generated_lengths[index])):
        sources = ", ".join(
            f"{_code(token)}@{position} {score:.3g}"
            for position, token, score in result.top_sources(index, step, TABLE_TOP)
        )
        predictions = ", ".join(
            f"{_code(token)} {float(p):.3f}"
            for token, p in zip(
                result.top_tokens[index][step][:TABLE_TOP],
                result.top_probs[index, step, :TABLE_TOP].tolist(),
                strict=True,
            )
        )
        rows.append(
            f"<tr><td>{step}</td><td>{int(result.positions[index, step])}</td>"
            f"<td>{_code(result.generated_tokens[index][step])}</td>"
            f'<td class="number">{float(result.probs[index, step]):.4g}</td>'
            f'<td class="number">{float(result.entropy[index, step]):.4g}</td>'
            f'<td class="number">{float(result.beta_eff[index, step]):.4g}</td>'
            f"<td>{sources}</td><td>{predictions}</td></tr>"
        )
    return (
        '<table class="steps"><tr><th>step</th><th>explained position</th><th>generated</th>'
        "<th>probability</th><th>entropy</th><th>β_eff</th><th>top sources (position, score)"
        f"</th><th>top predictions</th></tr>{''.join(rows)}</table>"
    )


def _step_view(result: GenerationAttributionLike, index: int) -> Widget:
    """The whole text with one row of values per step (each over its step's largest score)."""
    tokens = result.tokens[index]
    rows, labels = [], []
    for step in range(int(result.generated_lengths[index])):
        scores = result.scores[index, step, : len(tokens)].double()
        peak = float(scores.max())
        rows.append((scores / peak if peak > 0 else scores).tolist())
        labels.append(f"step {step}: {result.generated_tokens[index][step]!r}")
    return colored_tokens_multi(tokens, rows, labels)


def generation_html(result: GenerationAttributionLike) -> str:
    """One self-contained page for every prompt of the result."""
    parts: list[str | Widget] = []
    for index in range(len(result)):
        parts += [
            f"<section><h2>prompt {index}</h2>{_parameters(result, index)}"
            f"<p>prompt: {_code(result.prompt_text[index])}<br>generated: "
            f"{_code(result.generated_text[index])}</p>{_step_table(result, index)}"
            "<p>Each step's scores over the text before it (choose a step; colour = score over "
            "that step's largest; tokens after the explained position score 0):</p>",
            _step_view(result, index),
            _png(generation_heatmap(result, index), "generated step by source token heat map")
            + _png(confidence_trace(result, index), "beta_eff and entropy per step")
            + "</section>",
        ]
    title = f"tlscopes: {result.method} while generating on {result.model_name or 'a model'}"
    return html_page(title, parts)


__all__ = ["confidence_trace", "generation_heatmap", "generation_html"]
