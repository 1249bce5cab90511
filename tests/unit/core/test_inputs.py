"""Inputs that must be refused with a clear error."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.models import VARIANTS

TEXT = "the person grew up in the south and studied at columbia . the person is"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


@pytest.mark.parametrize("bad_id", [-1, "d_vocab", "d_vocab+5"])
def test_token_ids_outside_the_vocabulary_are_named(model, bad_id):
    d_vocab = int(model.cfg.d_vocab)
    value = {"d_vocab": d_vocab, "d_vocab+5": d_vocab + 5}.get(bad_id, bad_id)
    ids = torch.tensor([3, 4, value, 5])
    with pytest.raises(
        ValueError,
        match=f"id {value} \\(at index \\[0, 2\\]\\) is outside .*vocabulary of {d_vocab}",
    ):
        ts.attribute(model, ids, ts.TemperatureScope())
    assert attached_hooks(model) == 0


@pytest.mark.parametrize("dtype", [torch.complex64, torch.float32, torch.bool])
def test_non_integer_token_tensors_are_refused(model, dtype):
    with pytest.raises(TypeError, match="integer tensor"):
        ts.attribute(model, torch.tensor([3, 4, 5]).to(dtype), ts.TemperatureScope())


def test_inputs_of_the_wrong_type_are_refused(model):
    with pytest.raises(TypeError, match="inputs must be"):
        ts.attribute(model, 17, ts.TemperatureScope())


@pytest.mark.parametrize("inputs", [b"the person is", [TEXT, b"the person is"]])
def test_bytes_are_named_and_decoding_is_suggested(model, inputs):
    with pytest.raises(TypeError, match=r"bytes, not text; decode"):
        ts.attribute(model, inputs, ts.TemperatureScope())
    assert attached_hooks(model) == 0


def test_a_lone_surrogate_names_the_prompt_and_the_character_position(model):
    with pytest.raises(
        ValueError, match=r"prompt 1 holds a lone surrogate '\\ud800' at character 3"
    ):
        ts.attribute(model, [TEXT, "abc\ud800def"], ts.TemperatureScope())
    assert attached_hooks(model) == 0
