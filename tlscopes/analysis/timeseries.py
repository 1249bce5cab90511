"""Time series for in-context forecasting (paper section 4.3, appendix A.3).

Generators for the paper's systems, a serializer to comma-separated integers, the map from
tokens back to values, and the model's predicted distribution over the next value.

Serialization follows Gruver et al. (2023) as the paper does: each value is rescaled to an
integer with a fixed number of digits (2 by default: 10 to 99) and values are joined by commas,
with a trailing comma so that the next token to predict is the first digit of the next value.
LLaMA-3.2 has one token per 2-digit number; tokenizers that split numbers into single digits
(SmolLM2, LLaMA-2) see each value as `digits` tokens, so the probability of a value is the
product of its digits' conditional probabilities (:func:`next_value_distribution`), and a
value's attribution is the norm of the gradient over all its digit tokens
(:func:`value_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from tlscopes.protocols import TransformerLensModel
from tlscopes.series import SEPARATOR, series_groups


def lorenz_x(
    n_values: int,
    *,
    x0: float = 1.0,
    y0: float = 1.0,
    z0: float = 1.0,
    dt: float = 0.01,
    steps_per_value: int = 4,
    burn_in: int = 500,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
) -> Tensor:
    """The x coordinate of the Lorenz system, integrated with the explicit Euler scheme.

    dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z (appendix A.3; the
    defaults are the chaotic parameters). `burn_in` Euler steps are dropped so the series starts
    on the attractor; then every `steps_per_value`-th step is kept.
    """
    x, y, z = float(x0), float(y0), float(z0)
    values = []
    for step in range(burn_in + n_values * steps_per_value):
        x, y, z = (
            x + dt * sigma * (y - x),
            y + dt * (x * (rho - z) - y),
            z + dt * (x * y - beta * z),
        )
        if step >= burn_in and (step - burn_in) % steps_per_value == 0:
            values.append(x)
    return torch.tensor(values, dtype=torch.float64)


def brownian_motion(
    n_values: int, *, drift: float = 0.0, diffusion: float = 1.0, dt: float = 1.0, seed: int = 0
) -> Tensor:
    """X_0 = 0 and dX = drift dt + diffusion dW (eq. 12), sampled every dt; seeded."""
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randn(n_values - 1, generator=generator, dtype=torch.float64)
    increments = drift * dt + diffusion * dt**0.5 * steps
    return torch.cat([torch.zeros(1, dtype=torch.float64), increments.cumsum(0)])


def geometric_brownian_motion(
    n_values: int,
    *,
    drift: float = 0.0,
    volatility: float = 0.1,
    dt: float = 1.0,
    start: float = 1.0,
    seed: int = 0,
) -> Tensor:
    """S_t = start * exp((drift - volatility^2 / 2) t + volatility W_t), the exact solution of
    dS = drift S dt + volatility S dW, sampled every dt; seeded."""
    walk = brownian_motion(n_values, diffusion=volatility, dt=dt, seed=seed)
    times = torch.arange(n_values, dtype=torch.float64) * dt
    return start * torch.exp((drift - volatility**2 / 2) * times + walk)


@dataclass(frozen=True)
class Serialized:
    """A series written as comma-separated fixed-width integers.

    Attributes:
        text: e.g. "29,30,45," (a trailing separator: the next token starts a new value).
        integers: the values as integers [n_values], each with exactly `digits` digits.
        digits: digits per value.
        offset, scale: the affine map, integer = round((value - offset) * scale).
    """

    text: str
    integers: Tensor
    digits: int
    offset: float
    scale: float

    def encode(self, values: Tensor) -> Tensor:
        """New values (e.g. the held-out truth) as integers on this map, unclipped."""
        return torch.round((values.double() - self.offset) * self.scale).long()

    def to_values(self, integers: Tensor) -> Tensor:
        """Integers (e.g. predicted ones) back on the series' own scale."""
        return integers.double() / self.scale + self.offset


def serialize(
    series: Tensor,
    *,
    digits: int = 2,
    headroom: float = 0.15,
    low: float | None = None,
    high: float | None = None,
) -> Serialized:
    """Rescales a series to `digits`-digit integers and joins them with commas.

    The range [low, high] (default: the series' min and max) maps linearly into
    [10^(digits-1), 10^digits - 1] with a `headroom` fraction of that interval left free at each
    end, so a forecast can leave the range of the history without changing its digit count.
    Values outside [low, high] beyond the headroom are clipped.
    """
    if series.ndim != 1 or series.numel() < 2:
        raise ValueError(f"series must be 1-D with at least 2 values, got {tuple(series.shape)}")
    if not 1 <= digits <= 4:
        raise ValueError(f"digits must be between 1 and 4, got {digits}")
    if not 0 <= headroom < 0.5:
        raise ValueError(f"headroom must be in [0, 0.5), got {headroom}")
    series = series.double()
    low = float(series.min()) if low is None else float(low)
    high = float(series.max()) if high is None else float(high)
    if not high > low:
        raise ValueError(f"the series is constant ({low}); there is nothing to scale")
    smallest, largest = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    span = largest - smallest
    scale = span * (1 - 2 * headroom) / (high - low)
    offset = low - (smallest + headroom * span) / scale
    integers = torch.round((series - offset) * scale).clamp(smallest, largest).long()
    text = SEPARATOR.join(str(int(i)) for i in integers) + SEPARATOR
    return Serialized(text, integers, digits, offset, scale)


def digit_token_ids(model: TransformerLensModel) -> list[int]:
    """The token ids of "0" to "9"; refuses tokenizers without one token per digit."""
    ids = []
    for digit in range(10):
        pieces = model.to_tokens(str(digit), prepend_bos=False)[0].tolist()
        if len(pieces) != 1:
            raise ValueError(f"the tokenizer splits the digit {digit} into {len(pieces)} tokens")
        ids.append(int(pieces[0]))
    # A tokenizer that merges digits ("29" as one token) needs other bookkeeping.
    merged = model.to_tokens("12", prepend_bos=False)[0].tolist()
    if merged != [ids[1], ids[2]]:
        raise ValueError(
            "the tokenizer keeps several digits in one token; value_scores and "
            "next_value_distribution need one token per digit (as SmolLM2 and LLaMA-2 have)"
        )
    return ids


def value_token_groups(tokens: Sequence[str], n_values: int) -> list[list[int]]:
    """Which token positions spell each value, from the token strings of a serialized prompt
    (:func:`tlscopes.series.series_groups`); raises if they do not spell `n_values` values."""
    groups = series_groups(tokens)
    if len(groups) != n_values:
        raise ValueError(f"the tokens spell {len(groups)} values, expected {n_values}")
    return groups


def value_scores(scores: Tensor, groups: Sequence[Sequence[int]]) -> Tensor:
    """One score per value: sqrt(sum of its digit tokens' squared scores) [n_values].

    For a Jacobian Scope that is ||v^T dy/d(x_a, x_b)||, the same score with the value's digit
    embeddings taken together as one input; separators and BOS are left out.
    """
    return torch.stack([scores[list(group)].double().pow(2).sum().sqrt() for group in groups])


def next_value_distribution(
    model: TransformerLensModel, text: str, digits: int = 2
) -> pd.DataFrame:
    """The model's distribution over the next `digits`-digit value after a serialized prompt.

    P(d_1 ... d_n) = P(d_1 | prompt) P(d_2 | prompt, d_1) ... , read from one batched forward
    pass over every (n-1)-digit prefix; the first digit is 1-9 (fixed width, no leading zero).
    Needs one token per digit (see :func:`digit_token_ids`).

    Returns:
        One row per value: value (int), probability (the product; these sum to the model's
        probability of continuing with a `digits`-digit number, below 1) and share
        (probability normalised over the values).
    """
    if not 1 <= digits <= 3:
        raise ValueError(f"digits must be 1, 2 or 3 (one forward row per prefix), got {digits}")
    ids = digit_token_ids(model)
    prompt = model.to_tokens(text)[0].cpu()
    # Every value is a prefix of digits - 1 digits (no leading zero) and one last digit.
    prefixes = (
        [""] if digits == 1 else [str(p) for p in range(10 ** (digits - 2), 10 ** (digits - 1))]
    )
    rows = torch.stack(
        [
            torch.cat([prompt, torch.tensor([ids[int(c)] for c in p], dtype=torch.long)])
            for p in prefixes
        ]
    )
    with torch.no_grad():
        logits = model(rows.to(model.W_U.device))[:, len(prompt) - 1 :].double()
    log_probs = torch.log_softmax(logits, dim=-1)[..., ids].cpu()  # [prefix, digit index, 10]
    records = []
    for row, prefix in enumerate(prefixes):
        base = sum(float(log_probs[row, i, int(c)]) for i, c in enumerate(prefix))
        for last in range(10):
            value = int(prefix + str(last))
            log_p = base + float(log_probs[row, len(prefix), last])
            records.append({"value": value, "probability": float(torch.tensor(log_p).exp())})
    frame = pd.DataFrame(records)
    frame["share"] = frame["probability"] / frame["probability"].sum()
    return frame


__all__ = [
    "Serialized",
    "brownian_motion",
    "digit_token_ids",
    "geometric_brownian_motion",
    "lorenz_x",
    "next_value_distribution",
    "serialize",
    "value_scores",
    "value_token_groups",
]
