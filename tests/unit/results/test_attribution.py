"""The Attribution result: indexing, tables, predictions and context scores."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers

PROMPTS = ["the capital of france is", "one two three"]


@pytest.fixture(scope="module")
def result():
    return ts.attribute(helpers.build_bridge(), PROMPTS, ts.SemanticScope(" paris"), top_k=4)


def test_indexing_gives_one_prompt_without_its_padding(result):
    second = result[1]
    length = len(result.tokens[1])
    assert len(second) == 1 and second.scores.shape == (1, length)
    torch.testing.assert_close(second.scores[0], result.scores[1, :length])
    assert second.tokens == [result.tokens[1]] and second.info == result.info
    assert result[-1].tokens == second.tokens
    with pytest.raises(IndexError, match="out of range for 2 prompts"):
        result[2]


def test_to_pandas_ranks_and_normalises_per_prompt(result):
    frame = result.to_pandas()
    assert len(frame) == sum(len(tokens) for tokens in result.tokens)
    for prompt, rows in frame.groupby("prompt"):
        assert rows["normalized"].max() == pytest.approx(1.0)
        assert sorted(rows["rank"]) == list(range(1, len(rows) + 1))
        assert rows.loc[rows["explained"], "position"].tolist() == [int(result.positions[prompt])]
    assert frame.attrs["method"] == "semantic"


def test_top_prediction_and_context_scores(result):
    top = result.top(3, index=0)
    assert list(top["score"]) == sorted(top["score"], reverse=True) and len(top) == 3
    prediction = result.prediction(1)
    assert list(prediction.columns) == ["token", "token_id", "probability"]
    assert len(prediction) == 4
    assert result.context_scores(1).shape == (int(result.positions[1]) + 1,)
