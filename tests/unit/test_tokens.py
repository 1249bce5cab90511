"""Every public path on models without a tokenizer: token ids in, tokens shown as ``<id>``."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from analyses import attention_sinks
from tests.models import TOKENIZERLESS_VARIANTS
from tests.reference import exact_jacobian, fisher_eig, scores_for
from tlscopes.analysis import path_integrand
from tlscopes.core.matrix import attribution_matrix
from tlscopes.methods import baselines
from tlscopes.methods import registry as methods
from tlscopes.tokens import has_tokenizer

IDS = torch.tensor([3, 17, 5, 9, 22, 11])


@pytest.fixture(scope="module", params=sorted(TOKENIZERLESS_VARIANTS))
def model(request):
    model = TOKENIZERLESS_VARIANTS[request.param]()
    assert not has_tokenizer(model)
    return model


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


@pytest.mark.parametrize(
    "scope",
    [ts.SemanticScope(4), ts.SemanticScope(), ts.FisherScope(rank=2), ts.TemperatureScope()],
    ids=["semantic-id", "semantic-top", "fisher-2", "temperature"],
)
def test_scores_are_exact_and_tokens_are_shown_by_id(model, scope):
    result = ts.attribute(model, IDS, scope, position=-2)
    assert result.tokens == [[f"<{i}>" for i in IDS.tolist()]]
    assert all(token.startswith("<") for token in result.top_tokens[0])
    y, J = exact_jacobian(model, IDS, position=4)
    if isinstance(scope, ts.TemperatureScope):
        expected = scores_for(J, (y / y.norm())[:, None])
    elif isinstance(scope, ts.SemanticScope):
        target = 4 if scope.target is not None else int(result.top_token_ids[0, 0])
        assert result.target_tokens == [f"<{target}>"]
        expected = scores_for(J, model.W_U[:, target].detach()[:, None])
    else:
        values, vectors = fisher_eig(model.W_U.detach(), y @ model.W_U.detach() + model.b_U)
        expected = scores_for(J, vectors[:, :2], values[:2])
    torch.testing.assert_close(result.scores[0, :5], expected[:5], rtol=1e-6, atol=1e-12)
    assert bool((result.scores[0, 5:] == 0).all())


def test_text_and_text_targets_are_refused_with_what_to_do(model):
    with pytest.raises(ValueError, match="no tokenizer.*pass token ids"):
        ts.attribute(model, "the cat", ts.TemperatureScope())
    with pytest.raises(ValueError, match="no tokenizer.*pass token ids"):
        ts.attribute(model, IDS, ts.SemanticScope(" cat"))
    assert attached_hooks(model) == 0


def test_many_batched_and_matrix(model):
    batch = torch.stack([IDS, IDS.flip(0)])
    results = ts.attribute_many(model, batch, [ts.TemperatureScope(), ts.SemanticScope(7)])
    assert results[0].tokens[1] == [f"<{i}>" for i in IDS.flip(0).tolist()]
    single = ts.attribute(model, IDS.flip(0), ts.SemanticScope(7))
    torch.testing.assert_close(results[1].scores[1], single.scores[0])
    matrix = attribution_matrix(model, IDS, ts.FisherScope(), positions=[2, 4, 5])
    row = ts.attribute(model, IDS, ts.FisherScope(), position=4)
    torch.testing.assert_close(matrix.scores[1], row.scores[0], rtol=1e-6, atol=1e-10)


def test_baselines_and_methods_by_name(model):
    for name in methods.method_names():
        kwargs = {"n_steps": 4} if name == "integrated_gradients" else {}
        result = methods.attribute_by_name(model, IDS, name, target=4, **kwargs)
        assert result.tokens[0][0] == "<3>"
        assert result.scores.shape == (1, len(IDS))
    ixg = baselines.input_x_gradient(model, IDS, target=None)
    assert ixg.target_tokens[0].startswith("<")


def test_analyses(model):
    frame = attention_sinks.sink_mass(model, IDS)
    assert set(frame["token"]) == {f"<{i}>" for i in IDS.tolist()}
    integrand = path_integrand(model, IDS, alphas=[0.5, 1.0])
    assert integrand.tokens[1] == "<17>"
    assert integrand.target.startswith("<")


def test_html_and_save_load_round_trip(model, tmp_path):
    result = ts.attribute(model, IDS, ts.FisherScope())
    html = str(result._repr_html_())
    # The token's text reaches the page escaped (as HTML, or inside inlined JSON), never raw.
    escaped_forms = ("&lt;17&gt;", "\\u003c17\\u003e", "\\u0026lt;17\\u0026gt;")
    assert any(form in html for form in escaped_forms)
    assert "<17>" not in html
    path = tmp_path / "result.json"
    result.save(path)
    loaded = ts.Attribution.load(path)
    assert loaded.tokens == result.tokens
    torch.testing.assert_close(loaded.scores, result.scores)
