"""Case study: Fisher Scope on a teacher-forced translation (paper section 4.2, figure 3).

A German sentence and its English translation are fed as one prompt, "German: ... English: ...",
in the format of the paper's IWSLT2017 evaluation. At every English position Fisher Scope
explains the whole predicted distribution of the next token; the matrix of source-token scores
by target position comes from one forward pass and batched backward passes
(:func:`tlscopes.core.matrix.attribution_matrix`). Writes translation.png (left: each target row's
scores over the German tokens, normalised to the row's largest; right: the top 7 predicted
tokens and their probabilities at each position, the actual next token in bold) and
translation.html (every row's attribution over the whole prompt).

Usage: python scripts/case_translation.py --out DIR [--german TEXT --english TEXT]
"""

from __future__ import annotations

import argparse
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

import tlscopes as ts
from tlscopes.core.matrix import attribution_matrix
from tlscopes.views.plotting import display_token, token_rows_page

GERMAN = "Der alte Mann liest jeden Morgen die Zeitung im Garten."
ENGLISH = "The old man reads the newspaper in the garden every morning."
TOP_K = 7


@dataclass(frozen=True)
class Translation:
    """A teacher-forced translation's Fisher Scope matrix.

    Attributes:
        result: one row per target position (see attribution_matrix).
        source: token positions of the German sentence.
        targets: the English token that follows each explained position.
    """

    result: ts.Attribution
    source: list[int]
    targets: list[str]


def token_count(model: Any, text: str) -> int:
    return int(model.to_tokens(text).shape[1])


def translation_matrix(model: Any, german: str = GERMAN, english: str = ENGLISH) -> Translation:
    """Fisher Scope at every English position of "German: <german> English: <english>"."""
    text = f"German: {german} English: {english}"
    tokens = model.to_tokens(text)[0]
    start = token_count(model, "German:")
    end = token_count(model, f"German: {german}")
    context = token_count(model, f"German: {german} English:")
    prefix = model.to_tokens(f"German: {german} English:")[0]
    if not bool((tokens[:context] == prefix).all()):
        raise ValueError("the tokenizer merges tokens across 'English:'; pass other sentences")
    positions = list(range(context - 1, len(tokens) - 1))
    result = attribution_matrix(model, text, ts.FisherScope(), positions, top_k=TOP_K)
    names = result.tokens[0]
    return Translation(result, list(range(start, end)), [names[p + 1] for p in positions])


def plot_translation(translation: Translation) -> Figure:
    result, source = translation.result, translation.source
    names = result.tokens[0]
    scores = result.scores[:, source].double()
    scores = (scores / scores.max(dim=1, keepdim=True).values).numpy()
    n_rows = len(translation.targets)
    figure = Figure(figsize=(7 + 0.38 * len(source), 1.4 + 0.36 * n_rows))
    heat, table = figure.subplots(1, 2, gridspec_kw={"width_ratios": [len(source), 11]})
    heat.imshow(scores, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    heat.set_xticks(range(len(source)))
    heat.set_xticklabels([display_token(names[t]) for t in source], rotation=60, ha="right")
    heat.set_yticks(range(n_rows))
    heat.set_yticklabels([repr(t) for t in translation.targets], color="#b01010")
    heat.set_ylabel("next English token (teacher-forced)")
    heat.set_title(
        "Fisher Scope: source tokens → each target position\n(row-normalised)", fontsize=10
    )

    probs = result.top_probs.double().numpy()
    table.imshow(probs, cmap="Oranges", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    for row in range(n_rows):
        for column in range(probs.shape[1]):
            token = result.top_tokens[row][column]
            actual = token == translation.targets[row]
            table.text(
                column,
                row,
                f"{display_token(token).strip() or repr(token)}\n{probs[row, column]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                fontweight="bold" if actual else "normal",
                color="white" if probs[row, column] > 0.6 else "black",
            )
    table.set_xticks(range(probs.shape[1]))
    table.set_xticklabels([str(k + 1) for k in range(probs.shape[1])])
    table.set_yticks([])
    table.set_title(f"top {TOP_K} predicted tokens (bold: the actual next token)", fontsize=10)
    figure.tight_layout()
    return figure


def translation_page(translation: Translation) -> str:
    """The whole prompt coloured by each target position's scores (one button per position),
    and the predictions at each position."""
    result = translation.result
    rows = []
    for row, target in enumerate(translation.targets):
        scores = result.scores[row].double()
        rows.append((f"→ {target!r}", (scores / scores.max()).tolist()))
    cells = "".join(
        f"<tr><td><code>{html.escape(repr(target))}</code></td>"
        + "".join(
            f"<td><code>{html.escape(repr(token))}</code> {prob:.3f}</td>"
            for token, prob in zip(
                result.top_tokens[row], result.top_probs[row].tolist(), strict=True
            )
        )
        + "</tr>"
        for row, target in enumerate(translation.targets)
    )
    table = f"<h3>top {TOP_K} predictions at each position</h3><table><tr><th>next token</th>{'<th></th>' * TOP_K}</tr>{cells}</table>"
    return token_rows_page(
        "Fisher Scope on a teacher-forced translation",
        result.tokens[0],
        rows,
        note="One button per target position: the prompt coloured by that position's Fisher "
        "Scope scores, normalised to their largest.",
        extra_html=table,
    )


def run(model: Any, out: Path, *, german: str = GERMAN, english: str = ENGLISH) -> list[Path]:
    """Writes translation.png and translation.html under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    print(
        "   translation: Fisher Scope at every English position (one forward pass, batched "
        "backward passes; a few minutes on 2 CPU cores)",
        flush=True,
    )
    translation = translation_matrix(model, german, english)
    png, page = out / "translation.png", out / "translation.html"
    plot_translation(translation).savefig(png, dpi=110)
    page.write_text(translation_page(translation), encoding="utf-8")
    return [png, page]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--german", default=GERMAN)
    parser.add_argument("--english", default=ENGLISH)
    args = parser.parse_args(argv)
    for path in run(ts.load_model(), args.out, german=args.german, english=args.english):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
