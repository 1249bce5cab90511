"""Tiny models: seeded, every norm weight and bias away from its default."""

from __future__ import annotations

import torch

from tlscopes.testing import toy
from tlscopes.tokens import has_tokenizer


def test_same_seed_same_weights_other_seed_other_weights():
    first, again, other = (
        toy.build_hf_llama(seed=3),
        toy.build_hf_llama(seed=3),
        toy.build_hf_llama(seed=4),
    )
    for (name, a), (_, b), (_, c) in zip(
        first.named_parameters(), again.named_parameters(), other.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name


def test_norm_weights_and_biases_are_randomised():
    model = toy.build_hf_gpt2()
    for name, param in model.named_parameters():
        if param.ndim == 1 and "ln" in name and name.endswith("weight"):
            assert not torch.allclose(param, torch.ones_like(param)), name
        elif param.ndim == 1:
            assert not torch.allclose(param, torch.zeros_like(param)), name


def test_the_bridge_has_the_word_level_tokenizer():
    model = toy.build_bridge()
    assert has_tokenizer(model)
    assert model.to_str_tokens("the cat sat") == ["<bos>", "the", "cat", "sat"]
    assert model.cfg.d_vocab == len(toy.build_tokenizer())
