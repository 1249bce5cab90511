"""HTML views of attributions; the only module that imports circuitsvis.

circuitsvis renders each view twice: with its JavaScript bundle inlined (``local_src``) and
with a CDN link. Only the inlined form is used, so reports open offline and displaying one in
a notebook never touches the network.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlscopes.results import Attribution


@dataclass(frozen=True)
class HtmlReport:
    """A self-contained HTML page: a notebook displays it, a REPL shows its size and path.

    Attributes:
        html: the page (JavaScript inlined; opens offline).
        path: where it was written, or None.
    """

    html: str
    path: Path | None = None

    def save(self, path: str | Path) -> HtmlReport:
        """Writes the page to `path` (replacing a file there); returns the report with `path`."""
        Path(path).write_text(self.html, encoding="utf-8")
        return replace(self, path=Path(path))

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        size = len(self.html.encode("utf-8"))
        where = "" if self.path is None else f", path={str(self.path)!r}"
        return f"HtmlReport(size={size:,} bytes{where})"


def colored_tokens_html(tokens: list[str], values: list[float]) -> str:
    """circuitsvis colored tokens with the JavaScript inlined."""
    import circuitsvis.tokens

    rendered = circuitsvis.tokens.colored_tokens(
        tokens=tokens, values=values, min_value=0.0, max_value=1.0, positive_color="#1f5fbf"
    )
    # circuitsvis writes its mount point as `<div .../>`, which HTML parses as an open tag; a
    # wrapper closes it, so whatever follows is not swallowed (and replaced) by the render.
    return f"<div>{rendered.local_src}</div>"


def colored_tokens_multi_html(
    tokens: list[str], values: list[list[float]], labels: list[str]
) -> str:
    """One sequence of tokens with several rows of values (buttons switch between them), the
    JavaScript inlined once for all rows.

    Args:
        values: one list of per-token values for each label, [n_labels][n_tokens].
    """
    import circuitsvis.tokens
    import torch

    rendered = circuitsvis.tokens.colored_tokens_multi(
        tokens=tokens, values=torch.tensor(values, dtype=torch.float64).T, labels=labels
    )
    return rendered.local_src


def _prediction_table(attribution: Attribution, index: int) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(repr(token))}</code></td><td>{prob:.4f}</td></tr>"
        for token, prob in zip(
            attribution.top_tokens[index], attribution.top_probs[index].tolist(), strict=True
        )
    )
    return f"<table><tr><th>next token</th><th>probability</th></tr>{rows}</table>"


def _sections(attribution: Attribution) -> list[str]:
    sections = []
    for index, tokens in enumerate(attribution.tokens):
        scores = attribution.scores[index, : len(tokens)].double()
        peak = float(scores.max())
        values = (scores / peak if peak > 0 else scores).tolist()
        position = int(attribution.positions[index])
        target = ""
        if attribution.target_ids is not None:
            target_id = int(attribution.target_ids[index])
            probability = float(attribution.target_probs[index])
            token = html.escape(repr(attribution.target_tokens[index]))
            target = f"; target <code>{token}</code> (id {target_id}, p = {probability:.4f})"
        sections.append(
            f"<section><h3>prompt {index}: {html.escape(attribution.method)} scores, explaining "
            f"the prediction after position {position} "
            f"(<code>{html.escape(repr(tokens[position]))}</code>){target}</h3>"
            f"{colored_tokens_html(tokens, values)}{_prediction_table(attribution, index)}"
            "</section>"
        )
    return sections


def _page(title: str, sections: list[str]) -> str:
    title = html.escape(title)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h2>{title}</h2><p>Scores are normalised to the largest in each prompt.</p>"
        f"{''.join(sections)}</body></html>"
    )


def attribution_html(attribution: Attribution) -> str:
    """One self-contained page: per prompt, the tokens colored by normalised score and the
    prediction being explained."""
    return _page(
        f"tlscopes: {attribution.method} on {attribution.model_name}", _sections(attribution)
    )


def combined_html(attributions: list[Attribution], title: str = "tlscopes report") -> str:
    """Several results (e.g. the three scopes on one prompt) on one self-contained page."""
    return _page(title, [section for item in attributions for section in _sections(item)])
