"""The facts tlscopes reads from a model, for both model kinds: its class, the weight
processing it carries, its unembedding, context length and logit soft-cap.

Both ``HookedTransformer`` (TransformerLens 3.x) and ``TransformerBridge`` (4.x, also in 3.x)
expose ``hook_embed`` (the token embeddings x_t that scopes differentiate with respect to) and
``unembed.hook_in`` (the final norm's output y, weight and bias included: exactly what the
unembedding multiplies), plus ``W_U`` [d_model, d_vocab] and ``b_U`` [d_vocab].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tlscopes.protocols import TransformerLensModel

EMBED_HOOK = "hook_embed"
FINAL_STATE_HOOK = "unembed.hook_in"


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
