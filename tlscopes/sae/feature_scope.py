"""FeatureScope: an SAE feature's encoder pre-activation as the explained quantity.

The score of input token t is ||d pre_f / d x_t||_2 (paper eq. 1 with the SAE feature's
pre-activation at the explained position in place of v^T y). pre_f depends on the explained
position's activation h alone, so d pre_f / d x_t = g^T dh/dx_t with g = d pre_f / dh evaluated
at that h: W_enc[:, f] without input normalisation (subtracting b_dec is a shift, which leaves
the gradient unchanged), J_N(h)^T W_enc[:, f] with one. The engine pulls g back exactly as it
does a :class:`~tlscopes.core.scopes.DirectionScope` at the SAE's hook point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from tlscopes.core.hooks import Capture, HookList, StopForward
from tlscopes.core.scopes import Scope, ScopeDirections, ScopeInputs
from tlscopes.sae.model import SAE


@dataclass(frozen=True)
class FlatExplain:
    """A hook keeping the activation at `name` at the explained positions with its trailing axes
    flattened ([states, d]; ``attn.hook_z``'s heads and d_head become one axis, as SAEs read it).

    Equal for the same capture and name, so the engine attaches it once per forward pass.

    With ``stop_width`` (d_model) it also ends the forward pass there: nothing after the hook
    point can influence what it captured. y is then not computed, and a zero placeholder
    [states, stop_width] stands in for it, so only a caller that reads no prediction may use
    it (:func:`tlscopes.attribute_features`).
    """

    capture: Capture
    name: str
    stop_width: int | None = None

    def __call__(self, tensor: Tensor, *, hook: Any) -> Tensor:
        capture = self.capture
        device = tensor.device
        picked = tensor[capture.rows.to(device), capture.positions.to(device)]
        capture.explained[self.name] = picked.flatten(start_dim=1)
        if self.stop_width is not None:
            capture.final_state = tensor.new_zeros(len(capture.positions), self.stop_width)
            raise StopForward
        return tensor


def sae_hooks(sae: SAE, capture: Capture, stop_width: int | None = None) -> HookList:
    """The capture's hooks and the one that keeps the SAE's input at the explained positions
    (and, with `stop_width`, stops the forward pass there; see :class:`FlatExplain`)."""
    return capture.hooks() + [(sae.hook, FlatExplain(capture, sae.hook, stop_width))]


def explained_activation(sae: SAE, inputs: ScopeInputs) -> Tensor:
    """The activation the SAE reads at each explained position [states, d_in], width checked."""
    h = inputs.explained[sae.hook]
    sae.check_width(h.shape[-1], f"{sae.hook} (flattened)")
    return h


def feature_record(sae: SAE, pre: Tensor, features: Tensor) -> dict[str, Any]:
    """The pre-activation, activation and firing of `features` at each state [states, k], and
    the SAE's description, for a result's details."""
    activations = sae.activations(pre)
    index = features.to(pre.device)
    picked_pre, picked_act = pre[:, index], activations[:, index]
    return {
        "pre_activation": picked_pre.double().cpu().tolist(),
        "activation": picked_act.double().cpu().tolist(),
        "fires": (picked_act > 0).cpu().tolist(),
        "sae": sae.describe(),
    }


@dataclass(frozen=True)
class FeatureScope(Scope):
    """Explains one SAE feature's encoder pre-activation at the explained position.

    Composes with everything a scope does (``attribute``, ``attribute_many``,
    ``attribute_layers`` with heads, ``attribute_generation``, HTML, save / load). The result's
    ``details`` report the pre-activation, the activation after the SAE's nonlinearity
    (ReLU, JumpReLU threshold, TopK) and whether the feature fires there, per prompt, with the
    SAE's source and hash. For many features at once use :func:`tlscopes.attribute_features`.

    Args:
        sae: the SAE (:func:`tlscopes.load_sae`, :meth:`SAE.from_tensors`).
        feature: the feature's index in [0, d_sae).

    Example:
        >>> result = ts.attribute(model, text, FeatureScope(sae, 1234))  # doctest: +SKIP
        >>> result.details["fires"]  # doctest: +SKIP
    """

    sae: SAE
    feature: int
    name: ClassVar[str] = "feature"

    def __post_init__(self) -> None:
        if not isinstance(self.sae, SAE):
            raise TypeError(
                f"FeatureScope needs a tlscopes SAE (tlscopes.load_sae(...)), got "
                f"{type(self.sae).__name__}"
            )
        object.__setattr__(self, "feature", self.sae.check_feature(self.feature))

    @property
    def explained_hook(self) -> str:
        return self.sae.hook

    def hooks(self, capture: Capture) -> HookList:
        return sae_hooks(self.sae, capture)

    def directions(self, inputs: ScopeInputs) -> ScopeDirections:
        h = explained_activation(self.sae, inputs)
        features = torch.tensor([self.feature])
        with torch.no_grad():
            pre = self.sae.pre_activations(h)
        vectors = self.sae.feature_gradients(h, features)  # [states, 1, d_in]
        record = feature_record(self.sae, pre, features)
        details = {
            "feature": self.feature,
            "at": self.sae.hook,
            "pre_activation": [row[0] for row in record["pre_activation"]],
            "activation": [row[0] for row in record["activation"]],
            "fires": [row[0] for row in record["fires"]],
            "sae": record["sae"],
        }
        weights = torch.ones(vectors.shape[:2], dtype=vectors.dtype, device=vectors.device)
        return ScopeDirections(vectors, weights, details=details)


__all__ = ["FeatureScope", "FlatExplain", "explained_activation", "feature_record", "sae_hooks"]
