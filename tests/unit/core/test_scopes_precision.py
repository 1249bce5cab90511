"""Scopes on float32, float16 and bfloat16 models against float64, and under a final-logit
soft-cap."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED, VARIANTS
from tests.reference import exact_jacobian, scores_for

TEXT = "the person grew up in the south and studied at columbia . the person is"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


HALF_BUILDERS = {
    "bridge-llama": lambda dtype: helpers.build_bridge(dtype=dtype),
    "bridge-gpt2": lambda dtype: helpers.build_bridge(helpers.build_hf_gpt2(dtype=dtype)),
}
if HAS_HOOKED:
    HALF_BUILDERS["hooked-rms-rotary"] = lambda dtype: helpers.build_hooked(
        dtype=dtype, normalization_type="RMS", positional_embedding_type="rotary"
    )

# Largest score error relative to the largest float64 score, as documented in the README:
# the model's own rounding (the forward and backward passes run in that precision); the sums
# are taken in float32. Measured on these models: float16 <= 7e-3, bfloat16 <= 3.4e-2.
HALF_TOLERANCE = {torch.float32: 1e-5, torch.float16: 1.5e-2, torch.bfloat16: 6e-2}


@pytest.mark.parametrize("dtype", sorted(HALF_TOLERANCE, key=str))
@pytest.mark.parametrize("name", sorted(HALF_BUILDERS))
def test_lower_precision_models_against_float64(name, dtype):
    reference_model = HALF_BUILDERS[name](torch.float64)
    model = HALF_BUILDERS[name](dtype)
    scopes = [
        ts.FisherScope(),
        ts.FisherScope(rank=2),
        ts.TemperatureScope(),
        ts.SemanticScope(" city"),
    ]
    expected = ts.attribute_many(reference_model, TEXT, scopes)
    got = ts.attribute_many(model, TEXT, scopes)
    for result, reference in zip(got, expected, strict=True):
        assert result.scores.dtype in (torch.float32, torch.float64)
        error = (result.scores.double() - reference.scores).abs().max() / reference.scores.max()
        assert float(error) <= HALF_TOLERANCE[dtype], (result.method, float(error))


@pytest.mark.skipif(not HAS_HOOKED, reason="a soft-capped HookedTransformer needs TL 3.x")
def test_fisher_under_a_final_logit_soft_cap_is_the_capped_distributions_information():
    cap = 2.0
    model = helpers.build_hooked(output_logits_soft_cap=cap)
    tokens = model.to_tokens(TEXT)[0]
    y, J = exact_jacobian(model, tokens, len(tokens) - 1)
    W_U, b_U = model.W_U.detach(), model.b_U.detach()
    z = y @ W_U + b_U
    p = torch.softmax(cap * torch.tanh(z / cap), dim=-1)
    slope = 1 - torch.tanh(z / cap).pow(2)
    jacobian = W_U * slope  # d(capped logits)/dy, [d_model, d_vocab]
    F = jacobian @ (torch.diag(p) - torch.outer(p, p)) @ jacobian.T
    values, vectors = torch.linalg.eigh(F)
    result = ts.attribute(model, tokens, ts.FisherScope(rank=2))
    expected = scores_for(J, vectors.flip(1)[:, :2], values.flip(0)[:2])
    torch.testing.assert_close(result.scores[0], expected, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(result.top_probs[0], p.topk(10).values.float())
    # Semantic Scope keeps explaining the target's pre-cap logit w^T y + b.
    semantic = ts.attribute(model, tokens, ts.SemanticScope(5))
    torch.testing.assert_close(
        semantic.scores[0], scores_for(J, W_U[:, 5:6]), rtol=1e-6, atol=1e-12
    )
