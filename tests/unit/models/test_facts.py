"""Processed weights (fold_ln, center_unembed, 4.x compatibility mode): same scores or a refusal."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import HAS_HOOKED

PROMPT = "the capital of france is paris and the capital of italy is"
# TransformerLens' weight processing rounds through float32, so processed float64 models agree
# with the unprocessed ones to ~1e-7 relative, not to float64 precision.
RTOL = 1e-5

needs_hooked = pytest.mark.skipif(
    not HAS_HOOKED,
    reason="needs HookedTransformer (TransformerLens 3.x); CI runs a 3.x environment",
)


def processed_hooked(**options):
    model = helpers.build_hooked()
    model.process_weights_(**options)
    return model


def test_unprocessed_models_are_detected_as_such():
    processing = ts.weight_processing(helpers.build_bridge())
    assert not processing.folded_final_norm and not processing.centered_unembed


@needs_hooked
@pytest.mark.parametrize("normalization_type", ["LN", "RMS"])
def test_fold_ln_keeps_semantic_scores_and_refuses_the_others(normalization_type):
    plain = helpers.build_hooked(normalization_type=normalization_type)
    folded = helpers.build_hooked(normalization_type=normalization_type)
    folded.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=False)
    assert ts.weight_processing(folded).folded_final_norm
    torch.testing.assert_close(
        ts.attribute(folded, PROMPT, ts.SemanticScope(" rome")).scores,
        ts.attribute(plain, PROMPT, ts.SemanticScope(" rome")).scores,
        rtol=RTOL,
        atol=1e-9,
    )
    for scope in (
        ts.FisherScope(),
        ts.TemperatureScope(),
        ts.DirectionScope(plain.W_U[:, 5].detach()),
    ):
        with pytest.raises(ValueError, match="folded into W_U"):
            ts.attribute(folded, PROMPT, scope)


@needs_hooked
def test_center_unembed_keeps_distribution_scopes_and_refuses_semantic():
    plain = helpers.build_hooked()
    centered = processed_hooked(fold_ln=False, center_writing_weights=False, center_unembed=True)
    processing = ts.weight_processing(centered)
    assert processing.centered_unembed and not processing.folded_final_norm
    for scope in (ts.FisherScope(), ts.FisherScope(rank=3), ts.TemperatureScope()):
        torch.testing.assert_close(
            ts.attribute(centered, PROMPT, scope).scores,
            ts.attribute(plain, PROMPT, scope).scores,
            rtol=RTOL,
            atol=1e-9,
        )
    with pytest.raises(ValueError, match="center_unembed"):
        ts.attribute(centered, PROMPT, ts.SemanticScope(" rome"))


def test_bridge_compatibility_mode_is_refused_where_it_changes_scores():
    plain = helpers.build_bridge()
    processed = helpers.build_bridge()
    processed.enable_compatibility_mode()
    processing = ts.weight_processing(processed)
    assert processing.folded_final_norm and processing.centered_unembed
    for scope in (ts.FisherScope(), ts.TemperatureScope(), ts.SemanticScope(" rome")):
        with pytest.raises(ValueError, match="fold_ln|center_unembed"):
            ts.attribute(processed, PROMPT, scope)
    assert ts.attribute(plain, PROMPT, ts.FisherScope()).scores.isfinite().all()
