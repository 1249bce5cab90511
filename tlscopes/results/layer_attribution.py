"""The LayerAttribution result: a scope's scores at every layer's residual stream and head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from tlscopes.results import attribution_file, layer_file
from tlscopes.results.attribution import Attribution


@dataclass(frozen=True)
class LayerAttribution:
    """A scope's scores at every layer's residual stream (and optionally every head).

    Attributes:
        scores: [batch, layer, pos], ||d(v^T y)/d r_{l,t}|| (0 after the explained position).
        head_scores: [batch, layer, head_index, pos], or None when heads were not asked for.
        inputs: the input-token Attribution from the same passes (``attribute``'s result):
            tokens, positions, the prediction, provenance.
    """

    scores: Tensor
    inputs: Attribution
    head_scores: Tensor | None = None

    @property
    def input_scores(self) -> Tensor:
        """[batch, pos]: equal to ``attribute(...).scores``."""
        return self.inputs.scores

    @property
    def tokens(self) -> list[list[str]]:
        return self.inputs.tokens

    @property
    def positions(self) -> Tensor:
        return self.inputs.positions

    @property
    def n_layers(self) -> int:
        return int(self.scores.shape[1])

    def to_pandas(self) -> Any:
        """Long format: one row per (prompt, layer, position) with token and score; heads, when
        present, as rows with a ``head`` column (-1 on the residual-stream rows)."""
        import pandas as pd

        rows = []
        for index, tokens in enumerate(self.tokens):
            for layer in range(self.n_layers):
                for position, token in enumerate(tokens):
                    rows.append(
                        {
                            "prompt": index,
                            "layer": layer,
                            "head": -1,
                            "position": position,
                            "token": token,
                            "score": float(self.scores[index, layer, position]),
                        }
                    )
                if self.head_scores is None:
                    continue
                for head in range(self.head_scores.shape[2]):
                    for position, token in enumerate(tokens):
                        value = float(self.head_scores[index, layer, head, position])
                        rows.append(
                            {
                                "prompt": index,
                                "layer": layer,
                                "head": head,
                                "position": position,
                                "token": token,
                                "score": value,
                            }
                        )
        frame = pd.DataFrame(rows)
        frame.attrs.update(self.inputs.info)
        return frame

    def save(self, path: Any, *, overwrite: bool = False) -> None:
        """Writes the result as strict JSON (see :mod:`tlscopes.results.layer_file`)."""
        layer_file.save(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: Any,
        *,
        max_bytes: int = attribution_file.DEFAULT_MAX_BYTES,
        max_positions: int = attribution_file.DEFAULT_MAX_POSITIONS,
    ) -> LayerAttribution:
        """Reads a file written by :meth:`save`, checking every field.

        Args:
            path: the file.
            max_bytes: the largest file read (default 1 GiB); a larger one is refused unread.
            max_positions: the most token positions accepted (default 131,072), checked before
                any values are read. Raise either to read a larger file you trust.
        """
        return layer_file.load(path, cls, max_bytes=max_bytes, max_positions=max_positions)

    def heatmap(self, index: int = 0, **options: Any) -> Any:
        """A matplotlib Figure: layer x token (and a head panel when present)."""
        from tlscopes.views.plotting import layer_heatmap

        return layer_heatmap(self, index, **options)

    def to_html(self, path: Any = None) -> Any:
        """A page that opens offline: the layer x token map as an inline image and the input
        scores; returns an HtmlReport (written to `path` when given)."""
        from tlscopes.views.plotting import layer_attribution_html

        return layer_attribution_html(self, path)

    def _repr_html_(self) -> str:
        return self.to_html().html

    def explore(self, index: int = 0) -> Any:
        """The offline explorer page of prompt `index`: its scores, prediction and the layer x
        token map (:func:`tlscopes.views.explorer_data.explore_layers`); returns an HtmlReport."""
        from tlscopes.views.explorer_data import explore_layers

        return explore_layers(self, index)


__all__ = ["LayerAttribution"]
