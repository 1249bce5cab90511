"""Case study: Semantic Scope and latent political bias (paper section 4.1, figure 2).

For a sentence about a person's background, Semantic Scope explains the logit of " liberal" and
of " conservative", and a DirectionScope explains their difference through the contrast
direction w_liberal - w_conservative (which tokens push the model from one label towards the
other). Writes bias.png (tokens coloured by score, each row normalised to its largest score
after BOS) and bias.html (the same, interactive, opens offline).

Usage: python scripts/case_bias.py --out DIR [--text TEXT]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

import tlscopes as ts
from tlscopes.views.html import combined_html
from tlscopes.views.plotting import draw_tokens, text_rows

TEXT = "The person grew up in the South and studied at Columbia. Politically, the person is a"
TARGETS = (" liberal", " conservative")
LINE_WIDTH = 64


def bias_attributions(model: Any, text: str = TEXT) -> list[ts.Attribution]:
    """Semantic Scope for each target and the contrast direction, from one forward pass."""
    contrast = ts.contrast_direction(model, *TARGETS)
    scopes = [ts.SemanticScope(target) for target in TARGETS]
    scopes.append(ts.DirectionScope(contrast, label="liberal - conservative"))
    return ts.attribute_many(model, text, scopes)


def normalised(result: ts.Attribution) -> list[float]:
    """Scores over the row's largest score after position 0 (BOS or the first token, which
    soaks up gradient on most prompts), clipped to 1, so the rest of the sentence stays visible."""
    scores = result.scores[0, : len(result.tokens[0])].double()
    peak = float(scores[1:].max()) if len(scores) > 1 else float(scores.max())
    return (scores / peak).clamp(max=1).tolist()


def plot_bias(results: list[ts.Attribution]) -> Figure:
    tokens = results[0].tokens[0]
    n_lines = text_rows(tokens, LINE_WIDTH)
    row_height = 0.45 + 0.42 * n_lines
    height = 0.5 + len(results) * row_height
    figure = Figure(figsize=(9, height))
    axes = figure.subplots(len(results), 1)
    labels = [
        f"Semantic Scope: {TARGETS[0]!r} (p = {float(results[0].target_probs[0]):.3f})",
        f"Semantic Scope: {TARGETS[1]!r} (p = {float(results[1].target_probs[0]):.3f})",
        "contrast direction w_liberal − w_conservative",
    ]
    figure.subplots_adjust(
        left=0.02, right=0.98, top=1 - 0.8 / height, bottom=0.05 / height, hspace=0.6
    )
    for ax, result, label in zip(axes, results, labels, strict=True):
        draw_tokens(ax, tokens, normalised(result), width=LINE_WIDTH)
        ax.set_title(label, fontsize=10, loc="left")
    top = ", ".join(
        f"{t!r} {p:.3f}"
        for t, p in zip(
            results[0].top_tokens[0][:4], results[0].top_probs[0][:4].tolist(), strict=True
        )
    )
    figure.suptitle(f"next-token prediction: {top}", fontsize=9, y=1 - 0.1 / height, va="top")
    return figure


def run(model: Any, out: Path, *, text: str = TEXT) -> list[Path]:
    """Computes the three attributions and writes bias.png and bias.html under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results = bias_attributions(model, text)
    png, page = out / "bias.png", out / "bias.html"
    plot_bias(results).savefig(png, dpi=110)
    page.write_text(
        combined_html(results, title="Semantic Scope: liberal vs conservative"), encoding="utf-8"
    )
    return [png, page]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--text", default=TEXT, help="the sentence to explain")
    args = parser.parse_args(argv)
    for path in run(ts.load_model(), args.out, text=args.text):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
