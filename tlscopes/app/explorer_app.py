"""The live app's logic, without a web framework: requests in, explorer payloads out.

:class:`ExplorerApp` explains one position with one scope (:meth:`ExplorerApp.attribute`),
every position with the three scopes (:meth:`ExplorerApp.explore`) or the SAE features at one
position (:meth:`ExplorerApp.features`, with SAEs configured), answering with the
explorer's JSON payload (:mod:`tlscopes.views.explorer_data`), the result as a JSON file and as an
offline HTML page. The view helpers below turn a payload into what the page shows: tokens with
their scores, the prediction's top-k and a number series' values with their influence. The
page itself is :mod:`tlscopes.app.ui` (Gradio, the ``tlscopes[app]`` extra).

One model object serves every request: the library's per-model lock serialises the passes on
one model, so concurrent requests never mix. Bad input (an empty text, a text over the limit,
a target that splits into several tokens, an unknown scope, model or SAE, a bad rank, position
or feature id, an SAE that does not fit the model) raises :class:`RequestError` or another of
``REQUEST_ERRORS`` with a one-line message for the page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from tlscopes.app.explorer import explore_payload
from tlscopes.core.engine import attribute
from tlscopes.core.scopes import SCOPE_NAMES, scope_from_name
from tlscopes.protocols import TransformerLensModel
from tlscopes.results import attribution_file
from tlscopes.sae.features import check_sae_fits
from tlscopes.sae.model import SAE
from tlscopes.views.explorer_data import matrix_payload
from tlscopes.views.explorer_page import explorer_html

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# One position costs one forward and one backward pass over the text, a time that grows with its
# length; the default keeps a shared app's answers short. An app for long prompts raises it, up
# to the model's context (``tlscopes serve --max-tokens 8192``).
MAX_TOKENS = 512
# Every position with three scopes costs three matrices, one backward pass per position each,
# and a page growing with the square of the length; kept to what answers in seconds.
MAX_EXPLORE_TOKENS = 256
EXAMPLES = ("The capital of France is", "29,30,45,61,70,66,52,38,31,35,47,60,")
# Errors that mean the request was wrong: the page shows their message.
REQUEST_ERRORS = (ValueError, TypeError, KeyError, IndexError)

ModelLoader = Callable[[], TransformerLensModel]
SAELoader = Callable[[], SAE]


class RequestError(ValueError):
    """A request the app cannot answer, with the message the page shows."""


class ExplorerApp:
    """The app's logic without the server: requests in, explorer payloads out.

    Args:
        models: model name -> a function that loads it (called once, on the first request
            that names it; ``lambda: model`` for a model already loaded).
        default: the model used when a request names none (default: the first).
        max_tokens: the longest text (in tokens) explained at one position, by
            :meth:`attribute` and :meth:`features` (default 512, ``MAX_TOKENS``). Raise it up
            to the model's context for long prompts: a request is one forward and one backward
            pass over its text (checkpointed where memory needs it), and its page holds one
            score per token.
        max_explore_tokens: the longest text (in tokens) explained at every position by
            :meth:`explore` (default 256, ``MAX_EXPLORE_TOKENS``; never more than
            `max_tokens`): each position is one backward pass per scope.
        saes: SAE name -> a function that loads it (e.g. ``lambda: tlscopes.load_sae(path)``;
            called once, on the first request that names it), for :meth:`features`.
    """

    def __init__(
        self,
        models: Mapping[str, ModelLoader],
        *,
        default: str | None = None,
        max_tokens: int = MAX_TOKENS,
        max_explore_tokens: int = MAX_EXPLORE_TOKENS,
        saes: Mapping[str, SAELoader] | None = None,
    ) -> None:
        if not models:
            raise ValueError("pass at least one model")
        self.sources = dict(models)
        self.default = default or next(iter(self.sources))
        if self.default not in self.sources:
            raise ValueError(f"default model {self.default!r} is not one of {list(self.sources)}")
        for name, limit in (("max_tokens", max_tokens), ("max_explore_tokens", max_explore_tokens)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"{name} is a number of tokens, a positive integer; got {limit!r}")
        self.max_tokens = max_tokens
        self.max_explore_tokens = min(max_explore_tokens, max_tokens)
        self.sae_sources = dict(saes or {})
        self._loaded: dict[str, TransformerLensModel] = {}
        self._loaded_saes: dict[str, SAE] = {}
        self._load_lock = threading.Lock()

    @property
    def model_names(self) -> list[str]:
        return list(self.sources)

    @property
    def sae_names(self) -> list[str]:
        return list(self.sae_sources)

    def model(self, name: str | None) -> TransformerLensModel:
        """The named model, loaded once (a load is not repeated by concurrent requests)."""
        name = name or self.default
        if name not in self.sources:
            raise RequestError(f"unknown model {name!r}; choose from {', '.join(self.sources)}")
        with self._load_lock:
            if name not in self._loaded:
                self._loaded[name] = self.sources[name]()
            return self._loaded[name]

    def sae(self, name: str | None) -> SAE:
        """The named SAE (default: the first), loaded once."""
        if not self.sae_sources:
            raise RequestError("No SAE is configured; start the app with --sae PATH.")
        name = name or next(iter(self.sae_sources))
        if name not in self.sae_sources:
            raise RequestError(f"unknown SAE {name!r}; choose from {', '.join(self.sae_sources)}")
        with self._load_lock:
            if name not in self._loaded_saes:
                sae = self.sae_sources[name]()
                if not isinstance(sae, SAE):
                    raise TypeError(
                        f"the SAE loader for {name!r} returned {type(sae).__name__}, not a "
                        "tlscopes SAE; return tlscopes.load_sae(...)"
                    )
                self._loaded_saes[name] = sae
            return self._loaded_saes[name]

    def _text(
        self, request: Mapping[str, Any], model: TransformerLensModel, limit: int
    ) -> tuple[str, int]:
        """The request's text and its length in tokens, refused past `limit`."""
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("The text is empty: type a prompt or a comma-separated series.")
        length = int(model.to_tokens(text).shape[-1])
        if length > limit:
            raise RequestError(
                f"The text is {length} tokens; this view explains at most {limit}. Shorten it."
            )
        return text, length

    def attribute(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One scope at one position: {"payload", "file" (the Attribution as JSON), "html"}.

        The request holds "text", and optionally "scope" (default fisher), "target" (semantic
        only: one token, as text or id; empty: the top prediction), "rank" (fisher only,
        default 1), "position" (default -1, the last) and "model" (default: the app's).
        """
        model = self.model(request.get("model"))
        text, _ = self._text(request, model, self.max_tokens)
        name = request.get("scope") or "fisher"
        if name not in SCOPE_NAMES:
            raise RequestError(f"unknown scope {name!r}; choose from {', '.join(SCOPE_NAMES)}")
        target = request.get("target") or None
        rank = request.get("rank")
        parsed_target = None if target is None else parse_target(target)
        parsed_rank = None if rank is None else parse_rank(rank)
        try:
            scope = scope_from_name(name, target=parsed_target, rank=parsed_rank)
        except ValueError as error:
            raise RequestError(f"{str(error)[0].upper()}{str(error)[1:]}.") from None
        position = parse_position(request.get("position"))
        result = attribute(model, text, scope, position=position)
        payload = matrix_payload([result], text=text, title=f"{name} scope on {model_label(model)}")
        saved = attribution_file.encode(
            {item.name: getattr(result, item.name) for item in fields(result)}
        )
        return {"payload": payload, "file": saved, "html": explorer_html(payload)}

    def explore(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Every position with the three scopes: {"payload", "html"}."""
        model = self.model(request.get("model"))
        text, length = self._text(request, model, self.max_explore_tokens)
        title = f"every position, three scopes, on {model_label(model)}"
        # The app's own limit governs (not explore's default one): the positions are named.
        payload = explore_payload(model, text, SCOPE_NAMES, positions=range(length), title=title)
        return {"payload": payload, "html": explorer_html(payload)}

    def features(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The SAE features at one position, in the explorer: {"payload", "html"}.

        The request holds "text", and optionally "sae" (default: the app's first), "features"
        ("active", the default, or feature ids: a list or comma-separated text), "position"
        (default -1, the last) and "model" (default: the app's). The page lists the features
        (at most the 64 with the highest activation) beside the Fisher scope at that position.
        """
        model = self.model(request.get("model"))
        text, length = self._text(request, model, self.max_tokens)
        name = request.get("sae") or None
        sae = self.sae(name)
        label = name or self.sae_names[0]
        try:
            check_sae_fits(model, sae)
        except ValueError as error:
            raise RequestError(f"The SAE {label!r} does not fit this model: {error}.") from None
        features = parse_features(request.get("features"), sae)
        position = parse_position(request.get("position"))
        if not -length <= position < length:
            raise RequestError(
                f"The position {position} is out of range for the {length} tokens of the text."
            )
        position %= length
        title = f"SAE features at {sae.hook} on {model_label(model)}"
        payload = explore_payload(
            model,
            text,
            ("fisher",),
            positions=[position],
            layers=False,
            title=title,
            sae=sae,
            features=features,
            feature_position=position,
        )
        return {"payload": payload, "html": explorer_html(payload)}


def parse_target(target: Any) -> int | str:
    """A token id (digits) or the token's text, as typed; spaces are kept (" Paris")."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    if not isinstance(target, str):
        raise RequestError(f"the target must be text or a token id, got {target!r}")
    return target


def parse_features(features: Any, sae: SAE) -> str | list[int]:
    """The features to explain: "active" (also for an empty value) or ids, given as a list or
    as comma-separated text ("12, 407"), each in the SAE's [0, d_sae) and given once."""
    if features is None or (isinstance(features, str) and features.strip() in ("", "active")):
        return "active"
    if isinstance(features, str):
        items: list[Any] = [item.strip() for item in features.split(",") if item.strip()]
    elif isinstance(features, (list, tuple)):
        items = list(features)
    else:
        items = [features]
    ids = []
    for item in items:
        text = str(item)
        if isinstance(item, bool) or not text.isdigit():
            raise RequestError(
                f"The features must be 'active' or feature ids such as 12,407, got {features!r}."
            )
        ids.append(int(text))
    if not ids:
        return "active"
    outside = [feature for feature in ids if feature >= sae.d_sae]
    if outside:
        raise RequestError(
            f"Feature {outside[0]} is outside this SAE's {sae.d_sae} features (ids 0 to "
            f"{sae.d_sae - 1})."
        )
    if len(set(ids)) != len(ids):
        raise RequestError(f"The features repeat an id ({features!r}); give each once.")
    return ids


def parse_position(position: Any) -> int:
    """The explained position: an integer, negative from the end; empty means the last."""
    if position is None or position == "":
        return -1
    try:
        return int(position)
    except (TypeError, ValueError):
        raise RequestError(
            f"The position must be an integer such as -1, got {position!r}."
        ) from None


def parse_rank(rank: Any) -> int:
    """The Fisher rank: a positive integer; empty means 1."""
    if rank is None or rank == "":
        return 1
    try:
        value = float(rank)
    except (TypeError, ValueError):
        value = 0.0
    if not value.is_integer() or value < 1:
        raise RequestError(f"The Fisher rank must be a positive integer such as 1, got {rank!r}.")
    return int(value)


def model_label(model: TransformerLensModel) -> str:
    return str(getattr(model.cfg, "model_name", "") or type(model).__name__)


def _scores(payload: Mapping[str, Any]) -> list[float | None]:
    """The first scope's scores at the first explained position, one per token (None after
    the position: later tokens cannot move the prediction there)."""
    row = payload["scopes"][0]["rows"][0]
    return [row[i] if i < len(row) else None for i in range(len(payload["tokens"]))]


def token_highlights(payload: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """Each token with its score scaled to 0..1 by the largest unmasked score.

    Masked positions (a leading BOS: an attention sink whose score would wash out every other
    colour) and tokens after the explained position get None, shown without colour.
    """
    masked = set(payload.get("masked") or ())
    scores = _scores(payload)
    peak = max((v for i, v in enumerate(scores) if v is not None and i not in masked), default=0)
    shown: list[tuple[str, float | None]] = []
    for index, (token, score) in enumerate(zip(payload["tokens"], scores, strict=True)):
        if score is None or index in masked:
            shown.append((token, None))
        else:
            shown.append((token, round(score / peak, 3) if peak > 0 else 0.0))
    return shown


def prediction_confidences(payload: Mapping[str, Any]) -> dict[str, float]:
    """The top-k prediction at the first explained position, token -> probability, in order.

    A blank token is shown quoted (" " reads as nothing); tokens that read the same get
    " (2)", " (3)" so none hides another."""
    shown: dict[str, float] = {}
    for token, probability in payload["predictions"][0]:
        label = token if token.strip() else repr(token)
        base, count = label, 1
        while label in shown:
            count += 1
            label = f"{base} ({count})"
        shown[label] = float(probability or 0.0)
    return shown


def series_influence(payload: Mapping[str, Any]) -> dict[str, list[float | None]] | None:
    """For a number series: {"values", "influence"}, one influence per value, the norm of its
    digit tokens' scores (sqrt of the sum of squares, as :func:`tlscopes.analysis.timeseries.value_scores`
    and the explorer compute it; None for a value after the explained position). None when the
    text is not a number series."""
    series = payload.get("series")
    if not series:
        return None
    scores = _scores(payload)
    influence: list[float | None] = []
    for group in series["groups"]:
        live = [scores[i] for i in group if scores[i] is not None]
        influence.append(sum(v * v for v in live) ** 0.5 if live else None)
    return {"values": list(series["values"]), "influence": influence}


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EXAMPLES",
    "MAX_EXPLORE_TOKENS",
    "MAX_TOKENS",
    "REQUEST_ERRORS",
    "ExplorerApp",
    "RequestError",
    "parse_features",
    "parse_position",
    "parse_rank",
    "parse_target",
    "prediction_confidences",
    "series_influence",
    "token_highlights",
]
