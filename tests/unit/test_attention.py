"""Attention patterns read during one engine pass: rows sum to one, causal, scaled inputs."""

from __future__ import annotations

import pytest
import torch

from tests.models import TOKENIZERLESS_VARIANTS, VARIANTS
from tlscopes.attention import attention_patterns, bos_positions

TEXT = "the person grew up in the south and studied at columbia . the person is"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def test_attention_per_query_sums_to_one_and_is_causal(model):
    tokens = model.to_tokens(TEXT)
    patterns = attention_patterns(model, tokens)
    n = tokens.shape[1]
    assert patterns.shape == (model.cfg.n_layers, model.cfg.n_heads, n, n)
    torch.testing.assert_close(
        patterns.sum(-1), torch.ones(patterns.shape[:-1], dtype=patterns.dtype)
    )
    assert bool((patterns.triu(diagonal=1) == 0).all())
    assert attached_hooks(model) == 0


def test_scaling_the_embeddings_changes_the_patterns(model):
    tokens = model.to_tokens(TEXT)
    plain = attention_patterns(model, tokens)
    torch.testing.assert_close(attention_patterns(model, tokens, 1.0), plain)
    assert not torch.allclose(attention_patterns(model, tokens, 0.01), plain)


def test_text_and_token_ids_give_the_same_patterns_and_bos_is_found(model):
    tokens = model.to_tokens(TEXT)
    torch.testing.assert_close(attention_patterns(model, TEXT), attention_patterns(model, tokens))
    assert bos_positions(model, tokens) == [0]
    with pytest.raises(ValueError, match="one prompt"):
        attention_patterns(model, [TEXT, TEXT])


def test_a_model_without_a_tokenizer_has_no_bos_positions():
    model = TOKENIZERLESS_VARIANTS["bridge-llama-no-tokenizer"]()
    ids = torch.tensor([3, 4, 5])
    assert bos_positions(model, ids) == []
    assert attention_patterns(model, ids).shape[-1] == 3
