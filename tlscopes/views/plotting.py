"""Static figures of token scores (matplotlib, no pyplot state) and small offline HTML pages.

:func:`draw_tokens` lays tokens out as text, each on a box coloured by its score, the way the
paper's figures show attributions; :func:`tokens_page` puts several rows of coloured tokens
(circuitsvis, JavaScript inlined once) on one page that opens offline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tlscopes.views.html import colored_tokens, colored_tokens_multi, html_page, legend_html

# Axis units are monospace character widths; a line of text is this many of them high.
_LINE_HEIGHT = 1.6
# A monospace glyph is about 0.6 em wide (DejaVu Sans Mono, matplotlib's default).
_GLYPH_WIDTH_EM = 0.6


def display_token(token: str) -> str:
    """A token as it reads in a figure: newlines and tabs made visible, nothing else changed."""
    return token.replace("\n", "↵").replace("\t", "⇥")


def token_lines(tokens: Sequence[str], width: int) -> list[list[tuple[int, int]]]:
    """Greedy line breaking: (token index, x offset in characters) per line, `width` per line."""
    lines: list[list[tuple[int, int]]] = [[]]
    cursor = 0
    for index, token in enumerate(tokens):
        length = max(1, len(display_token(token)))
        if cursor > 0 and cursor + length > width:
            lines.append([])
            cursor = 0
        lines[-1].append((index, cursor))
        cursor += length
    return lines


def draw_tokens(
    axes: Axes,
    tokens: Sequence[str],
    values: Sequence[float],
    *,
    width: int = 72,
    cmap: str = "Blues",
    highlight: Sequence[int] = (),
) -> None:
    """Draws tokens as wrapped monospace text on boxes coloured by value (0 to 1).

    The font size is set so that `width` characters fill the axes' current width; lay the
    figure out (fixed axes or ``layout="constrained"`` sized beforehand) before calling.

    Args:
        values: one value per token in [0, 1] (normalise first); NaN leaves a token uncoloured.
        highlight: token indices outlined in red (e.g. the explained position).
    """
    if len(tokens) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(values)} values")
    colour_map = colormaps[cmap]
    figure = axes.get_figure()
    axes_inches = axes.get_position().width * figure.get_figwidth()
    fontsize = axes_inches * 72 / ((width + 1) * _GLYPH_WIDTH_EM)
    lines = token_lines(tokens, width)
    for row, line in enumerate(lines):
        y = -row * _LINE_HEIGHT
        for index, x in line:
            text = display_token(tokens[index])
            value = float(values[index])
            face = "white" if value != value else colour_map(0.05 + 0.85 * min(max(value, 0), 1))
            edge = "red" if index in highlight else "none"
            axes.add_patch(
                Rectangle((x, y - 0.55), max(1, len(text)), 1.1, facecolor=face, edgecolor=edge)
            )
            dark = value == value and value > 0.6
            axes.text(
                x,
                y,
                text,
                family="monospace",
                fontsize=fontsize,
                va="center",
                ha="left",
                color="white" if dark else "black",
            )
    axes.set_xlim(-0.5, width + 0.5)
    axes.set_ylim(-(len(lines) - 1) * _LINE_HEIGHT - 0.9, 0.9)
    axes.axis("off")


def text_rows(tokens: Sequence[str], width: int = 72) -> int:
    """How many lines :func:`draw_tokens` needs, to size a figure."""
    return len(token_lines(tokens, width))


def tokens_page(title: str, rows: Sequence[tuple[str, Sequence[str], Sequence[float]]]) -> str:
    """One self-contained HTML page: per row a heading and its tokens coloured by value (0-1).

    circuitsvis' JavaScript is inlined once for all rows; headings and tokens show literally.
    """
    parts: list = [legend_html(1.0, "colour = value, from 0 (white) to 1")]
    for heading, tokens, values in rows:
        parts += [
            f"<section><h2>{html.escape(heading)}</h2>",
            colored_tokens(list(tokens), [float(v) for v in values]),
            "</section>",
        ]
    return html_page(title, parts)


def token_rows_page(
    title: str,
    tokens: Sequence[str],
    rows: Sequence[tuple[str, Sequence[float]]],
    *,
    note: str = "",
    extra_html: str = "",
) -> str:
    """One self-contained HTML page: one token sequence with several labelled rows of values
    (circuitsvis buttons switch rows; the JavaScript is inlined once).

    Args:
        rows: (label, one value per token) for each row; labels show literally.
        note: a sentence shown above the tokens (escaped).
        extra_html: markup appended as is (e.g. a table of predictions); escape what it holds.
    """
    view = colored_tokens_multi(
        list(tokens),
        [[float(v) for v in values] for _, values in rows],
        [label for label, _ in rows],
    )
    return html_page(title, [f"<p>{html.escape(note)}</p>", view, extra_html])


__all__ = [
    "display_token",
    "draw_tokens",
    "series_figure",
    "text_rows",
    "token_lines",
    "token_rows_page",
    "tokens_page",
]


def layer_heatmap(result: Any, index: int = 0, *, normalize: str = "layer") -> Figure:
    """A LayerAttribution as a layer x token heat map (and, with heads, a layer x head panel:
    each head's score summed over positions).

    Args:
        normalize: "layer" scales each layer's row to its largest score (where in the sequence
            each depth draws from), "global" one scale for all (how influence grows with depth).
    """
    if normalize not in ("layer", "global"):
        raise ValueError(f"normalize must be 'layer' or 'global', got {normalize!r}")
    tokens = result.tokens[index]
    position = int(result.positions[index])
    scores = result.scores[index, :, : position + 1].double()
    peak = scores.amax(dim=1, keepdim=True) if normalize == "layer" else scores.max()
    shown = (scores / peak.clamp_min(1e-300)).numpy()
    panels = 2 if result.head_scores is not None else 1
    width = max(6.0, 0.35 * (position + 1) + 2.5)
    figure = Figure(figsize=(width + 3.5 * (panels - 1), 0.3 * scores.shape[0] + 2.5))
    axes = figure.subplots(1, panels, squeeze=False)[0]
    image = axes[0].imshow(shown, aspect="auto", cmap="Blues", vmin=0, vmax=1)
    axes[0].set_xticks(range(position + 1))
    axes[0].set_xticklabels([display_token(t) for t in tokens[: position + 1]], rotation=70)
    axes[0].set_ylabel("layer (residual stream entering it)")
    axes[0].set_title(f"{result.inputs.method} scope by layer ({normalize} scale)")
    figure.colorbar(image, ax=axes[0], fraction=0.04)
    if result.head_scores is not None:
        per_head = result.head_scores[index, :, :, : position + 1].double().sum(dim=-1)
        head_image = axes[1].imshow(per_head.numpy(), aspect="auto", cmap="Oranges")
        axes[1].set_xlabel("head")
        axes[1].set_ylabel("layer")
        axes[1].set_title("heads (summed over positions)")
        figure.colorbar(head_image, ax=axes[1], fraction=0.04)
    figure.tight_layout()
    return figure


def layer_page_parts(result: Any, heading: str = "") -> list:
    """Page parts (for :func:`tlscopes.views.html.html_page`) showing a LayerAttribution: per prompt the
    heat map as an inline PNG and the input tokens coloured by their scores."""
    import base64
    import io

    parts: list = []
    for index, tokens in enumerate(result.tokens):
        buffer = io.BytesIO()
        result.heatmap(index).savefig(buffer, format="png", dpi=90)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        scores = result.input_scores[index, : len(tokens)].double()
        peak = float(scores.max()) if len(tokens) else 0.0
        values = (scores / peak if peak > 0 else scores).tolist()
        title = html.escape(heading or f"prompt {index}: layer by token")
        parts += [
            f"<section><h2>{title}</h2>",
            f'<img alt="layer by token heat map" src="data:image/png;base64,{encoded}">',
            "<h3>input tokens</h3>",
            colored_tokens(list(tokens), values),
            "</section>",
        ]
    return parts


def layer_attribution_html(result: Any, path: Any = None) -> Any:
    """A page for a LayerAttribution that opens offline (see :func:`layer_page_parts`).
    Returns an HtmlReport, written to `path` when given."""
    from tlscopes.views.html import HtmlReport

    title = f"tlscopes: {result.inputs.method} by layer on {result.inputs.model_name}"
    report = HtmlReport(html_page(title, layer_page_parts(result)))
    return report if path is None else report.save(path)


def series_figure(
    values: Sequence[float], influence: Sequence[float | None], *, title: str = ""
) -> Figure:
    """A number series as a line with one influence bar per value (the explorer's time-series
    view as a static figure). A value with influence None (after the explained position) gets
    no bar; bars are scaled to the largest influence."""
    if len(values) != len(influence):
        raise ValueError(f"{len(values)} values but {len(influence)} influences; pass one each")
    figure = Figure(figsize=(max(5.0, min(12.0, 0.3 * len(values) + 2.0)), 3.2))
    axes = figure.subplots()
    positions = list(range(len(values)))
    peak = max((v for v in influence if v is not None), default=0.0)
    heights = [0.0 if v is None or peak <= 0 else v / peak for v in influence]
    bars = axes.twinx()
    bars.bar(positions, heights, width=0.7, color="#9ecae1", label="influence")
    bars.set_ylim(0, 1.05 * 2)  # the bars fill the lower half, under the line
    bars.set_yticks([])
    axes.set_zorder(bars.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.plot(positions, list(values), color="#444444", marker="o", markersize=3, label="value")
    axes.set_xlabel("value index (bars: influence on the prediction, delimiters left out)")
    axes.set_ylabel("value")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure
