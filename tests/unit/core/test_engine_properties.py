"""Property tests over the input space: random prompt batches and explained positions."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tlscopes as ts
from tests import helpers

MODEL = helpers.build_bridge()
WORD = st.sampled_from([word for word in helpers.WORDS if word.isalpha()])
PROMPT = st.lists(WORD, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=12, deadline=None)
@given(
    prompts=st.lists(PROMPT, min_size=1, max_size=4), offset=st.integers(min_value=1, max_value=3)
)
def test_batched_equals_unbatched_at_any_position(prompts, offset):
    shortest = min(len(MODEL.to_tokens(p)[0]) for p in prompts)
    position = -min(offset, shortest)
    scope = ts.TemperatureScope()
    batched = ts.attribute(MODEL, prompts, scope, position=position)
    for index, prompt in enumerate(prompts):
        single = ts.attribute(MODEL, prompt, scope, position=position)
        length = len(single.tokens[0])
        torch.testing.assert_close(
            batched.scores[index, :length], single.scores[0], rtol=1e-9, atol=1e-12
        )
        explained = int(single.positions[0])
        assert bool((single.scores[0, explained + 1 :] == 0).all())


@settings(max_examples=12, deadline=None)
@given(prompt=PROMPT, scale=st.floats(min_value=0.1, max_value=10.0))
def test_direction_scores_scale_linearly_with_the_direction(prompt, scale):
    vector = torch.linspace(-1, 1, MODEL.cfg.d_model, dtype=torch.float64)
    base = ts.attribute(MODEL, prompt, ts.DirectionScope(vector)).scores
    scaled = ts.attribute(MODEL, prompt, ts.DirectionScope(vector * scale)).scores
    # Hugging Face Llama computes its rotary tables in float32, so the backward pass is linear
    # in the direction only to ~1e-8 relative, not to float64 precision.
    torch.testing.assert_close(scaled, base * scale, rtol=1e-6, atol=1e-12)
