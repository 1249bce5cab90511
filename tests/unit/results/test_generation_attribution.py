"""The GenerationAttribution result: positions, step table, long format, top sources."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.unit.generation.test_attribution import PROMPTS, eos_stopping_bridge
from tlscopes.generation.attribution import attribute_generation


@pytest.fixture(scope="module")
def result():
    """Prompt 0 stops at eos after 4 tokens, prompt 1 generates 6."""
    return attribute_generation(eos_stopping_bridge(), PROMPTS, ts.FisherScope(), max_new_tokens=6)


def test_positions_and_lengths(result):
    assert result.generated_lengths.tolist() == [4, 6]
    assert len(result) == 2 and result.n_steps == 6
    expected = result.prompt_lengths[:, None] + torch.arange(6)[None, :] - 1
    assert torch.equal(result.positions, expected)


def test_steps_lists_every_generated_step(result):
    frame = result.steps()
    assert len(frame) == 10
    first = frame[frame["prompt"] == 0]
    assert first["token"].tolist() == result.generated_tokens[0]
    assert first["token"].tolist()[-1] == "<eos>"
    assert first["position"].tolist() == result.positions[0, :4].tolist()
    assert first["probability"].tolist() == result.probs[0, :4].tolist()
    assert frame.attrs["method"] == "fisher"


def test_long_format_has_each_step_over_the_text_before_it(result):
    frame = result.to_pandas()
    expected_rows = sum(
        int(result.positions[b, s]) + 1
        for b in range(2)
        for s in range(int(result.generated_lengths[b]))
    )
    assert len(frame) == expected_rows
    step = frame[(frame["prompt"] == 1) & (frame["step"] == 2)]
    position = int(result.positions[1, 2])
    assert step["source"].tolist() == list(range(position + 1))
    assert step["score"].tolist() == result.scores[1, 2, : position + 1].double().tolist()
    assert step["normalized"].max() == 1.0
    assert step["in_prompt"].sum() == int(result.prompt_lengths[1])
    assert set(step["generated"]) == {result.generated_tokens[1][2]}
    assert frame.attrs["parameters"]["max_new_tokens"] == 6


def test_top_sources_are_the_highest_scores_of_a_step(result):
    sources = result.top_sources(1, 3, k=3)
    position = int(result.positions[1, 3])
    scores = result.scores[1, 3, : position + 1].double()
    assert [s for _, _, s in sources] == scores.sort(descending=True).values[:3].tolist()
    assert all(result.tokens[1][p] == token for p, token, _ in sources)
    with pytest.raises(IndexError, match="prompt 0 generated 4"):
        result.top_sources(0, 4)
    with pytest.raises(IndexError, match="prompt 2 is out of range"):
        result.top_sources(2, 0)


def test_a_step_is_an_attribution_that_saves_and_shows(tmp_path, result):
    step = result.step(1, 2)
    assert step.scores.shape == (1, len(result.tokens[1]))
    assert int(step.positions[0]) == int(result.positions[1, 2])
    assert step.details["eigenvalues"] == [result.details["eigenvalues"][1][2]]
    assert step.target_ids is None and step.info["step"] == {"prompt": 1, "step": 2}
    step.save(tmp_path / "step.json")
    loaded = ts.Attribution.load(tmp_path / "step.json")
    assert torch.equal(loaded.scores, step.scores) and loaded.tokens == step.tokens
    assert step.to_html().html.startswith("<!DOCTYPE html>")
    with pytest.raises(IndexError, match="prompt 0 generated 4"):
        result.step(0, 5)


def test_a_semantic_step_keeps_its_target(tmp_path):
    bridge = eos_stopping_bridge()
    result = attribute_generation(bridge, PROMPTS, ts.SemanticScope(), max_new_tokens=3)
    step = result.step(1, 1)
    assert step.target_ids.tolist() == [int(result.generated_ids[1, 1])]
    assert step.target_tokens == [result.generated_tokens[1][1]]
    assert float(step.target_probs[0]) == pytest.approx(float(result.probs[1, 1]))
    step.save(tmp_path / "semantic.json")
    assert ts.Attribution.load(tmp_path / "semantic.json").target_tokens == step.target_tokens
