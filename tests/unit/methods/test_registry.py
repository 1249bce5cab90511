"""Methods by name: the registry, errors, shared passes equal to each method alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import helpers
from tests.models import VARIANTS
from tlscopes.methods import registry as methods
from tlscopes.results.attribution import Attribution

PROMPT = "the capital of france is paris and the capital of italy is rome"
REPO = Path(__file__).resolve().parents[3]
ALL = methods.method_names()
OPTIONS = {"integrated_gradients": {"n_steps": 3}}


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def test_every_method_is_reachable_by_name(model):
    assert ALL == [
        "fisher",
        "temperature",
        "semantic",
        "input_x_gradient",
        "integrated_gradients",
        "saliency",
        "random",
    ]
    for name in ALL:
        result = methods.attribute_by_name(model, PROMPT, name, **OPTIONS.get(name, {}))
        assert isinstance(result, Attribution) and result.method == name
        assert result.scores.shape == (1, len(result.tokens[0]))
        assert bool(torch.isfinite(result.scores).all()) and bool((result.scores >= 0).all())


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="known methods: fisher, temperature, semantic"):
        methods.get_method("shap")


def test_a_name_registered_twice_is_refused():
    registry: dict[str, methods.Method] = {}
    method = methods.get_method("fisher")
    methods._register(registry, method)
    with pytest.raises(ValueError, match="registered twice"):
        methods._register(registry, method)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shared_passes_give_the_same_scores_as_each_method_alone(name):
    model = VARIANTS[name]()
    prompts = [PROMPT, "the cat sat on the mat and"]
    together = methods.attribute_methods(model, prompts, ALL, target=" rome", n_steps=3, seed=5)
    assert list(together) == ALL
    for method in ALL:
        options = {"seed": 5} if method == "random" else OPTIONS.get(method, {})
        alone = methods.attribute_by_name(model, prompts, method, target=" rome", **options)
        torch.testing.assert_close(together[method].scores, alone.scores, rtol=1e-9, atol=1e-12)


def test_a_direction_by_name_equals_the_scope_and_needs_its_vector(model):
    import tlscopes as ts

    v = torch.linspace(-1, 1, model.cfg.d_model, dtype=torch.float64)
    by_name = methods.attribute_by_name(
        model, PROMPT, "direction", vector=v, at="blocks.1.hook_resid_pre"
    )
    scope = ts.DirectionScope(v, at="blocks.1.hook_resid_pre")
    torch.testing.assert_close(by_name.scores, ts.attribute(model, PROMPT, scope).scores)
    with pytest.raises(ValueError, match="needs the option"):
        methods.attribute_by_name(model, PROMPT, "direction")
    with pytest.raises(ValueError, match="attribute_by_name"):
        methods.attribute_methods(model, PROMPT, ["fisher", "direction"])
    assert "direction" not in methods.method_names()
    assert "direction" in methods.method_names(with_required_options=True)
