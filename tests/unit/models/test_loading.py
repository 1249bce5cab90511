"""Loading: local Hugging Face directories of every family on both kinds, and processed-weight
recognition on every family."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED

KINDS = ["bridge", "hooked"] if HAS_HOOKED else ["bridge"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-llama")
    hf_model = helpers.build_hf_llama(dtype=torch.float32)
    hf_model.config.architectures = ["LlamaForCausalLM"]
    hf_model.save_pretrained(directory)
    helpers.build_tokenizer().save_pretrained(directory)
    return directory, hf_model


@pytest.mark.parametrize("kind", KINDS)
def test_local_hugging_face_directory_loads_unprocessed(model_dir, kind):
    directory, hf_model = model_dir
    model = ts.load_model(str(directory), kind=kind)
    assert type(model).__name__ == (
        "TransformerBridge" if kind == "bridge" else "HookedTransformer"
    )
    # Both kinds record the model under the same name (evaluation runs compare it on resume).
    assert model.cfg.model_name == str(directory)
    processing = ts.weight_processing(model)
    assert not processing.folded_final_norm and not processing.centered_unembed
    tokens = model.to_tokens("the capital of france is")
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf_model(tokens).logits, rtol=1e-4, atol=1e-4)
    assert ts.attribute(model, "the capital of france is", ts.FisherScope()).scores.isfinite().all()


@pytest.mark.parametrize("kind", KINDS)
def test_a_directory_saved_without_a_tokenizer(tmp_path, kind):
    """A model saved on its own: HookedTransformer takes token ids, shown as <id>, and refuses
    text clearly; TransformerBridge, which always needs a tokenizer, says what to do."""
    hf_model = helpers.build_hf_llama()
    hf_model.config.architectures = ["LlamaForCausalLM"]
    hf_model.save_pretrained(tmp_path)
    if kind == "bridge":
        with pytest.raises(ValueError, match=r"has no tokenizer .*tokenizer\.save_pretrained"):
            ts.load_model(str(tmp_path), kind="bridge", dtype=torch.float64)
        return
    model = ts.load_model(str(tmp_path), kind="hooked", dtype=torch.float64)
    assert model.tokenizer is None
    ids = torch.tensor([[0, 5, 6, 7]])
    result = ts.attribute(model, ids, ts.FisherScope())
    assert result.tokens == [["<0>", "<5>", "<6>", "<7>"]]
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf_model(ids).logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="tokenizer"):
        ts.attribute(model, "some text", ts.FisherScope())


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        ts.load_model("anything", kind="other")


# --- Local directories of every family, both kinds -------------------------------------------

TOKENS = torch.tensor([[0, 8, 13, 6, 9, 17, 30, 12]])


def save_gemma1(directory) -> torch.nn.Module:
    """A tiny Gemma (1) saved with the word-level tokenizer: (1 + w) norms, scaled embeddings."""
    from transformers import GemmaConfig, GemmaForCausalLM

    config = GemmaConfig(
        vocab_size=len(helpers.build_tokenizer()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    torch.manual_seed(0)
    model = helpers.randomize_(GemmaForCausalLM(config).to(torch.float64)).eval()
    model.config.architectures = ["GemmaForCausalLM"]
    model.save_pretrained(directory)
    helpers.build_tokenizer().save_pretrained(directory)
    return model


def save_family(family: str, directory) -> torch.nn.Module:
    if family == "gemma":
        return save_gemma1(directory)
    return helpers.save_hf_family(family, str(directory))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family", ["gpt2", "gemma", "gemma2", "gemma3"])
def test_each_family_directory_loads_on_each_kind(tmp_path, family, kind):
    # HookedTransformer used to refuse these: GPT-2 for a config field transformers 5 dropped
    # (n_ctx), the Gemmas because TransformerLens converts them only by registered name.
    hf_model = save_family(family, tmp_path)
    model = ts.load_model(str(tmp_path), kind=kind, dtype=torch.float64)
    assert model.cfg.model_name == str(tmp_path)
    with torch.no_grad():
        # TransformerLens' Gemma converter adds the norms' 1 in float32, hence not 1e-12.
        torch.testing.assert_close(model(TOKENS), hf_model(TOKENS).logits, rtol=1e-5, atol=1e-5)


def test_a_family_without_a_hooked_conversion_is_refused_with_what_to_do(tmp_path):
    from transformers import BioGptConfig, BioGptForCausalLM

    config = BioGptConfig(
        vocab_size=len(helpers.build_tokenizer()),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BioGptForCausalLM(config).save_pretrained(tmp_path)
    helpers.build_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"kind='bridge'.*BioGptForCausalLM.*no adapter"):
        ts.load_model(str(tmp_path), kind="bridge")
    if HAS_HOOKED:
        with pytest.raises(ValueError, match=r"kind='hooked'.*BioGptForCausalLM.*kind='bridge'"):
            ts.load_model(str(tmp_path), kind="hooked")


# --- Processed weights on every family ----------------------------------------------------------

PROCESSING_FAMILIES = ["gpt2", "llama", "gemma2", "gemma3"]
PROMPT = "the capital of france is"


@pytest.mark.parametrize("family", PROCESSING_FAMILIES)
def test_bridge_compatibility_mode_is_recognised_on_every_family(family):
    # Gemma's norm multiplies by (1 + w), so its folded weight is 0: a check for weight == 1
    # took a processed Gemma bridge for an unprocessed one and scored the wrong y.
    hf_model = helpers.build_hf_family(family)
    hf_model.config.architectures = [type(hf_model).__name__]
    bridge = helpers.build_bridge(hf_model)
    assert ts.weight_processing(bridge) == ts.models.WeightProcessing(False, False)
    bridge.enable_compatibility_mode()
    assert ts.weight_processing(bridge).folded_final_norm
    for scope in (ts.TemperatureScope(), ts.FisherScope()):
        with pytest.raises(ValueError, match="folded into W_U"):
            ts.attribute(bridge, PROMPT, scope)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_processing_without_fold_ln_is_not_taken_for_folding(family):
    hf_model = helpers.build_hf_family(family)
    hf_model.config.architectures = [type(hf_model).__name__]
    bridge = helpers.build_bridge(hf_model)
    bridge.process_weights(fold_ln=False, center_writing_weights=False, center_unembed=False)
    assert ts.weight_processing(bridge) == ts.models.WeightProcessing(False, False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("contents", ["empty", "config only", "tokenizer only"])
def test_an_incomplete_directory_names_everything_it_lacks(model_dir, tmp_path, kind, contents):
    """Following the advice must lead to a model, not to the next missing file."""
    import shutil

    source = model_dir[0]
    if contents == "config only":
        shutil.copy(source / "config.json", tmp_path)
    if contents == "tokenizer only":
        for path in source.glob("*token*"):
            shutil.copy(path, tmp_path)
    expected = {
        "empty": "no config (config.json), no weights (model.safetensors or pytorch_model.bin), "
        "no tokenizer",
        "config only": "no weights (model.safetensors or pytorch_model.bin), no tokenizer",
        "tokenizer only": "no config (config.json), no weights (model.safetensors or "
        "pytorch_model.bin);",
    }[contents]
    with pytest.raises(ValueError) as error:
        ts.load_model(str(tmp_path), kind=kind)
    message = str(error.value)
    assert f"{tmp_path} is not a Hugging Face model directory: it has {expected}" in message
    assert "model.save_pretrained" in message and "smollm2-135m" in message
