"""The Attribution result: scores with their tokens and the prediction they explain."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import Tensor

from tlscopes.results import attribution_file

if TYPE_CHECKING:
    from tlscopes.views.html import HtmlReport


@dataclass(frozen=True)
class Attribution:
    """Token scores for a batch of prompts, with the prediction each explains.

    Attributes:
        scores: [batch, pos] non-negative influence scores; 0 after the explained position and
            on padding.
        tokens: one list of token strings per prompt (without padding).
        token_ids: [batch, pos] token ids, right-padded.
        positions: [batch] the position whose next-token prediction is explained.
        method: the method's registry name ("fisher", "semantic", ...).
        top_token_ids, top_tokens, top_probs: the model's most likely next tokens at the
            explained position and their probabilities [batch, k].
        target_ids, target_probs, target_tokens: the target token, its probability [batch] and
            its string, for methods that attribute a target (None otherwise).
        details: method-specific record (eigenvalues, beta_eff, n_steps, ...).
        model_name: the model's TransformerLens name.
        info: where the result came from (provenance): the method and the scope with its
            parameters, the model's name and kind, dtype and device, and the tlscopes,
            TransformerLens and torch versions (:func:`tlscopes.results.provenance.provenance`). Also in
            ``to_pandas().attrs``; kept by save and load ({} for files from before it existed).
    """

    scores: Tensor
    tokens: list[list[str]]
    token_ids: Tensor
    positions: Tensor
    method: str
    top_token_ids: Tensor
    top_tokens: list[list[str]]
    top_probs: Tensor
    target_ids: Tensor | None = None
    target_probs: Tensor | None = None
    target_tokens: list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.scores.shape[0]

    def __getitem__(self, index: int) -> Attribution:
        """The result for one prompt, as a batch of one, without its padding."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} prompts")
        index = index % len(self)
        length = len(self.tokens[index])
        row = slice(index, index + 1)

        def pick(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor[row]

        details = {
            key: [value[index]] if isinstance(value, list) and len(value) == len(self) else value
            for key, value in self.details.items()
        }
        return Attribution(
            scores=self.scores[row, :length],
            tokens=[self.tokens[index]],
            token_ids=self.token_ids[row, :length],
            positions=self.positions[row],
            method=self.method,
            top_token_ids=self.top_token_ids[row],
            top_tokens=[self.top_tokens[index]],
            top_probs=self.top_probs[row],
            target_ids=pick(self.target_ids),
            target_probs=pick(self.target_probs),
            target_tokens=None if self.target_tokens is None else [self.target_tokens[index]],
            details=details,
            model_name=self.model_name,
            info=self.info,
        )

    def context_scores(self, index: int = 0) -> Tensor:
        """Scores of prompt `index` up to and including its explained position."""
        return self.scores[index, : int(self.positions[index]) + 1]

    def to_pandas(self) -> pd.DataFrame:
        """A row per token: prompt, position, token, score, normalised score and rank."""
        rows = []
        for index, tokens in enumerate(self.tokens):
            scores = self.scores[index, : len(tokens)].double()
            peak = float(scores.max()) if len(tokens) else 0.0
            order = torch.argsort(scores, descending=True, stable=True)
            ranks = torch.empty_like(order)
            ranks[order] = torch.arange(1, len(order) + 1)
            for position, token in enumerate(tokens):
                score = float(scores[position])
                rows.append(
                    {
                        "prompt": index,
                        "position": position,
                        "token": token,
                        "score": score,
                        "normalized": score / peak if peak > 0 else 0.0,
                        "rank": int(ranks[position]),
                        "explained": position == int(self.positions[index]),
                    }
                )
        frame = pd.DataFrame(rows)
        frame.attrs.update(self.info)
        return frame

    def top(self, k: int = 10, index: int = 0) -> pd.DataFrame:
        """The k most influential tokens of prompt `index`, highest first."""
        frame = self.to_pandas()
        frame = frame[frame["prompt"] == index]
        return frame.sort_values("score", ascending=False, kind="stable").head(k)

    def prediction(self, index: int = 0) -> pd.DataFrame:
        """The predicted next tokens of prompt `index` with their probabilities."""
        return pd.DataFrame(
            {
                "token": self.top_tokens[index],
                "token_id": self.top_token_ids[index].tolist(),
                "probability": self.top_probs[index].tolist(),
            }
        )

    def to_html(self, path: str | Path | None = None) -> HtmlReport:
        """The self-contained HTML report (circuitsvis colored tokens, JavaScript inlined once,
        so it opens offline), written to `path` when one is given (replacing a file there).

        Returns:
            An :class:`~tlscopes.views.html.HtmlReport`: ``.html`` is the page, ``.path`` where it was
            written; a notebook displays it, a REPL shows only its size and path.
        """
        from tlscopes.views.html import HtmlReport, attribution_html

        report = HtmlReport(attribution_html(self))
        return report if path is None else report.save(path)

    def _repr_html_(self) -> str:
        from tlscopes.views.html import attribution_html

        return attribution_html(self)

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Writes the result as strict JSON (tensors as lists with their dtypes; the format is
        described in :mod:`tlscopes.results.attribution_file`).

        Raises:
            FileExistsError: `path` exists and `overwrite` is False.
        """
        text = attribution_file.encode(
            {item.name: getattr(self, item.name) for item in fields(self)}
        )
        attribution_file.write(path, text, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        max_bytes: int = attribution_file.DEFAULT_MAX_BYTES,
        max_positions: int = attribution_file.DEFAULT_MAX_POSITIONS,
    ) -> Attribution:
        """Reads a file written by :meth:`save` (this or the previous format version).

        Args:
            path: the file.
            max_bytes: the largest file read (default 1 GiB); a larger one is refused unread.
            max_positions: the most token positions accepted (default 131,072), checked before
                any values are read. Raise either to read a larger file you trust.

        Raises:
            ValueError: the file is not an Attribution file, a field has the wrong type, dtype
                or shape (the message names the file and the field), or it exceeds a limit.
        """
        return cls(**attribution_file.read(path, max_bytes=max_bytes, max_positions=max_positions))
