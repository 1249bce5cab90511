"""Loading SAEs from their own formats, offline, into :class:`~tlscopes.sae.model.SAE`.

* Gemma Scope 2 folders: ``params.safetensors`` with ``w_enc`` [d_in, d_sae], ``w_dec``,
  ``b_enc``, ``b_dec``, ``threshold`` (JumpReLU), and ``config.json`` whose
  ``hf_hook_point_in`` names the Hugging Face module the SAE reads.
* EleutherAI sparsify checkpoints: ``sae.safetensors`` with ``encoder.weight`` [d_sae, d_in],
  ``encoder.bias``, ``W_dec``, ``b_dec``, and ``cfg.json`` (``k``, ``d_in``); the folder's name
  is the hook point (``layers.6``, ``layers.6.mlp``). TopK after ReLU, b_dec subtracted from
  the input.
* SAELens: an ``SAE`` object (sae-lens 6.x, which needs TransformerLens < 4), or a folder it
  saved (``cfg.json`` with ``architecture`` and ``sae_weights.safetensors``).

Hook points are mapped to TransformerLens names (:func:`transformer_lens_hook`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from tlscopes.sae.model import SAE

GEMMA_SCOPE_PARAMS = "params.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
SAELENS_WEIGHTS = "sae_weights.safetensors"

_LAYERS = r"(?:model\.|transformer\.|gpt_neox\.|language_model\.(?:model\.)?)?(?:layers|h)\.(\d+)"
# Hugging Face module names (with Gemma Scope's ``.output`` / ``.input`` suffixes) and sparsify
# folder names -> TransformerLens hook points.
_HOOK_PATTERNS = (
    (rf"{_LAYERS}(?:\.output)?", "blocks.{layer}.hook_resid_post"),
    (rf"{_LAYERS}\.(?:mlp|post_feedforward_layernorm)(?:\.output)?", "blocks.{layer}.hook_mlp_out"),
    (rf"{_LAYERS}\.(?:self_attn|attn|attention)\.o_proj\.input", "blocks.{layer}.attn.hook_z"),
    (rf"{_LAYERS}\.(?:self_attn|attn|attention)(?:\.output)?", "blocks.{layer}.hook_attn_out"),
)
# Gemma Scope 2 folder kinds (``resid_post/layer_12_width_16k_l0_medium``) -> hook points.
_GEMMA_SCOPE_KINDS = {
    "resid_post": "blocks.{layer}.hook_resid_post",
    "resid_post_all": "blocks.{layer}.hook_resid_post",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "mlp_out_all": "blocks.{layer}.hook_mlp_out",
    "attn_out": "blocks.{layer}.attn.hook_z",
    "attn_out_all": "blocks.{layer}.attn.hook_z",
}
SAELENS_ARCHITECTURES = {"standard": "relu", "jumprelu": "jumprelu", "topk": "topk"}
SAELENS_HINT = (
    "sae-lens 6.x needs TransformerLens < 4: in a TransformerLens 3.x environment run "
    "`pip install sae-lens`, then pass the SAE object (sae_lens.SAE.from_pretrained(...)) or the "
    "folder it saved"
)


def transformer_lens_hook(name: str) -> str:
    """The TransformerLens hook point for an SAE's hook name.

    TransformerLens names pass through; Hugging Face module names map as
    ``model.layers.L(.output)`` -> ``blocks.L.hook_resid_post``,
    ``model.layers.L.mlp`` / ``.post_feedforward_layernorm.output`` -> ``blocks.L.hook_mlp_out``,
    ``model.layers.L.self_attn.o_proj.input`` -> ``blocks.L.attn.hook_z``,
    ``model.layers.L.self_attn`` -> ``blocks.L.hook_attn_out``.

    Raises:
        ValueError: a name it does not know (pass ``hook=`` to :func:`load_sae`).
    """
    if name.startswith(("blocks.", "hook_", "ln_final.")):
        return name
    for pattern, template in _HOOK_PATTERNS:
        match = re.fullmatch(pattern, name)
        if match:
            return template.format(layer=int(match.group(1)))
    raise ValueError(
        f"cannot map the SAE's hook point {name!r} to a TransformerLens hook point; pass "
        "hook='blocks.L.hook_resid_post' (or the hook it reads) to load_sae"
    )


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(value).__name__}")
    return value


def _require(tensors: Mapping[str, Tensor], names: tuple[str, ...], path: Path) -> None:
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ValueError(
            f"{path} lacks tensor(s) {missing}; it holds {sorted(tensors)}. Is it the format "
            "its file name suggests?"
        )


def _gemma_scope_hook(folder: Path, config: Mapping[str, Any]) -> str:
    hf_hook = config.get("hf_hook_point_in")
    if isinstance(hf_hook, str) and hf_hook:
        return transformer_lens_hook(hf_hook)
    layer = re.search(r"layer_(\d+)", folder.name)
    kind = _GEMMA_SCOPE_KINDS.get(folder.parent.name)
    if layer is None or kind is None:
        raise ValueError(
            f"{folder}: config.json has no hf_hook_point_in and the folder is not named like "
            "Gemma Scope 2's (resid_post/layer_L_...); pass hook= to load_sae"
        )
    return kind.format(layer=int(layer.group(1)))


def load_gemma_scope(folder: Path, hook: str | None = None) -> SAE:
    """A Gemma Scope 2 folder (JumpReLU; b_dec is not subtracted from the input)."""
    tensors = _read_safetensors(folder / GEMMA_SCOPE_PARAMS)
    _require(tensors, ("w_enc", "b_enc", "threshold"), folder / GEMMA_SCOPE_PARAMS)
    config_path = folder / "config.json"
    config = _read_json(config_path) if config_path.exists() else {}
    architecture = config.get("architecture", "jump_relu")
    if architecture != "jump_relu":
        raise ValueError(
            f"{config_path}: architecture {architecture!r}; Gemma Scope 2 SAEs are 'jump_relu'"
        )
    if tensors["w_enc"].ndim != 2:
        raise ValueError(
            f"{folder / GEMMA_SCOPE_PARAMS}: w_enc has shape {list(tensors['w_enc'].shape)}; "
            "expected [d_in, d_sae] (cross-layer transcoders are not SAEs at one hook point)"
        )
    return SAE.from_tensors(
        W_enc=tensors["w_enc"],
        b_enc=tensors["b_enc"],
        hook=hook or _gemma_scope_hook(folder, config),
        activation="jumprelu",
        threshold=tensors["threshold"],
        W_dec=tensors.get("w_dec"),
        b_dec=tensors.get("b_dec"),
        apply_b_dec_to_input=False,
        source=f"gemma-scope:{folder}",
    )


def load_sparsify(folder: Path, hook: str | None = None) -> SAE:
    """An EleutherAI sparsify TopK checkpoint folder (``sae.safetensors`` and ``cfg.json``)."""
    config = _read_json(folder / "cfg.json")
    if config.get("activation", "topk") != "topk":
        raise ValueError(
            f"{folder / 'cfg.json'}: activation {config.get('activation')!r}; tlscopes reads "
            "sparsify's 'topk' SAEs"
        )
    if config.get("transcode") or config.get("skip_connection"):
        raise ValueError(
            f"{folder / 'cfg.json'}: a transcoder / skip-connection checkpoint reads the MLP's "
            "input, not this folder's hook point; tlscopes loads plain sparsify SAEs"
        )
    k = config.get("k")
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"{folder / 'cfg.json'}: k must be an integer, found {k!r}")
    tensors = _read_safetensors(folder / SPARSIFY_WEIGHTS)
    _require(tensors, ("encoder.weight", "encoder.bias", "b_dec"), folder / SPARSIFY_WEIGHTS)
    W_enc = tensors["encoder.weight"].T.contiguous()
    d_in = config.get("d_in")
    if d_in is not None and d_in != W_enc.shape[0]:
        raise ValueError(
            f"{folder}: cfg.json says d_in = {d_in} but encoder.weight is "
            f"{list(tensors['encoder.weight'].shape)} ([d_sae, d_in])"
        )
    return SAE.from_tensors(
        W_enc=W_enc,
        b_enc=tensors["encoder.bias"],
        hook=hook or transformer_lens_hook(folder.name),
        activation="topk",
        k=k,
        W_dec=tensors.get("W_dec"),
        b_dec=tensors["b_dec"],
        apply_b_dec_to_input=True,
        source=f"sparsify:{folder}",
    )


def _from_saelens_config(
    config: Mapping[str, Any], tensors: Mapping[str, Tensor], source: str, hook: str | None
) -> SAE:
    """An SAE from SAELens' config fields and state dict (an object's or a saved folder's)."""
    architecture = str(config.get("architecture"))
    if architecture not in SAELENS_ARCHITECTURES:
        raise ValueError(
            f"{source}: SAELens architecture {architecture!r} is not supported; tlscopes reads "
            f"{sorted(SAELENS_ARCHITECTURES)}"
        )
    metadata = config.get("metadata") or {}
    name = hook or config.get("hook_name") or metadata.get("hook_name")
    if not name:
        raise ValueError(f"{source}: the SAELens config names no hook_name; pass hook=")
    if (config.get("hook_head_index") or metadata.get("hook_head_index")) is not None:
        raise ValueError(f"{source}: SAEs on a single head (hook_head_index) are not supported")
    normalisation = str(config.get("normalize_activations") or "none")
    W_enc, b_enc = tensors["W_enc"], tensors["b_enc"]
    W_dec = tensors.get("W_dec")
    if config.get("rescale_acts_by_decoder_norm"):
        # pre_f * ||W_dec[f]||: a per-feature constant, folded into the encoder.
        norms = W_dec.norm(dim=-1)
        W_enc, b_enc = W_enc * norms, b_enc * norms
    activation = SAELENS_ARCHITECTURES[architecture]
    return SAE.from_tensors(
        W_enc=W_enc,
        b_enc=b_enc,
        hook=transformer_lens_hook(str(name)),
        activation=activation,
        threshold=tensors.get("threshold") if activation == "jumprelu" else None,
        k=int(config["k"]) if activation == "topk" else None,
        W_dec=W_dec,
        b_dec=tensors.get("b_dec"),
        apply_b_dec_to_input=bool(config.get("apply_b_dec_to_input", True)),
        normalisation=normalisation,
        source=source,
    )


def load_saelens_folder(folder: Path, hook: str | None = None) -> SAE:
    """A folder SAELens saved: ``cfg.json`` (with ``architecture``) and its weights."""
    config = _read_json(folder / "cfg.json")
    tensors = _read_safetensors(folder / SAELENS_WEIGHTS)
    _require(tensors, ("W_enc", "b_enc"), folder / SAELENS_WEIGHTS)
    return _from_saelens_config(config, tensors, f"saelens:{folder}", hook)


def from_saelens(sae: Any, hook: str | None = None) -> SAE:
    """An SAE from a SAELens ``SAE`` object (its config and parameters, detached)."""
    cfg = sae.cfg
    config = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    if "architecture" not in config or callable(config.get("architecture")):
        config["architecture"] = cfg.architecture()
    metadata = getattr(cfg, "metadata", None)
    if metadata is not None and not isinstance(config.get("metadata"), Mapping):
        config["metadata"] = {"hook_name": metadata.hook_name}
    tensors = {name: value.detach() for name, value in sae.state_dict().items()}
    _require(tensors, ("W_enc", "b_enc"), Path(type(sae).__name__))
    release = metadata.release if metadata is not None else None
    sae_id = metadata.sae_id if metadata is not None else None
    source = f"saelens:{release}/{sae_id}" if release else f"saelens:{type(sae).__name__}"
    return _from_saelens_config(config, tensors, source, hook)


def _is_saelens(value: Any) -> bool:
    return hasattr(value, "cfg") and hasattr(value, "W_enc") and hasattr(value, "state_dict")


def load_sae(source: Any, *, hook: str | None = None) -> SAE:
    """An SAE from its own format, offline: a Gemma Scope 2 folder, an EleutherAI sparsify
    checkpoint folder, a folder SAELens saved, a SAELens ``SAE`` object, or an SAE.

    Args:
        source: a folder (or a file in it), a SAELens SAE object, or a tlscopes SAE.
        hook: the TransformerLens hook point, overriding what the SAE's config says.

    Raises:
        FileNotFoundError: no such path.
        ValueError: a folder in no known format (the message lists what it holds), or a config
            tlscopes cannot read.

    Example:
        >>> sae = load_sae("gemma-scope-2-270m-pt/resid_post/layer_12_width_16k_l0_medium")
        ... # doctest: +SKIP
        >>> sae.hook  # doctest: +SKIP
        'blocks.12.hook_resid_post'
    """
    if hook is not None and (not isinstance(hook, str) or not hook):
        raise ValueError(f"hook must be a hook point name or None, got {hook!r}")
    if isinstance(source, SAE):
        return source if hook is None else SAE.from_tensors(**_sae_fields(source, hook))
    if _is_saelens(source):
        return from_saelens(source, hook)
    if not isinstance(source, (str, Path)):
        raise TypeError(
            f"load_sae takes a folder path, a SAELens SAE object or a tlscopes SAE, got "
            f"{type(source).__name__}"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"no SAE at {path}; download it first (docs/guide/sae.md), then pass its folder. "
            f"For a SAELens release name: {SAELENS_HINT}"
        )
    folder = path.parent if path.is_file() else path
    names = {item.name for item in folder.iterdir()}
    if GEMMA_SCOPE_PARAMS in names:
        return load_gemma_scope(folder, hook)
    if SPARSIFY_WEIGHTS in names and "cfg.json" in names:
        return load_sparsify(folder, hook)
    if SAELENS_WEIGHTS in names and "cfg.json" in names:
        return load_saelens_folder(folder, hook)
    found = sorted(names)
    shown = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
    raise ValueError(
        f"unknown SAE format in {folder}: found [{shown}]. tlscopes reads Gemma Scope 2 folders "
        f"({GEMMA_SCOPE_PARAMS} + config.json), EleutherAI sparsify checkpoints "
        f"({SPARSIFY_WEIGHTS} + cfg.json) and SAELens folders ({SAELENS_WEIGHTS} + cfg.json); "
        "any other SAE: SAE.from_tensors(...)"
    )


def _sae_fields(sae: SAE, hook: str) -> dict[str, Any]:
    return {
        "W_enc": sae.W_enc,
        "b_enc": sae.b_enc,
        "hook": hook,
        "activation": sae.activation,
        "threshold": sae.threshold,
        "k": sae.k,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalisation": sae.normalisation,
        "source": sae.source,
    }


__all__ = ["SAELENS_HINT", "from_saelens", "load_sae", "transformer_lens_hook"]
