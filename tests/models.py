"""The tiny model variants every exactness test runs on, for whichever TransformerLens is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests import helpers
from tlscopes.models.facts import hooked_transformer_class

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


def build_hooked_without_tokenizer(**overrides: Any) -> Any:
    """A tiny HookedTransformer built from a config alone, as users build toy models: no
    tokenizer, float64, randomised weights."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    config = dict(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=40,
        n_ctx=32,
        act_fn="gelu",
        normalization_type="LN",
        dtype=torch.float64,
        seed=0,
    )
    config.update(overrides)
    return helpers.randomize_(HookedTransformer(HookedTransformerConfig(**config))).eval()


def build_bridge_without_tokenizer() -> Any:
    """A tiny TransformerBridge whose tokenizer was taken away (TransformerLens 4.x has no
    config-only models; this is the closest a bridge user gets)."""
    model = helpers.build_bridge()
    model.tokenizer = None
    return model


TOKENIZERLESS_VARIANTS: dict[str, Callable[[], Any]] = {
    "bridge-llama-no-tokenizer": build_bridge_without_tokenizer,
}
if HAS_HOOKED:
    TOKENIZERLESS_VARIANTS["hooked-ln-config-only"] = build_hooked_without_tokenizer
    TOKENIZERLESS_VARIANTS["hooked-rms-rotary-config-only"] = lambda: (
        build_hooked_without_tokenizer(normalization_type="RMS", positional_embedding_type="rotary")
    )
