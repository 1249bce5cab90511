"""The FeatureAttribution result: SAE features x input tokens, with the reverse view.

``scores[i, t] = ||d pre_{f_i} / d x_t||_2`` for feature ``features[i]`` of one SAE at the
explained position (see :func:`tlscopes.attribute_features`). Every position is in ``scores``;
the default views leave out the sink positions (a leading BOS) unless ``include_bos``, and
report them separately (:meth:`FeatureAttribution.sink_scores`).

File format: strict JSON ``{"format": "tlscopes-feature-attribution", "format_version": 1,
...fields}``, tensors as ``{"tensor": nested lists, "dtype": ...}``; every field is checked on
load, and ``info`` keeps the provenance (the SAE's source and sha256 included).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import Tensor

from tlscopes.results import attribution_file

if TYPE_CHECKING:
    from tlscopes.views.html import HtmlReport

FORMAT = "tlscopes-feature-attribution"
FORMAT_VERSION = 1
_TENSORS = {
    "scores": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
    "features": (torch.int64, torch.int32),
    "pre_activations": (torch.float32, torch.float64),
    "activations": (torch.float32, torch.float64),
    "token_ids": (torch.int64, torch.int32),
}


@dataclass(frozen=True)
class FeatureAttribution:
    """Token scores for several SAE features at one explained position of one prompt.

    Attributes:
        scores: [feature, pos] non-negative, ``||d pre_f / d x_t||_2``; 0 after the explained
            position (a causal model cannot be influenced by later tokens).
        features: the features' ids [feature] (for "active": highest activation first).
        pre_activations: each feature's encoder pre-activation at the explained position.
        activations: each feature's activation after the SAE's nonlinearity there.
        tokens: the prompt's token strings.
        token_ids: [pos].
        position: the explained position.
        hook: the TransformerLens hook point the SAE reads.
        sink_positions: positions left out of the default views (a leading BOS).
        include_bos: show the sink positions in the views too.
        sae: the SAE's description (source, sha256, hook, activation, widths).
        model_name: the model's name.
        info: provenance (:func:`tlscopes.results.provenance.provenance`, with the SAE).
    """

    scores: Tensor
    features: Tensor
    pre_activations: Tensor
    activations: Tensor
    tokens: list[str]
    token_ids: Tensor
    position: int
    hook: str
    sink_positions: list[int] = field(default_factory=list)
    include_bos: bool = False
    sae: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_features, n_tokens = len(self.features), len(self.tokens)
        if tuple(self.scores.shape) != (n_features, n_tokens):
            raise ValueError(
                f"scores has shape {list(self.scores.shape)}; expected [features={n_features}, "
                f"tokens={n_tokens}]"
            )
        for name in ("pre_activations", "activations"):
            if tuple(getattr(self, name).shape) != (n_features,):
                raise ValueError(f"{name} must have one entry per feature ({n_features})")
        if not 0 <= self.position < n_tokens:
            raise ValueError(f"position {self.position} is outside the {n_tokens} tokens")

    def __len__(self) -> int:
        return len(self.features)

    @property
    def fires(self) -> Tensor:
        """Whether each feature fires (activation > 0) at the explained position [feature]."""
        return self.activations > 0

    @property
    def shown_positions(self) -> list[int]:
        """The positions the default views show: up to the explained one, sinks left out
        unless ``include_bos``."""
        hidden = set() if self.include_bos else set(self.sink_positions)
        return [t for t in range(self.position + 1) if t not in hidden]

    def row(self, feature: int) -> int:
        """The row of `feature` (an id) in ``scores``."""
        matches = (self.features == int(feature)).nonzero().flatten().tolist()
        if not matches:
            shown = self.features[:12].tolist()
            raise KeyError(
                f"feature {feature} is not in this result (features {shown}"
                f"{'...' if len(self.features) > 12 else ''})"
            )
        return matches[0]

    def token_map(self, feature: int) -> Tensor:
        """One feature's scores over the tokens [pos], NaN at hidden sink positions and 0 after
        the explained position (what the views colour)."""
        values = self.scores[self.row(feature)].double().clone()
        shown = set(self.shown_positions)
        for t in range(len(self.tokens)):
            if t <= self.position and t not in shown:
                values[t] = math.nan
        return values

    def sink_scores(self) -> pd.DataFrame:
        """The sink positions' scores per feature, and their ratio to the feature's largest
        score elsewhere (how much a view that kept BOS would be dominated by it)."""
        rows = []
        others = [t for t in range(self.position + 1) if t not in self.sink_positions]
        for index, feature in enumerate(self.features.tolist()):
            peak = float(self.scores[index, others].max()) if others else 0.0
            for t in self.sink_positions:
                score = float(self.scores[index, t])
                rows.append(
                    {
                        "feature": feature,
                        "position": t,
                        "token": self.tokens[t],
                        "score": score,
                        "ratio_to_max_other": score / peak if peak > 0 else math.inf,
                    }
                )
        return pd.DataFrame(
            rows, columns=["feature", "position", "token", "score", "ratio_to_max_other"]
        )

    def top_tokens(self, feature: int, k: int = 10) -> pd.DataFrame:
        """The k input tokens that drive `feature` most (sinks left out unless include_bos)."""
        values = self.scores[self.row(feature)].double()
        positions = self.shown_positions
        peak = max((float(values[t]) for t in positions), default=0.0)
        frame = pd.DataFrame(
            {
                "position": positions,
                "token": [self.tokens[t] for t in positions],
                "score": [float(values[t]) for t in positions],
                "normalized": [float(values[t]) / peak if peak > 0 else 0.0 for t in positions],
            }
        )
        return frame.sort_values("score", ascending=False, kind="stable").head(k)

    def top_features(self, token_position: int, k: int = 10) -> pd.DataFrame:
        """The reverse view: the k features at the explained position that the input token at
        `token_position` drives most, with their activations."""
        n_tokens = len(self.tokens)
        if not -n_tokens <= token_position < n_tokens:
            raise IndexError(f"token position {token_position} is outside the {n_tokens} tokens")
        t = token_position % n_tokens
        column = self.scores[:, t].double()
        frame = pd.DataFrame(
            {
                "feature": self.features.tolist(),
                "score": column.tolist(),
                "pre_activation": self.pre_activations.double().tolist(),
                "activation": self.activations.double().tolist(),
                "fires": self.fires.tolist(),
            }
        )
        return frame.sort_values("score", ascending=False, kind="stable").head(k)

    def to_pandas(self) -> pd.DataFrame:
        """A row per (feature, shown position): feature, position, token, score, normalized."""
        rows = []
        positions = self.shown_positions
        for index, feature in enumerate(self.features.tolist()):
            values = self.scores[index].double()
            peak = max((float(values[t]) for t in positions), default=0.0)
            for t in positions:
                score = float(values[t])
                rows.append(
                    {
                        "feature": feature,
                        "position": t,
                        "token": self.tokens[t],
                        "score": score,
                        "normalized": score / peak if peak > 0 else 0.0,
                    }
                )
        frame = pd.DataFrame(rows, columns=["feature", "position", "token", "score", "normalized"])
        frame.attrs.update(self.info)
        return frame

    def to_html(self, path: str | Path | None = None) -> HtmlReport:
        """The self-contained HTML report (opens offline), written to `path` when given."""
        from tlscopes.views.feature_views import feature_attribution_html
        from tlscopes.views.html import HtmlReport

        report = HtmlReport(feature_attribution_html(self))
        return report if path is None else report.save(path)

    def _repr_html_(self) -> str:
        from tlscopes.views.feature_views import feature_attribution_html

        return feature_attribution_html(self)

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Writes the result as strict JSON (see the module docstring).

        Raises:
            FileExistsError: `path` exists and `overwrite` is False.
        """
        payload: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for name in _TENSORS:
            payload[name] = attribution_file.encode_tensor(getattr(self, name))
        payload.update(
            {
                "tokens": list(self.tokens),
                "position": self.position,
                "hook": self.hook,
                "sink_positions": list(self.sink_positions),
                "include_bos": self.include_bos,
                "sae": self.sae,
                "model_name": self.model_name,
                "info": self.info,
            }
        )
        text = json.dumps(payload, allow_nan=False)
        attribution_file.write(path, text, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> FeatureAttribution:
        """Reads a file written by :meth:`save`; a ValueError names the file and the field."""
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path} is not a tlscopes FeatureAttribution file ({error})"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a tlscopes FeatureAttribution file (format {FORMAT!r})"
            )
        if payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format_version {payload.get('format_version')!r}, expected "
                f"{FORMAT_VERSION}"
            )
        values: dict[str, Any] = {name: _tensor(path, name, payload.get(name)) for name in _TENSORS}
        checks = {
            "tokens": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
            "position": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "hook": lambda v: isinstance(v, str),
            "sink_positions": lambda v: isinstance(v, list) and all(isinstance(i, int) for i in v),
            "include_bos": lambda v: isinstance(v, bool),
            "sae": lambda v: isinstance(v, dict),
            "model_name": lambda v: isinstance(v, str),
            "info": lambda v: isinstance(v, dict),
        }
        for name, check in checks.items():
            if not check(payload.get(name)):
                raise ValueError(f"{path}: field {name!r} is missing or has the wrong type")
            values[name] = payload[name]
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def _tensor(path: str | Path, name: str, entry: Any) -> Tensor:
    allowed = {str(dtype).removeprefix("torch."): dtype for dtype in _TENSORS[name]}
    if not isinstance(entry, dict) or set(entry) != {"tensor", "dtype"}:
        raise ValueError(f'{path}: field {name!r} must be {{"tensor": [...], "dtype": "..."}}')
    dtype = allowed.get(str(entry["dtype"]).removeprefix("torch."))
    if dtype is None:
        raise ValueError(
            f"{path}: field {name!r} has dtype {entry['dtype']!r}; expected one of {list(allowed)}"
        )
    data = entry["tensor"]
    if dtype.is_floating_point:
        data = _floats(data)
    try:
        return torch.tensor(data, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: field {name!r} is not a rectangular array ({error})") from None


def _floats(data: Any) -> Any:
    if isinstance(data, list):
        return [_floats(item) for item in data]
    if isinstance(data, str) and data in attribution_file.NON_FINITE:
        return attribution_file.NON_FINITE[data]
    return data


__all__ = ["FORMAT", "FORMAT_VERSION", "FeatureAttribution"]
