"""The number-series text format: recognising a series and the tokens that spell each value."""

from __future__ import annotations

import pytest
import torch

from tlscopes.analysis.timeseries import serialize, value_token_groups
from tlscopes.series import SEPARATOR, is_number_series, series_groups


@pytest.mark.parametrize(
    ("text", "expected"),
    [("29,30,45,", True), (" 1, 2, 3", True), ("1.5,-2", True), ("12", False), ("a,1", False)],
)
def test_number_series_are_recognised(text, expected):
    assert is_number_series(text) is expected


def test_series_groups_leave_out_bos_and_delimiters():
    # One token per digit (SmolLM2-like) and merged number tokens (GPT-2-like, "5," merged).
    digits = ["<|endoftext|>", "2", "9", ",", "3", "0", ",", "4", "5", ","]
    assert series_groups(digits) == [[1, 2], [4, 5], [7, 8]]
    merged = ["<bos>", "29", ",", " 30", "5,", "7"]  # 29, 305,7
    assert series_groups(merged) == [[1], [3, 4], [5]]


def test_the_serializer_writes_what_the_reader_recognises():
    serialized = serialize(torch.tensor([0.0, 0.5, 1.0, 0.25]))
    assert is_number_series(serialized.text) and serialized.text.endswith(SEPARATOR)
    tokens = [character for character in serialized.text]  # one token per character
    groups = value_token_groups(tokens, len(serialized.integers))
    assert ["".join(tokens[p] for p in group) for group in groups] == [
        str(int(value)) for value in serialized.integers
    ]
    with pytest.raises(ValueError, match="expected 5"):
        value_token_groups(tokens, 5)
