"""Many SAE features at once: which input tokens drive each feature active at a position.

``attribute_features`` runs one forward pass (the engine's, with parameter gradients off), up to
the SAE's hook point only (nothing after it can influence the features), reads the SAE's input h at the explained position, picks the features ("active": those that fire
there; or given ids), and pulls every feature's d pre_f / dh back to the token embeddings
through the one recorded graph, several features per batched input-only backward pass
(:func:`tlscopes.core.engine.scope_gradients`). k features cost one forward pass and
ceil(k / directions per pass) backward passes.

``scores[i, t] = ||d pre_{f_i} / d x_t||_2``: the same score as ``attribute(model, inputs,
FeatureScope(sae, f_i))`` for each feature, from one pass instead of k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from tlscopes.core.engine import scope_gradients
from tlscopes.core.hooks import Capture, HookList
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.core.scopes import Scope, ScopeDirections, ScopeInputs
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.feature_attribution import FeatureAttribution
from tlscopes.results.provenance import provenance
from tlscopes.sae.feature_scope import explained_activation, feature_record, sae_hooks
from tlscopes.sae.model import SAE
from tlscopes.tokens import bos_positions, token_strings


def active_features(sae: SAE, pre: Tensor) -> Tensor:
    """The features that fire at one position (pre [d_sae]), highest activation first: above
    the threshold for JumpReLU, among the top k (and > 0) for TopK, > 0 for ReLU."""
    activations = sae.activations(pre)
    ids = (activations > 0).nonzero().flatten()
    order = torch.argsort(activations[ids], descending=True, stable=True)
    return ids[order].cpu()


# Features per batched backward pass by default (see attribute_features).
FEATURES_PER_PASS = 16


@dataclass(frozen=True)
class FeatureSetScope(Scope):
    """Several features of one SAE as one scope of rank k (one direction per feature), so the
    engine pulls them all back through one graph; the features are resolved from the forward
    pass when `requested` is "active". Used by :func:`attribute_features`."""

    sae: SAE
    requested: tuple[int, ...] | None = None  # None: the active features
    stop_width: int | None = None  # d_model: stop the forward pass at the SAE's hook point
    name: ClassVar[str] = "features"

    @property
    def explained_hook(self) -> str:
        return self.sae.hook

    def hooks(self, capture: Capture) -> HookList:
        return sae_hooks(self.sae, capture, self.stop_width)

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        h = explained_activation(self.sae, inputs)
        with torch.no_grad():
            pre = self.sae.pre_activations(h)
        if self.requested is None:
            features = active_features(self.sae, pre[0])
        else:
            features = torch.tensor(self.requested, dtype=torch.long)
        details: dict[str, Any] = {"features": features.tolist()}
        details.update(feature_record(self.sae, pre, features))
        if len(features) == 0:
            # Nothing fires: one zero direction keeps the engine's shapes; it is dropped after.
            vectors = torch.zeros(h.shape[0], 1, h.shape[-1], dtype=h.dtype, device=h.device)
        else:
            vectors = self.sae.feature_gradients(h, features)
        weights = torch.ones(vectors.shape[:2], dtype=vectors.dtype, device=vectors.device)
        return ScopeDirections(vectors, weights, details=details)


def _requested(sae: SAE, features: str | Sequence[int] | Tensor) -> tuple[int, ...] | None:
    if isinstance(features, str):
        if features != "active":
            raise ValueError(
                f"features must be 'active' or a list of feature ids, got {features!r}"
            )
        return None
    items = features.tolist() if isinstance(features, Tensor) else list(features)
    if isinstance(items, int):
        items = [items]
    if not items:
        raise ValueError("features is empty; pass 'active' or at least one feature id")
    ids = tuple(sae.check_feature(item) for item in items)
    if len(set(ids)) != len(ids):
        raise ValueError(f"features has repeated ids {sorted(ids)}; pass each once")
    return ids


def check_sae_fits(model: TransformerLensModel, sae: SAE) -> None:
    """Refuses an SAE that does not fit this model, before running it: one that reads a hook
    point the model lacks, or whose width does not match its hook point (both numbers in the
    message; for the hook points whose width the config gives)."""
    cfg = model.cfg
    hook = sae.hook
    if hook not in model.hook_dict:
        raise ValueError(
            f"the SAE reads {hook}, which {getattr(cfg, 'model_name', 'this model')} does not "
            "have; pick the model the SAE was trained for"
        )
    if hook.endswith(("hook_resid_post", "hook_resid_pre", "hook_resid_mid", "hook_mlp_out")):
        width, what = int(cfg.d_model), "d_model"
    elif hook.endswith("hook_attn_out"):
        width, what = int(cfg.d_model), "d_model"
    elif hook.endswith("attn.hook_z"):
        width, what = int(cfg.n_heads) * int(cfg.d_head), "n_heads x d_head"
    else:
        return
    sae.check_width(width, f"{hook} on {getattr(cfg, 'model_name', 'this model')} ({what})")


def attribute_features(
    model: TransformerLensModel,
    inputs: Inputs,
    sae: SAE,
    features: str | Sequence[int] | Tensor = "active",
    *,
    position: int = -1,
    include_bos: bool = False,
    directions_per_pass: int | None = None,
) -> FeatureAttribution:
    """Scores every input token for many SAE features at once, from one forward pass.

    Args:
        model: a HookedTransformer or TransformerBridge with unprocessed weights.
        inputs: one prompt: a string, or token ids [pos] or [1, pos].
        sae: the SAE (:func:`tlscopes.load_sae`); its hook point must be on this model.
        features: "active" (the features that fire at `position`, highest activation first)
            or feature ids.
        position: the explained position (-1: the last token).
        include_bos: keep BOS in the default views (it is always in ``scores``; by default it
            is reported as a sink: its residual norm is many times the others' and SAEs such as
            Gemma Scope were not trained on it).
        directions_per_pass: features per batched backward pass (None: 16,
            ``FEATURES_PER_PASS``); speed and memory only.

    Returns:
        A FeatureAttribution: ``scores`` [feature, pos] with ``scores[i, t] =
        ||d pre_{f_i} / d x_t||_2``, ``features``, ``pre_activations``, ``activations``, and the
        reverse view ``top_features(t)``.

    Example:
        >>> result = attribute_features(model, "The capital of France is", sae)  # doctest: +SKIP
        >>> result.top_tokens(result.features[0])  # doctest: +SKIP
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be a tlscopes SAE (tlscopes.load_sae(...)), got {type(sae)}")
    requested = _requested(sae, features)
    if not isinstance(include_bos, bool):
        raise TypeError(f"include_bos must be True or False, got {include_bos!r}")
    check_sae_fits(model, sae)
    prepared = prepare_inputs(model, inputs, position)
    if prepared.tokens.shape[0] != 1:
        raise ValueError(
            f"attribute_features explains one prompt; got {prepared.tokens.shape[0]}. Call it "
            "once per prompt"
        )
    # The forward pass stops at the SAE's hook point: later layers cannot influence the
    # features, and no prediction is reported.
    scope = FeatureSetScope(sae, requested, stop_width=int(model.cfg.d_model))
    if directions_per_pass is None:
        # The backward passes run through the layers up to the SAE's hook only, so larger
        # batches pay off sooner than the engine's full-depth default: measured on SmolLM2-135M
        # at 256 tokens, 64 features, hook in block 3 (2 loaded CPU cores, 2026-12-07), 16 per
        # pass took 35-38 s against 51-80 s for the default 3 (results/bench/features_2026-12-07).
        directions_per_pass = FEATURES_PER_PASS
    passed = scope_gradients(
        model,
        prepared.tokens,
        [scope],
        positions=prepared.positions,
        directions_per_pass=directions_per_pass,
    )
    details = passed.directions[0].details
    ids = torch.tensor(details["features"], dtype=torch.long)
    grads = passed.gradients[0][0]  # [feature, pos, d_model]
    if grads.dtype not in (torch.float32, torch.float64):
        grads = grads.float()
    scores = grads.norm(dim=-1).cpu()[: len(ids)]
    tokens = prepared.tokens[0].cpu()
    parameters = {
        "position": position,
        "features": "active" if requested is None else list(requested),
        "include_bos": include_bos,
    }
    info = provenance(model, "features", parameters=parameters)
    info["sae"] = sae.describe()
    return FeatureAttribution(
        scores=scores,
        features=ids,
        pre_activations=torch.tensor(details["pre_activation"][0], dtype=torch.float64),
        activations=torch.tensor(details["activation"][0], dtype=torch.float64),
        tokens=token_strings(model, tokens),
        token_ids=tokens,
        position=int(prepared.positions[0]),
        hook=sae.hook,
        sink_positions=bos_positions(model, tokens[:1]),
        include_bos=include_bos,
        sae=sae.describe(),
        model_name=str(getattr(model.cfg, "model_name", "")),
        info=info,
    )


__all__ = [
    "FEATURES_PER_PASS",
    "FeatureSetScope",
    "active_features",
    "attribute_features",
    "check_sae_fits",
]
