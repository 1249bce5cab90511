"""Every result says where it came from, and keeps it through save and load."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

import tlscopes as ts
from tlscopes.methods import baselines
from tlscopes.methods import registry as methods
from tlscopes.core.matrix import attribution_matrix

TEXT = "the capital of france is"


def test_a_scope_result_records_scope_model_and_versions(bridge, tmp_path):
    result = ts.attribute(bridge, TEXT, ts.FisherScope(rank=2), position=-2)
    info = result.info
    assert info["method"] == "fisher"
    assert info["scope"] == {"name": "FisherScope", "rank": 2}
    assert info["parameters"] == {"position": -2}
    assert info["model_kind"] == type(bridge).__name__ == "TransformerBridge"
    assert info["model_name"] == result.model_name
    assert info["dtype"] == "float64" and info["device"] == "cpu"
    assert info["versions"]["torch"] == torch.__version__
    assert info["versions"]["transformer_lens"] == importlib.metadata.version("transformer-lens")
    assert info["versions"]["tlscopes"] == importlib.metadata.version("tlscopes")
    assert result.to_pandas().attrs == info
    assert result[0].info == info
    path = tmp_path / "result.json"
    result.save(path)
    assert ts.Attribution.load(path).info == info


def test_direction_vectors_are_described_not_stored(bridge):
    vector = torch.full((bridge.cfg.d_model,), 2.0, dtype=torch.float64)
    info = ts.attribute(bridge, TEXT, ts.DirectionScope(vector, label="probe")).info
    assert info["scope"]["label"] == "probe"
    assert info["scope"]["vector"] == {
        "shape": [bridge.cfg.d_model],
        "dtype": "float64",
        "norm": pytest.approx(2.0 * bridge.cfg.d_model**0.5),
    }


def test_baselines_methods_and_the_matrix_record_their_parameters(bridge):
    ig = baselines.integrated_gradients(bridge, TEXT, target=5, n_steps=3, batch_size=2)
    assert ig.info["method"] == "integrated_gradients"
    expected = {"n_steps": 3, "batch_size": 2, "position": -1, "objective": "logit"}
    assert {key: ig.info["parameters"].get(key) for key in expected} == expected
    assert baselines.random_attribution(bridge, TEXT, seed=7).info["parameters"]["seed"] == 7
    shared = methods.attribute_methods(bridge, TEXT, ["semantic", "input_x_gradient"], target=5)
    assert shared["input_x_gradient"].info["method"] == "input_x_gradient"
    matrix = attribution_matrix(bridge, TEXT, ts.TemperatureScope(), positions=[1, 3])
    assert matrix.info["parameters"] == {"positions": [1, 3]}
    assert matrix.info["scope"] == {"name": "TemperatureScope"}
