"""The tiny model variants every exactness test runs on, for whichever TransformerLens is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests import helpers
from tlscopes.models import hooked_transformer_class

HAS_HOOKED = hooked_transformer_class() is not None

VARIANTS: dict[str, Callable[[], Any]] = {
    "bridge-llama-rms-rotary": lambda: helpers.build_bridge(),
    "bridge-gpt2-ln-absolute": lambda: helpers.build_bridge(helpers.build_hf_gpt2()),
}
if HAS_HOOKED:
    VARIANTS.update(
        {
            "hooked-ln-standard": lambda: helpers.build_hooked(),
            "hooked-rms-rotary": lambda: helpers.build_hooked(
                normalization_type="RMS", positional_embedding_type="rotary"
            ),
            "hooked-rms-rotary-grouped-query": lambda: helpers.build_hooked(
                normalization_type="RMS", positional_embedding_type="rotary", n_key_value_heads=1
            ),
        }
    )
