"""Generating ids: the sampler's distribution and checks, and a right-padded batch where
prompts stop at different steps."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tlscopes.core.inputs import prepare_inputs
from tlscopes.generation.decoding import Sampler, generate_ids
from tlscopes.tokens import eos_token_id


def test_sampler_draws_from_the_tempered_top_k_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    sampler = Sampler(do_sample=True, temperature=0.5, top_k=2, seed=0)
    generators = sampler.generators(1)
    draws = torch.cat([sampler.choose(logits, torch.tensor([0]), generators) for _ in range(4000)])
    share = float((draws == 0).double().mean())
    expected = float(torch.softmax(torch.tensor([4.0, 2.0]), dim=0)[0])  # 0.881
    assert abs(share - expected) < 0.03
    assert set(draws.tolist()) == {0, 1}


def test_each_prompt_has_its_own_seeded_generator():
    logits = torch.zeros(2, 50, dtype=torch.float64)
    sampler = Sampler(do_sample=True, seed=11)
    generators = sampler.generators(2)
    draws = torch.stack(
        [sampler.choose(logits, torch.tensor([0, 1]), generators) for _ in range(8)]
    )
    # Same seed, same logits: both prompts draw the same sequence, whatever the batch.
    assert draws[:, 0].tolist() == draws[:, 1].tolist()
    alone = Sampler(do_sample=True, seed=11).generators(1)
    single = [int(sampler.choose(logits[:1], torch.tensor([0]), alone)) for _ in range(8)]
    assert single == draws[:, 0].tolist()
    assert Sampler().generators(2) is None
    assert Sampler().choose(torch.tensor([[0.0, 3.0, 1.0]]), torch.tensor([0]), None).tolist() == [
        1
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 2.0}, "pass do_sample=True"),
        ({"do_sample": True, "temperature": -1.0}, "positive and finite"),
        ({"do_sample": True, "temperature": float("inf")}, "positive and finite"),
        ({"do_sample": True, "top_k": True}, "top_k must be a positive integer"),
    ],
)
def test_sampler_refuses_bad_settings(options, message):
    with pytest.raises(ValueError, match=message):
        Sampler(**options)
    with pytest.raises(TypeError, match="seed must be an int"):
        Sampler(seed=1.5)


def test_generate_ids_continues_a_right_padded_batch_and_stops_rows_apart():
    model = helpers.build_bridge()
    prepared = prepare_inputs(model, ["the cat sat on the mat", "one"])
    free, counts = generate_ids(
        model, prepared, max_new_tokens=5, sampler=Sampler(), eos_id=None, pad_id=2
    )
    assert counts.tolist() == [5, 5]
    # Pretend prompt 1's fourth token is the end of sequence: it stops there, prompt 0 goes on.
    stop = int(free[1, 3])
    assert stop not in free[0].tolist() and stop not in free[1, :3].tolist()
    stopped, counts = generate_ids(
        model, prepared, max_new_tokens=5, sampler=Sampler(), eos_id=stop, pad_id=2
    )
    assert counts.tolist() == [5, 4]
    assert stopped[1].tolist() == free[1, :4].tolist() + [2]
    assert torch.equal(stopped[0], free[0])
    assert eos_token_id(model) == model.tokenizer.eos_token_id
