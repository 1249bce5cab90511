"""The GenerationAttribution file: round trip, overwrite refusal, every field checked."""

from __future__ import annotations

import json

import pytest
import torch

import tlscopes as ts
from tests.models import build_bridge_without_tokenizer
from tests.unit.generation.test_attribution import PROMPTS, eos_stopping_bridge
from tlscopes.generation.attribution import attribute_generation
from tlscopes.results.generation_attribution import GenerationAttribution


@pytest.fixture(scope="module")
def result():
    return attribute_generation(
        eos_stopping_bridge(), PROMPTS, ts.FisherScope(rank=2), max_new_tokens=6
    )


def assert_same(loaded, result):
    for name in result.__dataclass_fields__:
        value, expected = getattr(loaded, name), getattr(result, name)
        if isinstance(expected, torch.Tensor):
            assert value.dtype == expected.dtype, name
            assert torch.equal(value, expected), name
        else:
            assert value == expected, name


def test_round_trip_is_exact(tmp_path, result):
    path = tmp_path / "generation.json"
    result.save(path)
    assert_same(GenerationAttribution.load(path), result)
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the file"))


def test_round_trip_without_a_tokenizer_and_with_non_finite_values(tmp_path):
    model = build_bridge_without_tokenizer()
    result = attribute_generation(
        model, torch.tensor([3, 9, 4]), ts.TemperatureScope(), max_new_tokens=2
    )
    result.entropy[0, 1] = float("nan")
    result.details["note"] = float("inf")
    path = tmp_path / "ids.json"
    result.save(path)
    loaded = GenerationAttribution.load(path)
    assert loaded.tokens[0][:3] == ["<3>", "<9>", "<4>"]
    assert torch.isnan(loaded.entropy[0, 1]) and loaded.details["note"] == float("inf")
    assert loaded.generated_tokens == result.generated_tokens


def test_save_refuses_to_overwrite(tmp_path, result):
    path = tmp_path / "generation.json"
    result.save(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        result.save(path)
    result.save(path, overwrite=True)


def _broken(tmp_path, result, change):
    path = tmp_path / "generation.json"
    result.save(path, overwrite=True)
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))
    return path


def _set(name, value):
    return lambda payload: payload.__setitem__(name, value)


def _drop_step(payload):
    payload["scores"]["tensor"][0].pop()


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("format", "tlscopes-attribution"), "not a tlscopes GenerationAttribution file"),
        (_set("format_version", 9), r"format_version 9, expected one of \[1\]"),
        (lambda p: p.pop("probs"), r"missing fields \['probs'\]"),
        (_set("extra", 1), r"unknown fields \['extra'\]"),
        (
            _set("scores", {"tensor": [[[1]]], "dtype": "torch.int64"}),
            "'scores' must be a floating",
        ),
        (_set("generated_ids", {"tensor": [[0.5]], "dtype": "torch.float32"}), "'generated_ids'"),
        (_drop_step, "'scores' has rows of different lengths"),
        (_set("probs", {"tensor": [[0.5]], "dtype": "torch.float64"}), "'probs' has shape"),
        (_set("generated_lengths", {"tensor": [4, 7], "dtype": "torch.int64"}), "expected 1 to 6"),
        (_set("generated_lengths", {"tensor": [4, 5], "dtype": "torch.int64"}), "longest is 5"),
        (_set("prompt_lengths", {"tensor": [0, 3], "dtype": "torch.int64"}), "every prompt"),
        (_set("prompt_lengths", {"tensor": [9, 3], "dtype": "torch.int64"}), "exceed"),
        (lambda p: p["tokens"][0].pop(), "'tokens' has rows of"),
        (lambda p: p["generated_tokens"][1].append("x"), "'generated_tokens' has rows"),
        (_set("generated_text", ["only one"]), "'generated_text' has 1 entries"),
        (_set("prompt_text", ["a", 2]), "'prompt_text' must be a list of strings"),
        (lambda p: p["top_tokens"][1].pop(), "prompt 1 must have 6 steps"),
        (_set("top_tokens", "none"), "'top_tokens' must be a list of 2 prompts"),
        (_set("method", 3), "'method' must be a string"),
        (_set("details", []), "'details' must be an object"),
        (_set("model_name", 1), "'model_name' must be a string"),
    ],
)
def test_load_names_what_is_wrong(tmp_path, result, change, message):
    path = _broken(tmp_path, result, change)
    with pytest.raises(ValueError, match=message):
        GenerationAttribution.load(path)


def test_load_refuses_what_is_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a tlscopes GenerationAttribution file"):
        GenerationAttribution.load(path)
