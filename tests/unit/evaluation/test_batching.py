"""Several passages per attribution pass give the rows of one passage at a time."""

from __future__ import annotations

import pandas as pd
import pytest

from tests import helpers
from tlscopes.evaluation import batching
from tlscopes.evaluation import runner as evaluate
from tlscopes.evaluation.ablation import Settings, attribute_passages

TEXTS = {
    "lambada": [
        "the capital of france is paris",
        "the capital of italy is rome",
        "a",  # unusable
        "the cat sat on the mat and the dog",
        "the dog sat on the mat",
    ],
    "iwslt": ["the cat sat on the mat", "paris is the capital of france"],
}
METHODS = ["fisher", "temperature", "semantic", "input_x_gradient", "integrated_gradients"]
METHODS += ["random"]


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def rows(run: evaluate.EvaluationRun) -> pd.DataFrame:
    return run.per_passage.sort_values(["task", "passage", "method"]).reset_index(drop=True)


@pytest.mark.parametrize("protocol", ["paper", "authors"])
def test_batched_passages_equal_one_at_a_time(model, tmp_path, monkeypatch, protocol):
    settings = Settings(n_steps=2, protocol=protocol, eraser=True)
    sizes = []
    attribute = attribute_passages

    def recording(model, passages, *args, **kwargs):
        sizes.append(len(passages))
        return attribute(model, passages, *args, **kwargs)

    monkeypatch.setattr(batching, "attribute_passages", recording)
    kwargs = {"settings": settings, "progress": False}
    single = evaluate.run_evaluation(model, TEXTS, METHODS, tmp_path / "one", **kwargs)
    batched = evaluate.run_evaluation(
        model, TEXTS, METHODS, tmp_path / "four", passages_per_batch=4, **kwargs
    )
    assert max(sizes) >= 2  # some passages did share a pass
    one, four = rows(single), rows(batched)
    numeric = [c for c in one.columns if c not in ("task", "method", "text_sha", "n_steps")]
    numeric = [c for c in numeric if c not in ("completeness_gap", "seed")]
    assert one[["task", "passage", "method"]].equals(four[["task", "passage", "method"]])
    pd.testing.assert_frame_equal(
        one[numeric].astype(float), four[numeric].astype(float), rtol=1e-9, atol=1e-12
    )
    assert batched.skipped["passage"].tolist() == single.skipped["passage"].tolist() == [2]


def test_passages_per_batch_must_be_positive(model):
    with pytest.raises(ValueError, match="positive"):
        list(batching.evaluate_in_batches(model, TEXTS, [("lambada", 0, ["fisher"])], None, 0))


def test_batch_groups_keeps_equal_keys_together_in_first_seen_order():
    assert batching.batch_groups([5, 7, 5, 5, 7], 2) == [[0, 2], [3], [1, 4]]
    assert batching.batch_groups([(3, ("a",)), (3, ("b",)), (3, ("a",))], 4) == [[0, 2], [1]]
    assert batching.batch_groups([], 3) == []
