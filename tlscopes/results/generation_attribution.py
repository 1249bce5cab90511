"""The GenerationAttribution result: a generated continuation with every step explained."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import Tensor

from tlscopes.results import attribution_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tlscopes.results.attribution import Attribution
    from tlscopes.views.html import HtmlReport


@dataclass(frozen=True)
class GenerationAttribution:
    """Each generated token's prediction explained over the text before it.

    Step s of prompt b explains the prediction of generated token s, made at position
    ``prompt_lengths[b] + s - 1`` (``positions[b, s]``). Steps at or beyond
    ``generated_lengths[b]`` (a prompt that stopped at eos before the others) are padding:
    scores and records 0, ids the pad id.

    Attributes:
        scores: [batch, step, pos] the scope's scores of every token of the text (prompt and
            generated); 0 after the step's explained position and on padding.
        tokens: the full text's token strings per prompt (prompt, then generated tokens).
        token_ids: [batch, pos] the full text's ids, right-padded.
        prompt_lengths: [batch] tokens in each prompt (with BOS where the model adds one).
        generated_ids: [batch, step] the generated token ids.
        generated_lengths: [batch] how many tokens each prompt generated (an eos included).
        generated_tokens: the generated token strings per prompt.
        prompt_text: each prompt, decoded from its ids (special tokens such as BOS included;
            ``<id>`` tokens joined for a model without a tokenizer).
        generated_text: the generated continuation of each prompt, decoded likewise.
        probs: [batch, step] the generated token's probability under the model (temperature 1).
        entropy: [batch, step] the entropy of the next-token distribution, in nats.
        beta_eff: [batch, step] ||y|| at the explained position (paper eq. 7-8).
        top_token_ids, top_tokens, top_probs: the most likely next tokens at each step
            [batch, step, k] (top_tokens: ``[batch][generated step][k]`` strings).
        method: the scope's name ("fisher", "temperature", "semantic", "direction").
        details: the scope's record, per prompt and step where it has one per step (Fisher
            eigenvalues; a Semantic scope's target_ids, target_probs and target_tokens).
        model_name: the model's TransformerLens name.
        info: provenance (:func:`tlscopes.results.provenance.provenance`): scope, generation settings
            (max_new_tokens, do_sample, temperature, top_k, seed, stop_at_eos), model, versions.
    """

    scores: Tensor
    tokens: list[list[str]]
    token_ids: Tensor
    prompt_lengths: Tensor
    generated_ids: Tensor
    generated_lengths: Tensor
    generated_tokens: list[list[str]]
    prompt_text: list[str]
    generated_text: list[str]
    probs: Tensor
    entropy: Tensor
    beta_eff: Tensor
    top_token_ids: Tensor
    top_tokens: list[list[list[str]]]
    top_probs: Tensor
    method: str
    details: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_steps(self) -> int:
        """The step axis' length: the most tokens any prompt generated."""
        return int(self.scores.shape[1])

    @property
    def positions(self) -> Tensor:
        """[batch, step] the position whose next-token prediction each step explains."""
        return self.prompt_lengths[:, None] + torch.arange(self.n_steps)[None, :] - 1

    def _check_step(self, index: int, step: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"prompt {index} is out of range for {len(self)} prompts")
        generated = int(self.generated_lengths[index])
        if not 0 <= step < generated:
            raise IndexError(f"step {step} is out of range: prompt {index} generated {generated}")

    def top_sources(
        self, index: int = 0, step: int = 0, k: int = 3
    ) -> list[tuple[int, str, float]]:
        """The k highest-scoring earlier tokens of one step: (position, token, score), highest
        first, ties in position order."""
        self._check_step(index, step)
        position = int(self.positions[index, step])
        scores = self.scores[index, step, : position + 1].double()
        order = torch.argsort(scores, descending=True, stable=True)[:k].tolist()
        return [(t, self.tokens[index][t], float(scores[t])) for t in order]

    def step(self, index: int = 0, step: int = 0) -> Attribution:
        """One step as an :class:`~tlscopes.results.attribution.Attribution` (a batch of one): the same
        scores, tokens and prediction as ``attribute(model, text, scope, position=...)`` at that
        step's position, so ``top``, ``to_html`` and ``save`` work on it."""
        from tlscopes.results.attribution import Attribution

        self._check_step(index, step)
        length = len(self.tokens[index])
        counts = self.generated_lengths.tolist()
        details = {}
        for key, value in self.details.items():
            per_step = isinstance(value, list) and len(value) == len(self)
            per_step = per_step and all(
                isinstance(row, list) and len(row) == n
                for row, n in zip(value, counts, strict=True)
            )
            details[key] = [value[index][step]] if per_step else value
        target = details.pop("target_ids", None)
        target_probs = details.pop("target_probs", None)
        target_tokens = details.pop("target_tokens", None)
        return Attribution(
            scores=self.scores[index, step, :length][None].clone(),
            tokens=[self.tokens[index]],
            token_ids=self.token_ids[index, :length][None].clone(),
            positions=self.positions[index, step][None].clone(),
            method=self.method,
            top_token_ids=self.top_token_ids[index, step][None].clone(),
            top_tokens=[self.top_tokens[index][step]],
            top_probs=self.top_probs[index, step][None].float(),
            target_ids=None if target is None else torch.tensor(target),
            target_probs=None if target_probs is None else torch.tensor(target_probs).float(),
            target_tokens=target_tokens,
            details=details,
            model_name=self.model_name,
            info={**self.info, "step": {"prompt": index, "step": step}},
        )

    def steps(self) -> pd.DataFrame:
        """One row per generated step: prompt, step, explained position, the generated token
        (id and string), its probability, the entropy, beta_eff and the top prediction."""
        rows = []
        for index, count in enumerate(self.generated_lengths.tolist()):
            for step in range(count):
                rows.append(
                    {
                        "prompt": index,
                        "step": step,
                        "position": int(self.positions[index, step]),
                        "token_id": int(self.generated_ids[index, step]),
                        "token": self.generated_tokens[index][step],
                        "probability": float(self.probs[index, step]),
                        "entropy": float(self.entropy[index, step]),
                        "beta_eff": float(self.beta_eff[index, step]),
                        "top_token": self.top_tokens[index][step][0],
                        "top_probability": float(self.top_probs[index, step, 0]),
                    }
                )
        frame = pd.DataFrame(rows)
        frame.attrs.update(self.info)
        return frame

    def to_pandas(self) -> pd.DataFrame:
        """Long format: one row per (prompt, step, source position up to the explained one):
        the source token, its score and the score over the step's largest, with the step's
        generated token and its probability."""
        rows = []
        for index, count in enumerate(self.generated_lengths.tolist()):
            tokens = self.tokens[index]
            for step in range(count):
                position = int(self.positions[index, step])
                scores = self.scores[index, step, : position + 1].double()
                peak = float(scores.max())
                for source in range(position + 1):
                    score = float(scores[source])
                    rows.append(
                        {
                            "prompt": index,
                            "step": step,
                            "position": position,
                            "generated": self.generated_tokens[index][step],
                            "probability": float(self.probs[index, step]),
                            "source": source,
                            "source_token": tokens[source],
                            "in_prompt": source < int(self.prompt_lengths[index]),
                            "score": score,
                            "normalized": score / peak if peak > 0 else 0.0,
                        }
                    )
        frame = pd.DataFrame(rows)
        frame.attrs.update(self.info)
        return frame

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Writes the result as strict JSON (:mod:`tlscopes.results.generation_file`).

        Raises:
            FileExistsError: `path` exists and `overwrite` is False.
        """
        from tlscopes.results import generation_file

        generation_file.save(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        max_bytes: int = attribution_file.DEFAULT_MAX_BYTES,
        max_positions: int = attribution_file.DEFAULT_MAX_POSITIONS,
    ) -> GenerationAttribution:
        """Reads a file written by :meth:`save`, checking every field (ValueError names the
        file and the field).

        Args:
            path: the file.
            max_bytes: the largest file read (default 1 GiB); a larger one is refused unread.
            max_positions: the most token positions accepted (default 131,072), checked before
                any values are read. Raise either to read a larger file you trust.
        """
        from tlscopes.results import generation_file

        return cls(**generation_file.read(path, max_bytes=max_bytes, max_positions=max_positions))

    def heatmap(self, index: int = 0, *, normalize: str = "step") -> Figure:
        """A matplotlib Figure: generated step x source token (see
        :func:`tlscopes.views.generation_views.generation_heatmap`)."""
        from tlscopes.views.generation_views import generation_heatmap

        return generation_heatmap(self, index, normalize=normalize)

    def confidence_plot(self, index: int = 0) -> Figure:
        """A matplotlib Figure: beta_eff and the entropy at each generated step."""
        from tlscopes.views.generation_views import confidence_trace

        return confidence_trace(self, index)

    def to_html(self, path: str | Path | None = None) -> HtmlReport:
        """A self-contained page (opens offline): per prompt the text, a step-by-step table, the
        heat map and confidence trace, and the tokens coloured by each step's scores; written
        to `path` when given (replacing a file there)."""
        from tlscopes.views.generation_views import generation_html
        from tlscopes.views.html import HtmlReport

        report = HtmlReport(generation_html(self))
        return report if path is None else report.save(path)

    def _repr_html_(self) -> str:
        return self.to_html().html

    def explore(self, index: int = 0) -> HtmlReport:
        """The offline explorer page of prompt `index`: click a token to see what explains the
        token generated after it (:func:`tlscopes.views.explorer_data.explore_generation`)."""
        from tlscopes.views.explorer_data import explore_generation

        return explore_generation(self, index)


__all__ = ["GenerationAttribution"]
