"""The SAE cases every exactness test runs: each file format, every nonlinearity, every hook
point (resid_post, mlp_out, attn.hook_z), each input normalisation; and the exact reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tests.unit.sae import sae_files
from tlscopes.testing.reference import activation_jacobian

TEXT = "the person grew up in the south and studied at columbia . the person is"


def attached_hooks(model: Any) -> int:
    """Forward and backward hooks left on the model's hook points (0 after any call)."""
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def _widths(model: Any) -> tuple[int, int]:
    return int(model.cfg.d_model), int(model.cfg.n_heads) * int(model.cfg.d_head)


# name -> (writer(root, model), the TransformerLens hook point it must map to)
CASES: dict[str, tuple[Callable[[Path, Any], sae_files.Written], str]] = {
    "gemma-jumprelu-resid_post": (
        lambda root, m: sae_files.write_gemma_scope(root, "resid_post", 0, _widths(m)[0]),
        "blocks.0.hook_resid_post",
    ),
    "gemma-jumprelu-mlp_out": (
        lambda root, m: sae_files.write_gemma_scope(root, "mlp_out", 1, _widths(m)[0]),
        "blocks.1.hook_mlp_out",
    ),
    "gemma-jumprelu-hook_z": (
        lambda root, m: sae_files.write_gemma_scope(root, "attn_out", 1, _widths(m)[1]),
        "blocks.1.attn.hook_z",
    ),
    "sparsify-topk-resid_post": (
        lambda root, m: sae_files.write_sparsify(root, "layers.0", _widths(m)[0]),
        "blocks.0.hook_resid_post",
    ),
    "sparsify-topk-mlp_out": (
        lambda root, m: sae_files.write_sparsify(root, "layers.1.mlp", _widths(m)[0]),
        "blocks.1.hook_mlp_out",
    ),
    "saelens-relu-hook_z": (
        lambda root, m: sae_files.write_saelens(root, "blocks.1.attn.hook_z", _widths(m)[1]),
        "blocks.1.attn.hook_z",
    ),
    "saelens-jumprelu-layer_norm-resid_post": (
        lambda root, m: sae_files.write_saelens(
            root, "blocks.0.hook_resid_post", _widths(m)[0], "jumprelu", "layer_norm"
        ),
        "blocks.0.hook_resid_post",
    ),
    "saelens-topk-constant_norm_rescale-mlp_out": (
        lambda root, m: sae_files.write_saelens(
            root, "blocks.1.hook_mlp_out", _widths(m)[0], "topk", "constant_norm_rescale"
        ),
        "blocks.1.hook_mlp_out",
    ),
}


def reference(
    model: Any,
    tokens: torch.Tensor,
    position: int,
    written: sae_files.Written,
    hook: str,
    input_hook: str = "hook_embed",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pre [d_sae], activations [d_sae], d pre / d a [d_sae, pos, ...]) with a the activation
    at `input_hook` (default the token embeddings), all from torch.func and the raw tensors."""
    h, J = activation_jacobian(model, tokens, position, input_hook, output_hook=hook)
    h_flat = h.reshape(-1)
    J_flat = J.reshape(h_flat.numel(), *J.shape[h.ndim :])
    pre = sae_files.reference_pre(written, h_flat)
    G = torch.func.jacrev(lambda v: sae_files.reference_pre(written, v))(h_flat)
    gradient = torch.einsum("fi,i...->f...", G, J_flat)
    return pre.detach(), sae_files.reference_activations(written, pre).detach(), gradient.detach()


def norms(gradient: torch.Tensor) -> torch.Tensor:
    """||.||_2 over everything after the position axis: [feature, pos]."""
    return gradient.flatten(start_dim=2).norm(dim=-1)


def firing_and_silent(activations: torch.Tensor) -> tuple[int, int]:
    """One feature that fires and one that does not (the random SAEs are built to have both)."""
    firing = (activations > 0).nonzero().flatten()
    silent = (activations == 0).nonzero().flatten()
    assert len(firing) and len(silent), "the random SAE should have firing and silent features"
    return int(firing[0]), int(silent[0])
