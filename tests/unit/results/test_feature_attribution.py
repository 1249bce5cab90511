"""FeatureAttribution: its views (token map, top tokens, the reverse view, sinks), and save /
load, which keep every field and the provenance and refuse malformed files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tlscopes.results.feature_attribution import FeatureAttribution


def build(**overrides):
    values = dict(
        scores=torch.tensor([[9.0, 1.0, 3.0, 2.0, 0.0], [8.0, 4.0, 0.5, 1.0, 0.0]]),
        features=torch.tensor([17, 3]),
        pre_activations=torch.tensor([2.5, -0.5], dtype=torch.float64),
        activations=torch.tensor([2.5, 0.0], dtype=torch.float64),
        tokens=["<bos>", "a", "<b>", "c", "d"],
        token_ids=torch.tensor([0, 5, 6, 7, 8]),
        position=3,
        hook="blocks.3.hook_resid_post",
        sink_positions=[0],
        sae={"source": "sparsify:/x", "sha256": "ab" * 32},
        model_name="tiny",
        info={"method": "features", "sae": {"sha256": "ab" * 32}},
    )
    values.update(overrides)
    return FeatureAttribution(**values)


def test_views_leave_the_sink_out_by_default():
    result = build()
    assert result.fires.tolist() == [True, False]
    assert result.shown_positions == [1, 2, 3]
    assert result.top_tokens(17)["position"].tolist() == [2, 3, 1]
    assert build(include_bos=True).top_tokens(17)["position"].tolist() == [0, 2, 3, 1]
    token_map = result.token_map(17)
    assert math.isnan(float(token_map[0])) and token_map[1:].tolist() == [1.0, 3.0, 2.0, 0.0]
    sinks = result.sink_scores()
    assert sinks["ratio_to_max_other"].tolist() == [3.0, 2.0]
    frame = result.to_pandas()
    assert set(frame["position"]) == {1, 2, 3} and frame.attrs["method"] == "features"


def test_the_reverse_view_ranks_features_for_one_token():
    result = build()
    drivers = result.top_features(1)
    assert drivers["feature"].tolist() == [3, 17]
    assert drivers["fires"].tolist() == [False, True]
    assert result.top_features(-3)["feature"].tolist() == [17, 3]
    with pytest.raises(IndexError, match="outside the 5 tokens"):
        result.top_features(5)
    with pytest.raises(KeyError, match="feature 4 is not in this result"):
        result.row(4)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"scores has shape \[1, 5\]; expected \[features=2"):
        build(scores=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="position 5 is outside"):
        build(position=5)


def test_save_and_load_round_trip(tmp_path):
    result = build(scores=torch.tensor([[math.inf, 1.0, 3.0, 2.0, 0.0], [8.0, 4, 0.5, 1, 0]]))
    path = tmp_path / "features.json"
    result.save(path)
    with pytest.raises(FileExistsError):
        result.save(path)
    loaded = FeatureAttribution.load(path)
    for name in ("scores", "features", "pre_activations", "activations", "token_ids"):
        assert torch.equal(getattr(loaded, name), getattr(result, name))
        assert getattr(loaded, name).dtype == getattr(result, name).dtype
    assert loaded.tokens == result.tokens and loaded.sink_positions == [0]
    assert loaded.sae["sha256"] == "ab" * 32 and loaded.info == result.info


def test_load_refuses_malformed_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a tlscopes FeatureAttribution file"):
        FeatureAttribution.load(path)
    build().save(tmp_path / "good.json")
    payload = json.loads((tmp_path / "good.json").read_text())
    for field, value, message in [
        ("format_version", 9, "format_version 9"),
        ("features", {"tensor": [1, 2], "dtype": "float32"}, "'features' has dtype 'float32'"),
        ("tokens", "abc", "'tokens' is missing or has the wrong type"),
        ("position", 17, "position 17 is outside"),
    ]:
        path.write_text(json.dumps({**payload, field: value}))
        with pytest.raises(ValueError, match=message):
            FeatureAttribution.load(path)
