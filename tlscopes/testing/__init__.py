"""Tiny seeded models and exact torch.func references, for checks and tests.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.testing.chromium import CHROMIUM, CHROMIUM_ARGS
    from tlscopes.testing.reference import (
        activation_jacobian,
        exact_jacobian,
        fisher_eig,
        scores_for,
    )
    from tlscopes.testing.toy import (
        build_bridge,
        build_hf_gpt2,
        build_hf_llama,
        build_hooked,
        build_tokenizer,
        randomize_,
        toy_text,
    )

_HOMES = {
    "CHROMIUM": "tlscopes.testing.chromium",
    "CHROMIUM_ARGS": "tlscopes.testing.chromium",
    "build_hooked": "tlscopes.testing.toy",
    "build_bridge": "tlscopes.testing.toy",
    "build_hf_llama": "tlscopes.testing.toy",
    "build_hf_gpt2": "tlscopes.testing.toy",
    "build_tokenizer": "tlscopes.testing.toy",
    "randomize_": "tlscopes.testing.toy",
    "toy_text": "tlscopes.testing.toy",
    "exact_jacobian": "tlscopes.testing.reference",
    "activation_jacobian": "tlscopes.testing.reference",
    "scores_for": "tlscopes.testing.reference",
    "fisher_eig": "tlscopes.testing.reference",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
