"""Random SAEs written in each exact file format, and an independent reference encoder.

The reference encoder reads the raw tensors the way each format's own library does (written
here from the formats' definitions, not through tlscopes.sae), so the tests compare tlscopes'
loading and its gradients against an independent computation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tlscopes.sae.model import SAE

DTYPE = torch.float64


@dataclass
class Written:
    """A written SAE: where, which format, its raw tensors and config."""

    path: Path
    format: str
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]


def _random(d_in: int, d_sae: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(d_in, d_sae, generator=generator, dtype=DTYPE) / d_in**0.5
    # Alternate large positive and negative biases so that some features fire and some do not.
    b_enc = torch.randn(d_sae, generator=generator, dtype=DTYPE) * 0.3
    b_enc[::3] += 2.0
    b_enc[1::3] -= 2.0
    return {
        "W_enc": W_enc,
        "b_enc": b_enc,
        "W_dec": torch.randn(d_sae, d_in, generator=generator, dtype=DTYPE),
        "b_dec": torch.randn(d_in, generator=generator, dtype=DTYPE) * 0.5,
        "threshold": torch.rand(d_sae, generator=generator, dtype=DTYPE) * 0.8,
    }


def write_gemma_scope(root: Path, kind: str, layer: int, d_in: int, seed: int = 0) -> Written:
    """``{root}/{kind}/layer_{layer}_width_16k_l0_medium`` with params.safetensors and
    config.json, as Gemma Scope 2 ships them (w_enc [d_in, d_sae])."""
    raw = _random(d_in, 24, seed)
    folder = root / kind / f"layer_{layer}_width_16k_l0_medium"
    folder.mkdir(parents=True)
    tensors = {
        "w_enc": raw["W_enc"],
        "w_dec": raw["W_dec"],
        "b_enc": raw["b_enc"],
        "b_dec": raw["b_dec"],
        "threshold": raw["threshold"],
    }
    save_file(tensors, str(folder / "params.safetensors"))
    hf_hook = {
        "resid_post": f"model.layers.{layer}.output",
        "mlp_out": f"model.layers.{layer}.post_feedforward_layernorm.output",
        "attn_out": f"model.layers.{layer}.self_attn.o_proj.input",
    }[kind]
    config = {
        "architecture": "jump_relu",
        "model_name": "gemma-v3-270m-pt",
        "hf_hook_point_in": hf_hook,
        "width": 24,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return Written(folder, "gemma-scope", tensors, config)


def write_sparsify(root: Path, name: str, d_in: int, k: int = 4, seed: int = 1) -> Written:
    """``{root}/{name}`` (e.g. ``layers.1.mlp``) with sae.safetensors and cfg.json, as
    EleutherAI sparsify saves a TopK SAE (encoder.weight [d_sae, d_in])."""
    raw = _random(d_in, 24, seed)
    folder = root / name
    folder.mkdir(parents=True)
    tensors = {
        "encoder.weight": raw["W_enc"].T.contiguous(),
        "encoder.bias": raw["b_enc"],
        "W_dec": raw["W_dec"],
        "b_dec": raw["b_dec"],
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    config = {
        "activation": "topk",
        "expansion_factor": 32,
        "normalize_decoder": True,
        "num_latents": 24,
        "k": k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": d_in,
    }
    (folder / "cfg.json").write_text(json.dumps(config))
    return Written(folder, "sparsify", tensors, config)


def write_saelens(
    root: Path,
    hook: str,
    d_in: int,
    architecture: str = "standard",
    normalisation: str = "none",
    seed: int = 2,
) -> Written:
    """A folder as SAELens saves an SAE: cfg.json and sae_weights.safetensors (W_enc
    [d_in, d_sae]), with apply_b_dec_to_input True."""
    raw = _random(d_in, 24, seed)
    folder = root / f"saelens-{architecture}-{normalisation}-{hook}"
    folder.mkdir(parents=True)
    tensors = {name: raw[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if architecture == "jumprelu":
        tensors["threshold"] = raw["threshold"]
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    config = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": 24,
        "dtype": "float64",
        "apply_b_dec_to_input": True,
        "normalize_activations": normalisation,
        "reshape_activations": "hook_z" if hook.endswith("hook_z") else "none",
        "metadata": {"hook_name": hook, "model_name": "tiny"},
    }
    if architecture == "topk":
        config["k"] = 5
    (folder / "cfg.json").write_text(json.dumps(config))
    return Written(folder, "saelens", tensors, config)


def reference_pre(written: Written, h: torch.Tensor) -> torch.Tensor:
    """Every feature's pre-activation at h [..., d_in], from the raw tensors."""
    t = written.tensors
    if written.format == "gemma-scope":
        return h @ t["w_enc"] + t["b_enc"]
    if written.format == "sparsify":
        return (h - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"]
    normalisation = written.config["normalize_activations"]
    if normalisation == "constant_norm_rescale":
        h = h * (h.shape[-1] ** 0.5) / torch.linalg.vector_norm(h, dim=-1, keepdim=True)
    elif normalisation == "layer_norm":
        mean = h.mean(dim=-1, keepdim=True)
        spread = torch.sqrt(((h - mean) ** 2).sum(-1, keepdim=True) / (h.shape[-1] - 1))
        h = (h - mean) / (spread + 1e-5)
    return (h - t["b_dec"]) @ t["W_enc"] + t["b_enc"]


def reference_activations(written: Written, pre: torch.Tensor) -> torch.Tensor:
    """Every feature's activation from its pre-activations [d_sae] (one position)."""
    if written.format == "gemma-scope":
        return torch.relu(pre) * (pre > written.tensors["threshold"]).to(pre)
    architecture = "topk" if written.format == "sparsify" else written.config["architecture"]
    if architecture == "jumprelu":
        return torch.relu(pre) * (pre > written.tensors["threshold"]).to(pre)
    if architecture == "topk":
        k = written.config["k"]
        kept = torch.zeros_like(pre)
        order = torch.sort(pre, descending=True).indices[:k]
        kept[order] = torch.relu(pre[order])
        return kept
    return torch.relu(pre)


def random_sae(
    d_in: int, hook: str = "blocks.0.hook_resid_post", seed: int = 0, **options: Any
) -> SAE:
    """A random ReLU SAE of 24 features as a tlscopes SAE (``SAE.from_tensors``), some of them
    firing and some not (for the views' tests; `options` go to ``from_tensors``)."""
    raw = _random(d_in, 24, seed)
    return SAE.from_tensors(W_enc=raw["W_enc"], b_enc=raw["b_enc"], hook=hook, **options)
