"""load_sae: each format read from random SAEs written in its exact layout, hook names mapped to
TransformerLens, refusals that name what was found; SAELens objects where sae-lens is installed
(it needs TransformerLens < 4, so those tests run in the 3.x environment)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest
import torch

import tlscopes as ts
from tests.unit.sae import sae_files
from tlscopes.sae.formats import transformer_lens_hook

# sae-lens 6 requires TransformerLens < 4: the SAELens tests belong to the 3.x environment, where
# scripts/setup.sh installs it (a missing sae-lens there fails the test rather than hiding it).
SAELENS_APPLIES = int(importlib.metadata.version("transformer-lens").split(".")[0]) < 4


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.layers.12.output", "blocks.12.hook_resid_post"),
        ("model.layers.3", "blocks.3.hook_resid_post"),
        ("layers.6", "blocks.6.hook_resid_post"),
        ("layers.6.mlp", "blocks.6.hook_mlp_out"),
        ("model.layers.5.post_feedforward_layernorm.output", "blocks.5.hook_mlp_out"),
        ("model.layers.7.self_attn.o_proj.input", "blocks.7.attn.hook_z"),
        ("layers.2.self_attn", "blocks.2.hook_attn_out"),
        ("gpt_neox.layers.4", "blocks.4.hook_resid_post"),
        ("blocks.9.hook_resid_pre", "blocks.9.hook_resid_pre"),
    ],
)
def test_hook_names_map_to_transformer_lens(name, expected):
    assert transformer_lens_hook(name) == expected


def test_an_unknown_hook_name_asks_for_hook():
    with pytest.raises(ValueError, match="cannot map.*'encoder.7'.*pass hook="):
        transformer_lens_hook("encoder.7")


def test_gemma_scope_folder(tmp_path):
    written = sae_files.write_gemma_scope(tmp_path, "resid_post", 3, 16)
    sae = ts.load_sae(written.path)
    assert (sae.hook, sae.activation, sae.d_in, sae.d_sae) == (
        "blocks.3.hook_resid_post",
        "jumprelu",
        16,
        24,
    )
    assert not sae.apply_b_dec_to_input and sae.source.startswith("gemma-scope:")
    assert torch.equal(sae.W_enc, written.tensors["w_enc"])
    assert torch.equal(sae.threshold, written.tensors["threshold"])
    # A file inside the folder works too, and hook= overrides the config.
    other = ts.load_sae(written.path / "params.safetensors", hook="blocks.0.hook_resid_post")
    assert other.hook == "blocks.0.hook_resid_post" and other.sha256 != sae.sha256


def test_gemma_scope_without_config_takes_the_hook_from_the_folder_name(tmp_path):
    written = sae_files.write_gemma_scope(tmp_path, "attn_out", 1, 16)
    (written.path / "config.json").unlink()
    assert ts.load_sae(written.path).hook == "blocks.1.attn.hook_z"


def test_sparsify_folder(tmp_path):
    written = sae_files.write_sparsify(tmp_path, "layers.2.mlp", 16, k=7)
    sae = ts.load_sae(written.path)
    assert (sae.hook, sae.activation, sae.k) == ("blocks.2.hook_mlp_out", "topk", 7)
    assert sae.apply_b_dec_to_input
    assert torch.equal(sae.W_enc, written.tensors["encoder.weight"].T)


def test_saelens_folder(tmp_path):
    written = sae_files.write_saelens(tmp_path, "blocks.1.hook_mlp_out", 16, "topk", "layer_norm")
    sae = ts.load_sae(written.path)
    assert (sae.hook, sae.activation, sae.k, sae.normalisation) == (
        "blocks.1.hook_mlp_out",
        "topk",
        5,
        "layer_norm",
    )


def test_pre_activations_match_the_raw_format(tmp_path):
    h = torch.randn(5, 16, dtype=torch.float64)
    for written in (
        sae_files.write_gemma_scope(tmp_path, "mlp_out", 0, 16),
        sae_files.write_sparsify(tmp_path, "layers.0", 16),
        sae_files.write_saelens(
            tmp_path, "blocks.0.hook_resid_post", 16, "jumprelu", "constant_norm_rescale"
        ),
    ):
        sae = ts.load_sae(written.path)
        expected = sae_files.reference_pre(written, h)
        torch.testing.assert_close(sae.pre_activations(h), expected, rtol=1e-12, atol=1e-12)
        for row in range(5):
            torch.testing.assert_close(
                sae.activations(sae.pre_activations(h[row])),
                sae_files.reference_activations(written, expected[row]),
            )


def test_unknown_format_names_what_was_found(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unknown SAE format.*\[notes.txt, weights.pt\]"):
        ts.load_sae(tmp_path)
    with pytest.raises(FileNotFoundError, match="no SAE at .*pip install sae-lens"):
        ts.load_sae(tmp_path / "gemma-scope-2-270m-pt-res")
    with pytest.raises(TypeError, match="folder path, a SAELens SAE object"):
        ts.load_sae(42)


def test_wrong_contents_are_refused(tmp_path):
    written = sae_files.write_sparsify(tmp_path, "layers.0", 16)
    config = json.loads((written.path / "cfg.json").read_text())
    (written.path / "cfg.json").write_text(json.dumps({**config, "d_in": 17}))
    with pytest.raises(ValueError, match="d_in = 17 but encoder.weight is \\[24, 16\\]"):
        ts.load_sae(written.path)
    (written.path / "cfg.json").write_text(json.dumps({**config, "transcode": True}))
    with pytest.raises(ValueError, match="transcoder"):
        ts.load_sae(written.path)
    gemma = sae_files.write_gemma_scope(tmp_path, "resid_post", 0, 16)
    config = json.loads((gemma.path / "config.json").read_text())
    (gemma.path / "config.json").write_text(json.dumps({**config, "architecture": "relu"}))
    with pytest.raises(ValueError, match="architecture 'relu'"):
        ts.load_sae(gemma.path)


def test_a_tlscopes_sae_passes_through_or_moves_hook():
    sae = ts.SAE.from_tensors(
        W_enc=torch.ones(4, 3), b_enc=torch.zeros(3), hook="blocks.0.hook_resid_post"
    )
    assert ts.load_sae(sae) is sae
    assert ts.load_sae(sae, hook="blocks.1.hook_resid_post").hook == "blocks.1.hook_resid_post"


# sae-lens 6.x is installable only beside TransformerLens < 4: its tests exist where it is.
SAELENS_CASES = [
    ("standard", "none"),
    ("jumprelu", "layer_norm"),
    ("topk", "constant_norm_rescale"),
]


def _saelens_sae(architecture, normalisation, d_in=16, d_sae=24):
    import sae_lens

    classes = {
        "standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig, {}),
        "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
        "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": 5}),
    }
    model_class, config_class, extra = classes[architecture]
    config = config_class(
        d_in=d_in,
        d_sae=d_sae,
        dtype="float64",
        apply_b_dec_to_input=True,
        normalize_activations=normalisation,
        **extra,
    )
    config.metadata.hook_name = "blocks.1.hook_resid_post"
    sae = model_class(config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
        if architecture == "jumprelu":
            sae.threshold.abs_()
    return sae


@pytest.mark.parametrize(("architecture", "normalisation"), SAELENS_CASES)
def check_a_saelens_object_and_its_saved_folder(architecture, normalisation, tmp_path):
    saelens_sae = _saelens_sae(architecture, normalisation)
    sae = ts.load_sae(saelens_sae)
    assert sae.hook == "blocks.1.hook_resid_post" and sae.normalisation == normalisation
    h = torch.randn(7, 16, dtype=torch.float64)
    with torch.no_grad():
        expected_pre = saelens_sae.process_sae_in(h) @ saelens_sae.W_enc + saelens_sae.b_enc
        expected = saelens_sae.encode(h)
    torch.testing.assert_close(sae.pre_activations(h), expected_pre, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sae.activations(sae.pre_activations(h)), expected)
    # d pre / dh against torch.func through SAELens' own input processing.
    features = torch.tensor([0, 5, 11])
    for row in range(3):
        reference = torch.func.jacrev(
            lambda v: saelens_sae.process_sae_in(v) @ saelens_sae.W_enc[:, features]
        )(h[row])
        torch.testing.assert_close(
            sae.feature_gradients(h[row : row + 1], features)[0], reference, rtol=1e-10, atol=1e-12
        )
    saelens_sae.save_model(str(tmp_path / "saved"))
    saved = ts.load_sae(tmp_path / "saved")
    assert saved.sha256 == sae.sha256


def test_saelens_hint_says_how_to_get_it():
    from tlscopes.sae.formats import SAELENS_HINT

    assert "pip install sae-lens" in SAELENS_HINT and "TransformerLens < 4" in SAELENS_HINT


if SAELENS_APPLIES:
    test_a_saelens_object_and_its_saved_folder = check_a_saelens_object_and_its_saved_folder
