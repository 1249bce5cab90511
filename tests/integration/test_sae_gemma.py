"""Gemma Scope 2 folders on the shipped Gemma-3-270M: the hook points their config.json names
(Hugging Face modules) map to the TransformerLens hook points that hold the same activations.

Random SAEs are written in Gemma Scope 2's exact layout for each kind (resid_post, mlp_out,
attn_out) at layer 5, with the real widths (d_model 640; 4 heads x 256 for attn_out). The
reference is the Hugging Face model alone: h taken by a forward hook on the module that
``hf_hook_point_in`` names, x_t fed back as ``inputs_embeds``, and d pre_f / d x_t by autograd.
"""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests.unit.sae import sae_files
from tlscopes.models.packaged import packaged_model_dir

pytestmark = pytest.mark.integration

PROMPT = "The Eiffel Tower is in the city of"
LAYER = 5
# float32 through 6 layers in two implementations (TransformerLens and Hugging Face): the
# same tolerance as the scope tests on this model (tests/integration/test_gemma.py).
RTOL = 1e-4


@pytest.fixture(scope="module")
def model():
    return ts.load_model("gemma3-270m")


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    directory = packaged_model_dir("gemma3-270m")
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def hf_reference(hf_model, tokens, written, features):
    """(pre [k], d pre / d x [k, pos, d_model]) at the last position, Hugging Face alone."""
    name = written.config["hf_hook_point_in"]
    module_name, side = name.rsplit(".", 1)
    module = hf_model.get_submodule(module_name)
    captured = {}

    def keep(_, inputs, output):
        captured["h"] = inputs[0] if side == "input" else output

    handle = module.register_forward_hook(keep)
    try:
        x = hf_model.model.embed_tokens(tokens).detach().requires_grad_(True)
        hf_model(inputs_embeds=x)
    finally:
        handle.remove()
    h = captured["h"]
    h = (h[0] if isinstance(h, tuple) else h)[0, -1]
    w_enc = written.tensors["w_enc"].float()
    pre = h @ w_enc[:, features] + written.tensors["b_enc"].float()[features]
    rows = [torch.autograd.grad(pre[i], x, retain_graph=True)[0][0] for i in range(len(features))]
    return pre.detach(), torch.stack(rows)


@pytest.mark.parametrize(
    ("kind", "width", "hook"),
    [
        ("resid_post", 640, f"blocks.{LAYER}.hook_resid_post"),
        ("mlp_out", 640, f"blocks.{LAYER}.hook_mlp_out"),
        ("attn_out", 1024, f"blocks.{LAYER}.attn.hook_z"),
    ],
)
def test_gemma_scope_hook_points_match_hugging_face(model, hf_model, tmp_path, kind, width, hook):
    written = sae_files.write_gemma_scope(tmp_path, kind, LAYER, width)
    for name in written.tensors:  # float32, as Gemma Scope ships them
        written.tensors[name] = written.tensors[name].float()
    sae = ts.load_sae(written.path)
    assert sae.hook == hook
    tokens = model.to_tokens(PROMPT)
    features = [0, 1, 2, 5]
    pre, gradient = hf_reference(hf_model, tokens, written, features)
    result = ts.attribute_features(model, PROMPT, sae, features)
    torch.testing.assert_close(result.pre_activations.float(), pre, rtol=RTOL, atol=1e-4)
    expected = gradient.norm(dim=-1)
    peak = float(expected.max())
    torch.testing.assert_close(result.scores, expected, rtol=RTOL, atol=RTOL * peak)
    assert result.sink_positions == [0]  # Gemma's <bos>
