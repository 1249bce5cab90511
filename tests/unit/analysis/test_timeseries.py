"""Time series: serialisation, generators, digit tokens and next-value distributions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tlscopes.analysis import timeseries

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


@pytest.fixture(scope="module")
def digits():
    return helpers.build_digit_bridge()


def test_serialize_fixed_width_in_range_and_invertible():
    series = timeseries.brownian_motion(50, seed=1)
    serialized = timeseries.serialize(series)
    values = serialized.text.rstrip(",").split(",")
    assert serialized.text.endswith(",") and len(values) == 50
    assert all(len(v) == 2 for v in values)
    assert [int(v) for v in values] == serialized.integers.tolist()
    low, high = int(serialized.integers.min()), int(serialized.integers.max())
    # 15% headroom of 10..99 at each end: the extremes land near 23 and 86.
    assert 10 < low <= 25 and 84 <= high < 99
    step = 1 / serialized.scale
    assert (serialized.to_values(serialized.integers) - series).abs().max() <= step / 2 + 1e-12
    torch.testing.assert_close(serialized.encode(series), serialized.integers)
    three = timeseries.serialize(series, digits=3, headroom=0.0)
    assert int(three.integers.min()) == 100 and int(three.integers.max()) == 999


def test_serialize_refuses_bad_input():
    with pytest.raises(ValueError, match="constant"):
        timeseries.serialize(torch.ones(5))
    with pytest.raises(ValueError, match="1-D"):
        timeseries.serialize(torch.ones(2, 3))
    with pytest.raises(ValueError, match="digits"):
        timeseries.serialize(torch.arange(5.0), digits=6)


def test_generators_are_seeded_and_follow_their_definitions():
    torch.testing.assert_close(
        timeseries.brownian_motion(20, seed=4), timeseries.brownian_motion(20, seed=4)
    )
    assert not torch.equal(
        timeseries.brownian_motion(20, seed=4), timeseries.brownian_motion(20, seed=5)
    )
    walk = timeseries.brownian_motion(20_001, seed=0)
    assert walk[0] == 0 and walk.diff().std().item() == pytest.approx(1.0, rel=0.03)
    gbm = timeseries.geometric_brownian_motion(200, volatility=0.1, seed=2)
    expected = torch.exp(
        timeseries.brownian_motion(200, diffusion=0.1, seed=2) - 0.005 * torch.arange(200)
    )
    torch.testing.assert_close(gbm, expected)
    # One Euler step from (1, 1, 1), no burn-in: x' = x + dt * sigma * (y - x) = 1.
    lorenz = timeseries.lorenz_x(3, burn_in=0, steps_per_value=1, dt=0.01)
    assert lorenz[0].item() == pytest.approx(1.0)
    assert lorenz[1].item() == pytest.approx(1.0 + 0.01 * 10 * (1.26 - 1.0))
    assert float(timeseries.lorenz_x(300).abs().max()) < 25


def test_value_token_groups_for_single_and_multi_digit_tokens():
    assert timeseries.value_token_groups(["<s>", "6", "2", ",", "6", "5", ","], 2) == [
        [1, 2],
        [4, 5],
    ]
    assert timeseries.value_token_groups(["62", ",", "65", ","], 2) == [[0], [2]]
    with pytest.raises(ValueError, match="spell 1 values, expected 2"):
        timeseries.value_token_groups(["6", "2", ","], 2)
    scores = torch.tensor([9.0, 3.0, 4.0, 7.0, 1.0, 0.0, 2.0])
    torch.testing.assert_close(
        timeseries.value_scores(scores, [[1, 2], [4, 5]]),
        torch.tensor([5.0, 1.0], dtype=torch.float64),
    )


def test_next_value_distribution_is_the_product_of_digit_probabilities(digits):
    text = "12,15,19,"
    frame = timeseries.next_value_distribution(digits, text)
    assert frame["value"].tolist() == list(range(10, 100))
    assert frame["share"].sum() == pytest.approx(1.0)
    assert 0 < frame["probability"].sum() < 1
    ids = timeseries.digit_token_ids(digits)
    for value in (10, 47, 99):
        first, second = divmod(value, 10)
        tokens = digits.to_tokens(text + str(first))
        with torch.no_grad():
            probs = torch.softmax(digits(tokens)[0].double(), dim=-1)
        expected = float(probs[-2, ids[first]] * probs[-1, ids[second]])
        assert float(frame.set_index("value").loc[value, "probability"]) == pytest.approx(
            expected,
            rel=1e-6,  # Hugging Face Llama's float32 rotary tables and softmax
        )


def test_value_scores_on_a_serialized_prompt(digits):
    serialized = timeseries.serialize(timeseries.lorenz_x(12))
    result = ts.attribute(digits, serialized.text, ts.TemperatureScope())
    groups = timeseries.value_token_groups(result.tokens[0], 12)
    assert groups[0] == [1, 2] and groups[-1] == [34, 35]
    scores = timeseries.value_scores(result.scores[0], groups)
    assert scores.shape == (12,) and bool((scores > 0).all())


def test_digit_token_ids_refuses_word_tokenizers(bridge):
    with pytest.raises(ValueError):
        timeseries.digit_token_ids(bridge)
