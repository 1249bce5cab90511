"""The SAE dataclass: checks on construction, the content hash, each nonlinearity and the
exact input gradient under each normalisation."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts


def build(**overrides):
    generator = torch.Generator().manual_seed(0)
    values = dict(
        W_enc=torch.randn(6, 10, generator=generator, dtype=torch.float64),
        b_enc=torch.randn(10, generator=generator, dtype=torch.float64),
        hook="blocks.0.hook_resid_post",
    )
    values.update(overrides)
    return ts.SAE.from_tensors(**values)


def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match=r"b_enc has shape \[9\].*must be \[10\]"):
        build(b_enc=torch.zeros(9))
    with pytest.raises(ValueError, match="not supported; choose from"):
        build(activation="gelu")
    with pytest.raises(ValueError, match="jumprelu SAE needs threshold"):
        build(activation="jumprelu")
    with pytest.raises(ValueError, match=r"topk SAE needs k, an integer in \[1, 10\]"):
        build(activation="topk", k=11)
    with pytest.raises(ValueError, match="k is for topk"):
        build(k=3)
    with pytest.raises(ValueError, match="needs b_dec"):
        build(apply_b_dec_to_input=True)
    with pytest.raises(ValueError, match="normalisation 'expected_average_only_in'"):
        build(normalisation="expected_average_only_in")
    with pytest.raises(ValueError, match="non-finite"):
        build(b_enc=torch.full((10,), float("nan")))
    sae = build()
    with pytest.raises(ValueError, match=r"d_in = 6.*is 7 wide"):
        sae.pre_activations(torch.zeros(7))


def test_the_hash_follows_what_sets_the_pre_activations():
    sae = build()
    assert sae.sha256 == build().sha256 and len(sae.sha256) == 64
    assert build(hook="blocks.1.hook_resid_post").sha256 != sae.sha256
    assert build(b_enc=sae.b_enc + 1e-9).sha256 != sae.sha256
    # The decoder does not change what a feature scope explains.
    assert build(W_dec=torch.zeros(10, 6, dtype=torch.float64)).sha256 == sae.sha256
    assert sae.sha256[:16] in repr(sae) and "W_enc" not in repr(sae)
    assert sae.describe()["d_sae"] == 10


def test_nonlinearities():
    pre = torch.tensor([[0.5, -1.0, 2.0, 0.1, 3.0, 0.0, 0.2, -0.3, 1.5, 0.7]])
    relu = build()
    assert torch.equal(relu.activations(pre), pre.clamp_min(0))
    jump = build(activation="jumprelu", threshold=torch.full((10,), 0.6, dtype=torch.float64))
    expected = torch.where(pre > 0.6, pre, torch.zeros_like(pre))
    assert torch.equal(jump.activations(pre), expected)
    topk = build(activation="topk", k=3)
    kept = topk.activations(pre)
    assert (kept > 0).nonzero()[:, 1].tolist() == [2, 4, 8]


@pytest.mark.parametrize("normalisation", ["none", "constant_norm_rescale", "layer_norm"])
def test_feature_gradients_are_exact(normalisation):
    b_dec = torch.linspace(-1, 1, 6, dtype=torch.float64)
    sae = build(normalisation=normalisation, b_dec=b_dec, apply_b_dec_to_input=True)
    h = torch.randn(3, 6, dtype=torch.float64)
    features = torch.tensor([1, 4, 9])
    gradients = sae.feature_gradients(h, features)
    for row in range(3):
        expected = torch.func.jacrev(lambda v: sae.pre_activations(v)[features])(h[row])
        torch.testing.assert_close(gradients[row], expected, rtol=1e-12, atol=1e-12)


def test_half_precision_activations_are_encoded_in_float32():
    sae = build(activation="topk", k=2)
    h = torch.randn(4, 6, dtype=torch.float64).to(torch.bfloat16)
    pre = sae.pre_activations(h)
    assert pre.dtype == torch.float32
    expected = h.double() @ sae.W_enc.float().double() + sae.b_enc.float().double()
    torch.testing.assert_close(pre.double(), expected, rtol=1e-6, atol=1e-6)
    assert sae.feature_gradients(h, torch.tensor([0, 3])).dtype == torch.float32
