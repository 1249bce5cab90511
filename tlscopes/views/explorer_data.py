"""The explorer's data: results with many explained positions as one compact JSON payload.

A payload holds one prompt's tokens, the explained positions, each position's prediction
(top-k tokens and probabilities) and, per scope, one row of scores per explained position. A
row for position p holds positions 0..p only (later tokens score exactly 0, so they are left
out), and every number is rounded to three significant digits: that keeps a 200-token page
small while a colour or a bar cannot show more. The page itself is
:func:`tlscopes.views.explorer_page.explorer_report`.

A payload may also hold a ``features`` section (:func:`features_payload`): SAE features at one
explained position with each feature's token map, which the page lists in a features panel.

Results enter by duck typing (an Attribution from ``attribution_matrix``, a LayerAttribution,
a generation result, a FeatureAttribution), so the result classes can call into this module
without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tlscopes.series import SEPARATOR, is_number_series, series_groups
from tlscopes.views.explorer_page import explorer_report

if TYPE_CHECKING:
    from tlscopes.protocols import (
        AttributionLike,
        FeatureAttributionLike,
        GenerationAttributionLike,
        LayerAttributionLike,
    )
    from tlscopes.views.html import HtmlReport

FORMAT_VERSION = 1
SIGNIFICANT_DIGITS = 3
# The SAE features a page lists at most, the highest activations first: a longer list would not
# be read in a panel, and each feature costs a row of scores in the page.
MAX_FEATURES = 64
SCOPE_NOTES = {
    "fisher": "Fisher Scope: which tokens move the whole predicted distribution (paper eq. 5-6)",
    "temperature": "Temperature Scope: which tokens move the confidence β_eff = ‖y‖ "
    "(paper eq. 7-8)",
    "semantic": "Semantic Scope: which tokens move the target token's logit (paper eq. 3-4)",
}


def rounded(value: float) -> float | None:
    """Three significant digits; None for a value that is not finite."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def series_payload(text: str, tokens: Sequence[str]) -> dict[str, Any] | None:
    """{"values", "groups"} when `text` is a number series whose tokens spell its numbers."""
    if not is_number_series(text):
        return None
    values = [float(item) for item in text.split(SEPARATOR) if item.strip()]
    groups = series_groups(tokens)
    if len(groups) != len(values):
        return None
    return {"values": values, "groups": groups}


def masked_positions(token_ids: Sequence[int], info: Mapping[str, Any]) -> list[int]:
    """Positions masked by default: those holding the model's BOS token, as the result's
    provenance records it (``info["bos_token_id"]``; :func:`tlscopes.tokens.bos_token_id`).
    BOS is an attention sink whose large scores would wash out every other colour."""
    bos = info.get("bos_token_id")
    if bos is None:
        return []
    return [position for position, token in enumerate(token_ids) if int(token) == int(bos)]


def _text_without(tokens: Sequence[str], masked: Sequence[int]) -> str:
    skipped = set(masked)
    return "".join(token for position, token in enumerate(tokens) if position not in skipped)


def _rows(scores: Any, positions: Sequence[int]) -> list[list[float | None]]:
    return [
        [rounded(value) for value in scores[row, : position + 1].double().tolist()]
        for row, position in enumerate(positions)
    ]


def _predictions(attribution: AttributionLike) -> list[list[list[Any]]]:
    return [
        [[token, rounded(prob)] for token, prob in zip(tokens, probs.tolist(), strict=True)]
        for tokens, probs in zip(attribution.top_tokens, attribution.top_probs, strict=True)
    ]


def _details(attribution: AttributionLike, row: int) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key in ("beta_eff", "eigenvalues"):
        value = attribution.details.get(key)
        if isinstance(value, list) and len(value) == len(attribution):
            value = value[row]
        if isinstance(value, (int, float)):
            shown[key] = rounded(value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            shown[key] = [rounded(v) for v in value[:8]]
    return shown


def scope_payload(attribution: AttributionLike) -> dict[str, Any]:
    """One scope's rows: scores up to each explained position, the target and details."""
    positions = [int(p) for p in attribution.positions.tolist()]
    targets = attribution.target_tokens
    return {
        "name": attribution.method,
        "note": SCOPE_NOTES.get(attribution.method, attribution.method),
        "rows": _rows(attribution.scores, positions),
        "targets": None if targets is None else list(targets),
        "details": [_details(attribution, row) for row in range(len(positions))],
    }


def matrix_payload(
    results: Sequence[AttributionLike],
    *,
    text: str | None = None,
    title: str | None = None,
    layers: Sequence[Mapping[str, Any]] = (),
    features: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload of one prompt explained at many positions by one or more scopes.

    Args:
        results: Attributions of the same prompt with the same explained positions (as
            ``attribution_matrix`` returns for each scope).
        text: the prompt, to recognise a number series (its time-series view).
        layers: layer maps from :func:`layer_map`.
        features: SAE features of the same prompt, from :func:`features_payload` (None: the
            page has no features panel).
    """
    if not results:
        raise ValueError("pass at least one result to explore")
    first = results[0]
    tokens = list(first.tokens[0])
    positions = [int(p) for p in first.positions.tolist()]
    for other in results[1:]:
        if list(other.tokens[0]) != tokens or [int(p) for p in other.positions] != positions:
            raise ValueError(
                f"the {other.method} result explains another prompt or other positions than "
                f"the {first.method} result; explore results of one attribution_matrix call each"
            )
    if any(list(row) != tokens for row in first.tokens):
        raise ValueError("the result holds several prompts; explore one prompt (result[i])")
    masked = masked_positions(first.token_ids[0, : len(tokens)].tolist(), first.info)
    if features is not None and not 0 <= int(features["position"]) < len(tokens):
        raise ValueError(
            f"the features explain position {features['position']}, outside the prompt's "
            f"{len(tokens)} tokens; pass the features of this prompt"
        )
    if text is None:
        text = _text_without(tokens, masked)
    return {
        "version": FORMAT_VERSION,
        "title": title or f"tlscopes explorer: {first.model_name or 'model'}",
        "model": first.model_name or "unknown",
        "tokens": tokens,
        "positions": positions,
        "predictions": _predictions(first),
        "scopes": [scope_payload(result) for result in results],
        "masked": masked,
        "series": series_payload(text, tokens),
        "layers": list(layers),
        "steps": None,
        "features": None if features is None else dict(features),
    }


def features_payload(
    result: FeatureAttributionLike,
    *,
    limit: int = MAX_FEATURES,
    labels: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The page's features section: SAE features at one explained position, each with its
    token map (what :func:`tlscopes.attribute_features` returns, by duck typing).

    Args:
        result: a FeatureAttribution of the page's prompt.
        limit: the most features listed (default 64, ``MAX_FEATURES``): those with the highest
            activation, ties in the result's order; "total" says how many the result holds.
        labels: a description per feature id, shown beside it (e.g. an auto-interpretation);
            plain text, never markup.

    Returns:
        {"hook", "position" (the explained position), "sae" (its source, sha256, nonlinearity
        and width), "total", "masked" (the sink positions the views leave out: a leading BOS
        unless the result has ``include_bos``), "items"}, with "items" the listed features,
        each {"id", "label" (or None), "activation", "pre_activation", "fires" (activation >
        0), "row"}: row[t] = ||d pre_f / d x_t|| for t = 0..position (later tokens score 0 and
        are left out), rounded to three significant digits like the scopes' rows.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit is the most features listed, a positive integer; got {limit!r}")
    position = int(result.position)
    ids = [int(feature) for feature in result.features.tolist()]
    activations = result.activations.double().tolist()
    pre_activations = result.pre_activations.double().tolist()
    fires = [bool(value) for value in result.fires.tolist()]
    labels = labels or {}
    order = sorted(range(len(ids)), key=lambda row: -activations[row])[:limit]
    items = [
        {
            "id": ids[row],
            "label": None if labels.get(ids[row]) is None else str(labels[ids[row]]),
            "activation": rounded(activations[row]),
            "pre_activation": rounded(pre_activations[row]),
            "fires": fires[row],
            "row": [rounded(v) for v in result.scores[row, : position + 1].double().tolist()],
        }
        for row in order
    ]
    sae = result.sae
    hidden = [] if result.include_bos else [t for t in result.sink_positions if t <= position]
    return {
        "hook": result.hook,
        "position": position,
        "sae": {
            "source": str(sae.get("source", "unknown")),
            "sha256": str(sae.get("sha256", "")),
            "activation": sae.get("activation"),
            "d_sae": sae.get("d_sae"),
        },
        "total": len(ids),
        "masked": [int(t) for t in hidden],
        "items": items,
    }


def layer_map(layered: LayerAttributionLike, index: int = 0) -> dict[str, Any]:
    """A layer x token map for the page: rows are layers 0..L-1, up to the explained position."""
    position = int(layered.positions[index])
    return {
        "scope": layered.inputs.method,
        "position": position,
        "rows": [
            [rounded(v) for v in layered.scores[index, layer, : position + 1].double().tolist()]
            for layer in range(layered.n_layers)
        ],
    }


def explore_matrix(result: AttributionLike, *, title: str | None = None) -> HtmlReport:
    """The explorer page of an ``attribution_matrix`` result (one prompt, many positions)."""
    return explorer_report(matrix_payload([result], title=title))


def explore_layers(layered: LayerAttributionLike, index: int = 0) -> HtmlReport:
    """The explorer page of one prompt of a LayerAttribution: its explained position's scores
    and the layer x token map."""
    payload = matrix_payload([layered.inputs[index]], layers=[layer_map(layered, index)])
    return explorer_report(payload)


def generation_payload(result: GenerationAttributionLike, index: int = 0) -> dict[str, Any]:
    """The payload of one prompt's generation: one row per generated step, explained at
    position prompt_length + s - 1, with the generated token, its probability and entropy."""
    if not 0 <= index < len(result):
        raise IndexError(f"prompt {index} is out of range for {len(result)} prompts")
    tokens = list(result.tokens[index])
    steps = int(result.generated_lengths[index])
    positions = [int(p) for p in result.positions[index, :steps].tolist()]
    generated = list(result.generated_tokens[index][:steps])
    predictions = [
        [[token, rounded(prob)] for token, prob in zip(top, probs.tolist(), strict=True)]
        for top, probs in zip(result.top_tokens[index], result.top_probs[index], strict=False)
    ][:steps]
    beta = [rounded(v) for v in result.beta_eff[index, :steps].tolist()]
    scope = {
        "name": result.method,
        "note": SCOPE_NOTES.get(result.method, result.method),
        "rows": _rows(result.scores[index], positions),
        "targets": generated if result.method == "semantic" else None,
        "details": [{"beta_eff": value} for value in beta],
    }
    prompt_length = int(result.prompt_lengths[index])
    masked = masked_positions(result.token_ids[index, : len(tokens)].tolist(), result.info)
    return {
        "version": FORMAT_VERSION,
        "title": f"tlscopes explorer: generation on {result.model_name or 'model'}",
        "model": result.model_name or "unknown",
        "tokens": tokens,
        "positions": positions,
        "predictions": predictions,
        "scopes": [scope],
        "masked": masked,
        "series": series_payload(
            _text_without(tokens[:prompt_length], masked), tokens[:prompt_length]
        ),
        "layers": [],
        "steps": {
            "generated": generated,
            "probs": [rounded(v) for v in result.probs[index, :steps].tolist()],
            "entropy": [rounded(v) for v in result.entropy[index, :steps].tolist()],
        },
        "features": None,
    }


def explore_generation(result: GenerationAttributionLike, index: int = 0) -> HtmlReport:
    """The explorer page of one prompt's generation: click a token to see what explains the
    prediction of the token generated after it."""
    return explorer_report(generation_payload(result, index))


__all__ = [
    "explore_generation",
    "explore_layers",
    "explore_matrix",
    "features_payload",
    "layer_map",
    "matrix_payload",
    "rounded",
    "generation_payload",
    "scope_payload",
    "series_payload",
    "masked_positions",
]
