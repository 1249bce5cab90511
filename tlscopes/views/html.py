"""HTML views of attributions; the only module that imports circuitsvis.

A page inlines circuitsvis' JavaScript bundle (about 1.3 MB) once, in one module script that
renders every view on the page, so reports open offline and do not grow by a bundle per view.
Everything that enters a page is escaped: text in the markup with ``html.escape``; token text
before circuitsvis gets it too, because circuitsvis inserts tokens as HTML (so ``<bos>`` shows
as ``<bos>``); and the JSON inlined in the script with ``<``, ``>``, ``&`` and every non-ASCII
character (U+2028 and U+2029 included) as ``\\u`` escapes, so no token or label can end the
script or start another.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

if TYPE_CHECKING:
    from tlscopes.protocols import AttributionLike

POSITIVE_COLOR = "#1f5fbf"
# How many tokens the per-prompt table of the highest scores lists.
TOP_TOKENS = 10
METHOD_NOTES = {
    "fisher": "Fisher Scope: how strongly each token moves the whole predicted distribution "
    "(top eigenvectors of the Fisher information, paper eq. 5-6)",
    "semantic": "Semantic Scope: how strongly each token moves the target token's logit "
    "(paper eq. 3-4)",
    "temperature": "Temperature Scope: how strongly each token moves the confidence "
    "β_eff = ‖y‖ (paper eq. 7-8)",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
section { border-top: 1px solid #ccc; margin-top: 1.5em; }
.legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.9em; }
.legend .bar { width: 12em; height: 1em; border: 1px solid #ccc; }
.tables { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
"""


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


@dataclass(frozen=True)
class Widget:
    """One circuitsvis component placed on a page by :func:`html_page`.

    Attributes:
        component: the circuitsvis React component's name ("ColoredTokens", ...).
        props: its props, already safe to display (token text HTML-escaped).
    """

    component: str
    props: dict[str, Any]


def _display_value(value: float) -> float | None:
    """Four significant digits (what the hover tooltip shows); None (uncoloured) if not finite."""
    value = float(value)
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _token_markup(tokens: Sequence[str]) -> list[str]:
    # circuitsvis sets token text as innerHTML; escaped, every token shows literally.
    return [html.escape(str(token), quote=False) for token in tokens]


def colored_tokens(
    tokens: Sequence[str], values: Sequence[float], *, max_value: float = 1.0
) -> Widget:
    """Tokens on boxes coloured from white (0) to blue (`max_value`); hovering shows the value.

    Args:
        values: one value per token; a non-finite value leaves its token uncoloured.
    """
    if len(tokens) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(values)} values; pass one per token")
    return Widget(
        "ColoredTokens",
        {
            "tokens": _token_markup(tokens),
            "values": [_display_value(v) for v in values],
            "minValue": 0.0,
            "maxValue": float(max_value),
            "positiveColor": POSITIVE_COLOR,
        },
    )


def colored_tokens_multi(
    tokens: Sequence[str], values: Sequence[Sequence[float]], labels: Sequence[str]
) -> Widget:
    """One token sequence with several labelled rows of values (buttons switch between them).

    Args:
        values: one list of per-token values for each label, [n_labels][n_tokens].
        labels: shown as plain text (circuitsvis escapes them itself).
    """
    if len(values) != len(labels) or any(len(row) != len(tokens) for row in values):
        raise ValueError(
            f"values must be [n_labels={len(labels)}][n_tokens={len(tokens)}], got rows of "
            f"{[len(row) for row in values]}"
        )
    columns = [[_display_value(row[t]) for row in values] for t in range(len(tokens))]
    return Widget(
        "ColoredTokensMulti",
        {"tokens": _token_markup(tokens), "values": columns, "labels": [str(x) for x in labels]},
    )


def script_json(value: Any) -> str:
    """JSON that is safe inside an inline <script>: no '<', '>', '&' or non-ASCII characters
    (U+2028 and U+2029 included) appear in it, only their \\u escapes."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _bundle() -> str:
    """circuitsvis' browser bundle, made safe to inline (no '</script' or '<!--' in it)."""
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"circuitsvis' JavaScript bundle {path} is missing; reinstall circuitsvis "
            "(pip install --force-reinstall circuitsvis)"
        ) from None
    if "CircuitsVis" not in text:
        raise RuntimeError(
            f"{path} does not define CircuitsVis; this circuitsvis version is not supported"
        )
    # The source map is not shipped next to the page. In a JavaScript string, regular
    # expression or comment, "<\/" means the same as "</", but it cannot end the script.
    text = re.sub(r"^//# sourceMappingURL=.*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)
    return text.replace("<!--", "<\\!--")


def html_page(title: str, parts: Sequence[str | Widget]) -> str:
    """One self-contained page: `title` (escaped here), then `parts` in order.

    Args:
        parts: markup the caller has escaped, or widgets. The bundle is inlined once, in a
            module script (deferred: it runs once the page is parsed) that renders every widget.
    """
    page_id = f"tlscopes-{uuid4().hex[:12]}"
    views, body = [], []
    for part in parts:
        if isinstance(part, Widget):
            mount = f"{page_id}-{len(views)}"
            views.append({"id": mount, "component": part.component, "props": part.props})
            body.append(f'<div id="{mount}" class="tlscopes-view"></div>')
        else:
            body.append(part)
    script = ""
    if views:
        script = (
            f'<script type="module">{_bundle()}\nconst views = {script_json(views)};\n'
            "for (const view of views) {\n"
            "  CircuitsVis.render(view.id, CircuitsVis[view.component], view.props);\n}\n</script>"
        )
    title = html.escape(title)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style>{script}</head><body><h1>{title}</h1>{''.join(body)}</body></html>"
    )


def legend_html(peak: float, note: str) -> str:
    """The colour scale: white at 0 to full blue at `peak`, with a sentence on what it means."""
    return (
        f'<div class="legend"><span>0</span><span class="bar" style="background: '
        f'linear-gradient(to right, #ffffff, {POSITIVE_COLOR})"></span>'
        f"<span>{peak:.4g}</span><span>{html.escape(note)}</span></div>"
    )


def _code(token: str) -> str:
    return f"<code>{html.escape(repr(token))}</code>"


def _number(value: float) -> str:
    return f'<td class="number">{value:.4g}</td>'


def _format_detail(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_format_detail(item) for item in value[:8])
        count = f"{len(value)} value{'' if len(value) == 1 else 's'}"
        return f"[{shown}{', …' if len(value) > 8 else ''}] ({count})"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:199] + "…"


def _parameters(attribution: AttributionLike, index: int) -> list[tuple[str, str]]:
    """(name, escaped HTML value) rows: the method, model, explained position and scope details."""
    tokens = attribution.tokens[index]
    position = int(attribution.positions[index])
    method = attribution.method
    rows = [
        ("method", html.escape(METHOD_NOTES.get(method, method))),
        ("model", html.escape(attribution.model_name or "unknown")),
        (
            "explained position",
            f"{position} ({_code(tokens[position])}): its next-token prediction",
        ),
    ]
    if attribution.target_ids is not None:
        rows.append(
            (
                "target token",
                f"{_code(attribution.target_tokens[index])} (id {int(attribution.target_ids[index])}"
                f", p = {float(attribution.target_probs[index]):.4g})",
            )
        )
    names = {"eigenvalues": "Fisher eigenvalues λ", "beta_eff": "β_eff = ‖y‖"}
    for key, value in attribution.details.items():
        if isinstance(value, list) and len(value) == len(attribution):
            value = value[index]
        if key == "eigenvalues" and isinstance(value, list):
            rows.append(("Fisher rank", str(len(value))))
        rows.append((names.get(key, key), html.escape(_format_detail(value))))
    return rows


def _tables(attribution: AttributionLike, index: int, scores: list[float], peak: float) -> str:
    tokens = attribution.tokens[index]
    # Highest first, ties in token order, non-finite scores last.
    order = sorted(
        range(len(tokens)),
        key=lambda t: (not math.isfinite(scores[t]), -scores[t] if math.isfinite(scores[t]) else 0),
    )
    top_rows = "".join(
        f"<tr><td>{rank}</td><td>{t}</td><td>{_code(tokens[t])}</td>{_number(scores[t])}"
        f"{_number(scores[t] / peak if peak > 0 else 0.0)}</tr>"
        for rank, t in enumerate(order[:TOP_TOKENS], start=1)
    )
    prediction_rows = "".join(
        f"<tr><td>{_code(token)}</td><td>{token_id}</td>{_number(probability)}</tr>"
        for token, token_id, probability in zip(
            attribution.top_tokens[index],
            attribution.top_token_ids[index].tolist(),
            attribution.top_probs[index].tolist(),
            strict=True,
        )
    )
    return (
        '<div class="tables"><table class="top-tokens"><tr><th>rank</th><th>position</th>'
        f"<th>token</th><th>score</th><th>score / max</th></tr>{top_rows}</table>"
        '<table class="prediction"><tr><th>next token</th><th>id</th><th>probability</th></tr>'
        f"{prediction_rows}</table></div>"
    )


def _sections(attribution: AttributionLike) -> list[str | Widget]:
    parts: list[str | Widget] = []
    for index, tokens in enumerate(attribution.tokens):
        scores = [float(s) for s in attribution.scores[index, : len(tokens)].double().tolist()]
        peak = max((s for s in scores if math.isfinite(s)), default=0.0)
        parameters = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{value}</td></tr>"
            for name, value in _parameters(attribution, index)
        )
        note = (
            f"colour = the token's score / the largest score in this prompt ({peak:.4g}); "
            "white is 0. Hover a token for its score; tokens after the explained position score 0."
        )
        parts += [
            f"<section><h2>{html.escape(attribution.method)}: prompt {index}</h2>"
            f'<table class="parameters">{parameters}</table>{legend_html(peak, note)}',
            colored_tokens(tokens, scores, max_value=peak if peak > 0 else 1.0),
            f"{_tables(attribution, index, scores, peak)}</section>",
        ]
    return parts


def _models(attributions: Sequence[AttributionLike]) -> str:
    names = dict.fromkeys(item.model_name or "unknown model" for item in attributions)
    return ", ".join(names)


def attribution_html(attribution: AttributionLike) -> str:
    """One self-contained page: per prompt, the scope's parameters, the tokens coloured by
    score with a legend, the highest-scoring tokens and the prediction being explained."""
    title = f"tlscopes: {attribution.method} on {_models([attribution])}"
    return html_page(title, _sections(attribution))


def combined_html(attributions: Sequence[AttributionLike], title: str = "tlscopes report") -> str:
    """Several results (e.g. the three scopes on one prompt) on one self-contained page, whose
    title names the model(s)."""
    parts = [part for item in attributions for part in _sections(item)]
    return html_page(f"{title} — {_models(attributions)}", parts)
