"""Views of SAE feature attributions: an offline HTML report and matplotlib figures.

The report shows, for the features of a :class:`~tlscopes.results.feature_attribution.
FeatureAttribution`, each feature's token map (buttons switch features; tokens coloured by the
feature's score / its largest score, sinks uncoloured), a table of the features with their
activations, and the reverse view: the features each input token drives most. Everything that
enters the page is escaped (:mod:`tlscopes.views.html`).
"""

from __future__ import annotations

import html
import math
from typing import Any

from matplotlib.figure import Figure

from tlscopes.views.html import colored_tokens_multi, html_page, legend_html
from tlscopes.views.plotting import display_token, draw_tokens, text_rows

# How many features the report's token maps and tables list at most.
REPORT_FEATURES = 64
DRIVERS_PER_TOKEN = 3


def _number(value: float) -> str:
    return f'<td class="number">{value:.4g}</td>'


def _code(token: str) -> str:
    return f"<code>{html.escape(repr(token))}</code>"


def _normalised_map(result: Any, feature: int) -> list[float]:
    values = [float(v) for v in result.token_map(feature).tolist()]
    peak = max((v for v in values if math.isfinite(v)), default=0.0)
    return [v / peak if peak > 0 and math.isfinite(v) else v for v in values]


def _parameters(result: Any) -> str:
    sae = result.sae
    position = result.position
    rows = [
        ("model", html.escape(result.model_name or "unknown")),
        ("hook point", f"<code>{html.escape(result.hook)}</code>"),
        ("explained position", f"{position} ({_code(result.tokens[position])})"),
        ("SAE", html.escape(str(sae.get("source", "unknown")))),
        ("SAE sha256", f"<code>{html.escape(str(sae.get('sha256', '')))}</code>"),
        (
            "SAE",
            html.escape(
                f"{sae.get('activation', '?')}, d_in {sae.get('d_in', '?')}, "
                f"d_sae {sae.get('d_sae', '?')}"
            ),
        ),
        ("features", str(len(result.features))),
    ]
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)


def _sink_note(result: Any) -> str:
    if not result.sink_positions:
        return ""
    if result.include_bos:
        return "<p>BOS is shown (include_bos=True).</p>"
    frame = result.sink_scores()
    ratio = frame["ratio_to_max_other"]
    finite = ratio[ratio.map(math.isfinite)]
    median = float(finite.median()) if len(finite) else math.nan
    return (
        "<p>BOS is left out of the views (uncoloured): its residual norm is many times the "
        "others' and SAEs are not trained on it. It is a sink: its score is "
        f"{median:.3g}x the largest other token's for the median feature.</p>"
    )


def _feature_table(result: Any, count: int) -> str:
    rows = "".join(
        f"<tr><td>{int(f)}</td>{_number(float(pre))}{_number(float(act))}"
        f"<td>{'yes' if fires else 'no'}</td></tr>"
        for f, pre, act, fires in list(
            zip(
                result.features.tolist(),
                result.pre_activations.tolist(),
                result.activations.tolist(),
                result.fires.tolist(),
                strict=True,
            )
        )[:count]
    )
    return (
        '<table class="features"><tr><th>feature</th><th>pre-activation</th>'
        f"<th>activation</th><th>fires</th></tr>{rows}</table>"
    )


def _drivers_table(result: Any) -> str:
    rows = []
    for t in result.shown_positions:
        top = result.top_features(t, k=DRIVERS_PER_TOKEN)
        drivers = ", ".join(
            f"{int(row.feature)} ({row.score:.3g})" for row in top.itertuples() if row.score > 0
        )
        rows.append(f"<tr><td>{t}</td><td>{_code(result.tokens[t])}</td><td>{drivers}</td></tr>")
    return (
        "<h2>Reverse view: the features each token drives most</h2>"
        '<table class="drivers"><tr><th>position</th><th>token</th>'
        f"<th>features (score)</th></tr>{''.join(rows)}</table>"
    )


def feature_attribution_html(result: Any) -> str:
    """One self-contained page for a FeatureAttribution (see the module docstring)."""
    title = f"tlscopes: SAE features at {result.hook} on {result.model_name or 'a model'}"
    parts: list = [f'<table class="parameters">{_parameters(result)}</table>', _sink_note(result)]
    if len(result.features) == 0:
        parts.append("<p>No feature fires at the explained position.</p>")
        return html_page(title, parts)
    count = min(len(result.features), REPORT_FEATURES)
    features = result.features.tolist()[:count]
    labels = [
        f"feature {f} (act {float(a):.3g})"
        for f, a in zip(features, result.activations.tolist()[:count], strict=True)
    ]
    note = (
        "colour = the token's score ||d pre_f / d x_t|| / the feature's largest score; "
        "uncoloured: sinks. Buttons switch features."
    )
    parts += [
        legend_html(1.0, note),
        colored_tokens_multi(result.tokens, [_normalised_map(result, f) for f in features], labels),
        "<h2>Features at the explained position</h2>",
        _feature_table(result, count),
        _drivers_table(result),
    ]
    return html_page(title, parts)


def feature_token_figure(result: Any, feature: int, *, width: int = 72) -> Figure:
    """One feature's token map: the prompt as text on boxes coloured by the feature's score /
    its largest score (sinks uncoloured), the explained position outlined in red."""
    values = _normalised_map(result, feature)
    rows = text_rows(result.tokens, width)
    figure = Figure(figsize=(10, 0.6 + 0.32 * rows))
    axes = figure.add_axes((0.01, 0.01, 0.98, 0.86))
    draw_tokens(axes, result.tokens, values, width=width, highlight=[result.position])
    row = result.row(feature)
    figure.suptitle(
        f"feature {feature} at {result.hook}, position {result.position} "
        f"(activation {float(result.activations[row]):.3g})",
        fontsize=10,
    )
    return figure


def top_features_figure(result: Any, token_position: int, k: int = 10) -> Figure:
    """The reverse view as bars: the k features the token at `token_position` drives most."""
    top = result.top_features(token_position, k=k)
    figure = Figure(figsize=(6, 0.6 + 0.3 * max(len(top), 1)), layout="constrained")
    axes = figure.add_subplot()
    labels = [
        f"{int(f)}{'' if fires else ' (silent)'}"
        for f, fires in zip(top["feature"], top["fires"], strict=True)
    ]
    axes.barh(range(len(top)), top["score"].tolist(), color="#1f5fbf")
    axes.set_yticks(range(len(top)), labels)
    axes.invert_yaxis()
    axes.set_xlabel("||d pre_f / d x_t||")
    token = display_token(result.tokens[token_position])
    axes.set_title(f"features driven by token {token_position % len(result.tokens)} {token!r}")
    return figure


__all__ = ["feature_attribution_html", "feature_token_figure", "top_features_figure"]
