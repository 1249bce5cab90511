"""Loading from a local Hugging Face directory, for both model kinds."""

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


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        ts.load_model("anything", kind="other")
