"""Attention patterns read during one engine pass: rows sum to one, causal, scaled inputs."""

from __future__ import annotations

import pytest
import torch

from tests.models import HAS_HOOKED, TOKENIZERLESS_VARIANTS, VARIANTS
from tlscopes.analysis.attention import attention_patterns
from tlscopes.tokens import bos_positions

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


def test_the_sink_metric_by_hand():
    from tlscopes.analysis.attention import (
        key_importance,
        sink_head_share,
        sink_heads,
        sink_positions,
    )

    # One layer, two heads, three positions. Head 0 parks everything on position 0; head 1
    # attends to the diagonal.
    parked = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    diagonal = torch.eye(3)
    patterns = torch.stack([parked, diagonal])[None]  # [1, 2, 3, 3]
    torch.testing.assert_close(
        key_importance(patterns)[0], torch.tensor([[1.0, 0, 0], [1 / 3, 1 / 3, 1 / 3]]).double()
    )
    assert sink_heads(patterns)[0].tolist() == [[True, False, False], [True, True, True]]
    assert sink_heads(patterns, epsilon=0.5)[0].tolist() == [
        [True, False, False],
        [False, False, False],
    ]
    assert sink_head_share(patterns, epsilon=0.5)[0].tolist() == [0.5, 0.0, 0.0]
    assert sink_positions(patterns, epsilon=0.5, min_head_share=0.5) == [0]
    assert sink_positions(patterns, epsilon=0.5, min_head_share=0.6) == []
    with pytest.raises(ValueError, match="epsilon"):
        sink_heads(patterns, epsilon=1.5)


def test_score_share_and_masked_results():
    import tlscopes as ts
    from tlscopes.analysis.attention import score_share, without_positions
    from tlscopes.testing import toy

    torch.testing.assert_close(
        score_share(torch.tensor([2.0, 1.0, 1.0]), [0]), torch.tensor(0.5).double()
    )
    assert float(score_share(torch.zeros(3), [0])) == 0.0
    model = toy.build_bridge()
    result = ts.attribute(model, TEXT, ts.TemperatureScope())
    masked = without_positions(result, [0, 2])
    assert bool((masked.scores[0, [0, 2]] == 0).all())
    torch.testing.assert_close(masked.scores[0, 3:], result.scores[0, 3:])
    assert masked.info["masked_positions"] == [0, 2] and "masked_positions" not in result.info
    layered = ts.attribute_layers(model, TEXT, ts.TemperatureScope(), heads=True)
    masked_layers = without_positions(layered, [0])
    assert bool((masked_layers.scores[..., 0] == 0).all())
    assert bool((masked_layers.head_scores[..., 0] == 0).all())
    assert bool((masked_layers.input_scores[..., 0] == 0).all())
    torch.testing.assert_close(masked_layers.scores[..., 1:], layered.scores[..., 1:])


# Long prompts: key importance without a T x T pattern --------------------------------------------


@pytest.mark.parametrize(
    "family", ["llama", "mistral", "gemma2", "gemma3", "qwen3", "gpt2", "neox"]
)
def test_streamed_key_importance_equals_the_whole_patterns(tmp_path, monkeypatch, family):
    import tlscopes as ts
    from tests import helpers
    from tlscopes.analysis.attention import (
        key_importance,
        sink_head_share,
        sink_heads,
        sink_positions,
        streamed_key_importance,
    )
    from tlscopes.models import chunked_attention

    helpers.save_hf_family(family, str(tmp_path))
    kinds = ["bridge", "hooked"] if HAS_HOOKED else ["bridge"]
    tokens = torch.tensor([0, 8, 13, 6, 9, 17, 30, 12, 22, 5, 19, 27])
    # A few queries per chunk, so the sums run over several chunks (windows of 3 hide keys).
    monkeypatch.setattr(chunked_attention, "CHUNK_SCORE_ELEMENTS", 100)
    for kind in kinds:
        model = ts.load_model(str(tmp_path), kind=kind, dtype=torch.float64)
        for scale in (1.0, 0.5):
            patterns = attention_patterns(model, tokens, scale=scale)
            streamed = streamed_key_importance(model, tokens, scale=scale)
            expected = key_importance(patterns)
            assert streamed.shape == expected.shape
            torch.testing.assert_close(streamed, expected, rtol=1e-12, atol=1e-12)
        for epsilon in (0.1, 0.3):
            assert torch.equal(
                sink_heads(importance=streamed, epsilon=epsilon), sink_heads(patterns, epsilon)
            )
            assert torch.equal(
                sink_head_share(importance=streamed, epsilon=epsilon),
                sink_head_share(patterns, epsilon),
            )
            assert sink_positions(importance=streamed, epsilon=epsilon) == sink_positions(
                patterns, epsilon
            )


def test_streamed_key_importance_refuses_what_it_cannot_chunk(tmp_path):
    from transformers import BloomConfig, BloomForCausalLM

    import tlscopes as ts
    from tlscopes.analysis.attention import sink_heads, streamed_key_importance
    from tlscopes.testing.toy import build_tokenizer

    # Bloom's ALiBi attention is one the chunked path does not reproduce.
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = BloomConfig(vocab_size=len(tokenizer), hidden_size=16, n_layer=2, n_head=2)
    BloomForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = ts.load_model(str(tmp_path), kind="bridge", dtype=torch.float64)
    with pytest.raises(ValueError, match="not chunked in 2 of 2 layers; use key_importance"):
        streamed_key_importance(model, torch.tensor([0, 8, 13, 6]))
    with pytest.raises(ValueError, match="either patterns or importance"):
        sink_heads()
