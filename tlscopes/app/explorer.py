"""A single-file offline explorer: every position of a text explained by every scope.

:func:`explore` runs :func:`tlscopes.core.matrix.attribution_matrix` once per scope (one forward
pass each, every position's direction pulled back through it) and, with ``layers``, the layer
x token map of the last position (:func:`tlscopes.core.layers.attribute_layers`). The page lets a
reader click or hover a token to see what explains the prediction there, switch scopes, choose
linear or log colour and a colormap, read the top-k prediction as bars, see a number series as
values with influence bars, view the layer map and mask sink positions (the rest renormalised).
With an SAE it also lists the SAE features at one position (:func:`tlscopes.attribute_features`):
clicking a feature colours the tokens by its token map, clicking a token then lists the features
that token drives most. It is one HTML file with its script inlined once and no network access;
a notebook shows it.

Every position of a text costs one backward pass per position and scope, and the page holds
T(T+1)/2 scores per scope, so without ``positions`` a text may have at most
:data:`MAX_EVERY_POSITION_TOKENS` tokens; a longer one (up to the model's context: the
attribution checkpoints long prompts) names the positions to explain, e.g. ``[-1]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor

from tlscopes.core.layers import attribute_layers
from tlscopes.core.matrix import attribution_matrix
from tlscopes.core.scopes import SCOPE_NAMES, Scope, scope_from_name
from tlscopes.protocols import TransformerLensModel
from tlscopes.sae.features import attribute_features
from tlscopes.views.explorer_data import features_payload, layer_map, matrix_payload
from tlscopes.views.explorer_page import explorer_report

if TYPE_CHECKING:
    from tlscopes.sae.model import SAE
    from tlscopes.views.html import HtmlReport

# The longest text explained at every position when no positions are given. Its cost grows with
# the square of the length: 512 tokens are 512 backward passes per scope and 3 x 131,328 scores
# in the page (about 3 MB); 8,192 tokens would be hours of passes on a CPU and hundreds of MB.
MAX_EVERY_POSITION_TOKENS = 512


def explore_payload(
    model: TransformerLensModel,
    text: str,
    scopes: Sequence[str | Scope] = SCOPE_NAMES,
    *,
    positions: Sequence[int] | None = None,
    layers: bool = True,
    top_k: int = 10,
    title: str | None = None,
    sae: SAE | None = None,
    features: str | Sequence[int] | Tensor = "active",
    feature_position: int = -1,
    feature_labels: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The explorer's data for `text` (what :func:`explore` puts in its page); see there."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text is empty; pass a prompt to explore")
    resolved = [scope_from_name(scope) for scope in scopes]
    if not resolved:
        raise ValueError(f"pass at least one scope, e.g. {', '.join(SCOPE_NAMES)}")
    length = int(model.to_tokens(text).shape[-1])
    if positions is None and length > MAX_EVERY_POSITION_TOKENS:
        raise ValueError(
            f"the text is {length:,} tokens; every position is explained only up to "
            f"{MAX_EVERY_POSITION_TOKENS} tokens (one backward pass per position and scope, and "
            f"{len(resolved) * length * (length + 1) // 2:,} scores in the page here). Pass the "
            "positions to explain, e.g. positions=[-1] for the last (tlscopes explore "
            f"--positions=-1), or positions=range({length}) for every one anyway"
        )
    explained = list(range(length)) if positions is None else list(positions)
    results = [attribution_matrix(model, text, scope, explained, top_k=top_k) for scope in resolved]
    maps = []
    if layers:
        last = int(results[0].positions[-1])
        for scope in resolved:
            maps.append(layer_map(attribute_layers(model, text, scope, position=last)))
    section = None
    if sae is not None:
        found = attribute_features(model, text, sae, features, position=feature_position)
        if found.tokens != list(results[0].tokens[0]):
            raise ValueError(
                "the SAE features were explained on other tokens than the scopes; pass the "
                "text as a string"
            )
        section = features_payload(found, labels=feature_labels)
    return matrix_payload(results, text=text, title=title, layers=maps, features=section)


def explore(
    model: TransformerLensModel,
    text: str,
    scopes: Sequence[str | Scope] = SCOPE_NAMES,
    *,
    positions: Sequence[int] | None = None,
    layers: bool = True,
    top_k: int = 10,
    title: str | None = None,
    sae: SAE | None = None,
    features: str | Sequence[int] | Tensor = "active",
    feature_position: int = -1,
    feature_labels: Mapping[int, str] | None = None,
) -> HtmlReport:
    """An offline page explaining the prediction at every position of `text` with each scope.

    Args:
        model: a HookedTransformer or TransformerBridge with unprocessed weights.
        text: one prompt (a string, with the model's BOS convention); a comma-separated number
            series also gets the time-series view.
        scopes: scope names ("fisher", "temperature", "semantic") or Scope objects; a
            ``SemanticScope()`` without a target explains each position's top prediction.
        positions: the explained positions, negative from the end (default: every position).
            Without them a text may have at most ``MAX_EVERY_POSITION_TOKENS`` (512) tokens,
            else a ValueError says so before any pass: every position costs one backward pass
            per position and scope, and the page holds T(T+1)/2 scores per scope. A longer
            text, up to the model's context, names its positions (``[-1]``: the last; the
            page then holds T scores per scope) or passes ``range(T)`` to explain every one.
        layers: also compute each scope's layer x token map at the last explained position.
        top_k: predictions shown per position.
        title: the page's title (default: names the model).
        sae: an SAE (:func:`tlscopes.load_sae`) whose features the page also lists, from one
            :func:`tlscopes.attribute_features` call: each feature's id, activation, whether it
            fires and its token map ``||d pre_f / d x_t||`` (a leading BOS masked as a sink).
            At most the 64 features with the highest activation are listed
            (:data:`tlscopes.views.explorer_data.MAX_FEATURES`); all of them are computed.
        features: "active" (the features that fire at `feature_position`) or feature ids.
        feature_position: the position whose SAE features are explained (-1: the last).
        feature_labels: a description per feature id, shown beside it as plain text.

    Returns:
        An HtmlReport (``.save(path)`` writes it; a notebook displays it).

    Example:
        >>> explore(model, "The capital of France is").save("explorer.html")  # doctest: +SKIP
        >>> explore(model, "The capital of France is", sae=sae)  # doctest: +SKIP
    """
    payload = explore_payload(
        model,
        text,
        scopes,
        positions=positions,
        layers=layers,
        top_k=top_k,
        title=title,
        sae=sae,
        features=features,
        feature_position=feature_position,
        feature_labels=feature_labels,
    )
    return explorer_report(payload)


__all__ = [
    "MAX_EVERY_POSITION_TOKENS",
    "explore",
    "explore_payload",
]
