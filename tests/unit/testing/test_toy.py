"""Tiny models: seeded, every norm weight and bias away from its default."""

from __future__ import annotations

import pytest
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


def test_toy_text_is_as_many_tokens_as_asked_for_the_bos_included():
    tokenizer = toy.build_tokenizer()
    for length in (2, 3, 200):
        text = toy.toy_text(length)
        ids = tokenizer(text)["input_ids"]
        assert len(ids) == length - 1 and tokenizer.unk_token_id not in ids
    model = toy.build_bridge(max_position_embeddings=64)
    assert model.to_tokens(toy.toy_text(64)).shape == (1, 64)
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="at least one word"):
            toy.toy_text(bad)
