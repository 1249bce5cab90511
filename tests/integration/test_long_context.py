"""Long context on the shipped models, checkpointed (issue 22), in float32.

The causal invariant: explaining position p of a long prompt equals explaining the last
position of its first p + 1 tokens; and the checkpointed path equals the plain one. The
prompt is 1,024 seeded random tokens (BOS first), explained at p = 767, which is past
Gemma-3-270M's 512-token sliding window, so its chunked local layers hide keys. Float32
tolerance: 1e-4 of the largest score (the two runs differ in length, so their matmuls, fused
kernels and query chunks could round differently; on SmolLM2 the scores came out bitwise equal
on 2026-12-07, and Gemma-3-270M passed within it).
"""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts

pytestmark = pytest.mark.integration

LENGTH, POSITION = 1024, 767
TOLERANCE = 1e-4


def prompt(model):
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1000, 20000, (LENGTH,), generator=generator)
    tokens[0] = int(model.tokenizer.bos_token_id or 0)
    return tokens


def relative_error(actual, expected):
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_position_p_of_a_long_prompt_equals_its_first_p_plus_1_tokens(name):
    model = ts.load_model(name)
    tokens = prompt(model)
    scopes = [ts.SemanticScope(), ts.FisherScope()]
    whole = ts.attribute_many(model, tokens, scopes, position=POSITION, checkpoint=True)
    prefix = ts.attribute_many(model, tokens[: POSITION + 1], scopes, checkpoint=True)
    plain = ts.attribute_many(model, tokens, scopes, position=POSITION, checkpoint=False)
    for long, short, kept in zip(whole, prefix, plain, strict=True):
        assert torch.equal(long.top_token_ids[:, 0], short.top_token_ids[:, 0])
        assert relative_error(long.scores[0, : POSITION + 1], short.scores[0]) <= TOLERANCE
        assert relative_error(long.scores, kept.scores) <= TOLERANCE
        assert bool((long.scores[0, POSITION + 1 :] == 0).all())
