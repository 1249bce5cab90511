"""The attribution matrix: one prompt explained at many positions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tlscopes as ts
from tlscopes.core.matrix import attribution_matrix

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


MATRIX_TEXT = "german : ich bin hier . english : one two three four"
POSITIONS = [5, 7, -1, -3]


@pytest.mark.parametrize(
    "scope",
    [ts.FisherScope(), ts.FisherScope(rank=3), ts.TemperatureScope(), ts.SemanticScope(" four")],
    ids=["fisher", "fisher-rank3", "temperature", "semantic"],
)
def test_matrix_equals_row_by_row_attribution(model, scope):
    matrix = attribution_matrix(model, MATRIX_TEXT, scope, POSITIONS)
    n = model.to_tokens(MATRIX_TEXT).shape[1]
    assert matrix.scores.shape == (4, n)
    assert matrix.positions.tolist() == [5, 7, n - 1, n - 3]
    for row, position in enumerate(POSITIONS):
        single = ts.attribute(model, MATRIX_TEXT, scope, position=position)
        torch.testing.assert_close(matrix.scores[row], single.scores[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(matrix.top_probs[row], single.top_probs[0])
        assert matrix.top_tokens[row] == single.top_tokens[0]
        assert matrix.tokens[row] == single.tokens[0]
    assert attached_hooks(model) == 0


def test_matrix_teacher_forced_targets_and_chunked_passes(bridge):
    tokens = bridge.to_tokens(MATRIX_TEXT)[0]
    positions = list(range(6, len(tokens) - 1))
    targets = tuple(int(t) for t in tokens[7:])
    scope = ts.SemanticScope(targets)
    whole = attribution_matrix(bridge, MATRIX_TEXT, scope, positions)
    for per_pass in (1, 2):
        chunked = attribution_matrix(
            bridge, MATRIX_TEXT, scope, positions, directions_per_pass=per_pass
        )
        torch.testing.assert_close(whole.scores, chunked.scores, rtol=1e-9, atol=1e-12)
    assert whole.target_ids.tolist() == list(targets)
    for row, (position, target) in enumerate(zip(positions, targets, strict=True)):
        single = ts.attribute(bridge, MATRIX_TEXT, ts.SemanticScope(target), position=position)
        torch.testing.assert_close(whole.scores[row], single.scores[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(whole.target_probs[row], single.target_probs[0])


def test_matrix_refuses_bad_input_and_leaves_no_hooks(bridge):
    flags = [p.requires_grad for p in bridge.parameters()]
    with pytest.raises(ValueError, match="non-empty sequence"):
        attribution_matrix(bridge, MATRIX_TEXT, ts.FisherScope(), [])
    with pytest.raises(IndexError, match="out of range"):
        attribution_matrix(bridge, MATRIX_TEXT, ts.FisherScope(), [0, 99])
    with pytest.raises(ValueError, match="one prompt"):
        attribution_matrix(bridge, [MATRIX_TEXT, "the cat"], ts.FisherScope(), [1])
    with pytest.raises(ValueError, match="targets"):
        attribution_matrix(bridge, MATRIX_TEXT, ts.SemanticScope((" one", " two")), [1, 2, 3])
    assert attached_hooks(bridge) == 0
    assert [p.requires_grad for p in bridge.parameters()] == flags
