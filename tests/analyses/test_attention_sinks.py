"""Attention sinks: patterns, sink mass, early shares, along the IG path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from analyses import attention_sinks
from tlscopes.analysis import path_integrand
from tlscopes.tokens import bos_positions

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def test_sink_mass_frame(model):
    frame = attention_sinks.sink_mass(model, TEXT)
    n = model.to_tokens(TEXT).shape[1]
    assert len(frame) == model.cfg.n_layers * model.cfg.n_heads * n
    # Hugging Face Llama takes the attention softmax in float32 even for a float64 model.
    assert frame["total"].sub(1).abs().max() < 1e-6
    assert (frame[frame["query"] == 0]["first"] - 1).abs().max() < 1e-6
    # BOS is the first token here, so mass on BOS is mass on position 0.
    assert bos_positions(model, model.to_tokens(TEXT)) == [0]
    assert (frame["bos"] - frame["first"]).abs().max() < 1e-12
    table = attention_sinks.layer_head_sink(frame)
    assert table.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert bool(((table >= 0) & (table <= 1)).all().all())


def test_early_share():
    scores = torch.tensor([3.0, 1.0, 1.0, 5.0, 0.0])
    assert attention_sinks.early_share(scores, position=3, n_early=1) == pytest.approx(0.3)
    assert attention_sinks.early_share(scores, position=2, n_early=2) == pytest.approx(0.8)


def test_method_early_shares(bridge):
    methods = ("semantic", "fisher", "integrated_gradients")
    shares, results = attention_sinks.method_early_shares(
        bridge, TEXT, target=" columbia", methods=methods, n_steps=4
    )
    assert list(shares["method"]) == list(methods) and set(results) == set(methods)
    assert bool((shares["share_first"] <= shares["share_first_3"] + 1e-12).all())
    assert bool(((shares["share_first_3"] > 0) & (shares["share_first_3"] <= 1)).all())
    semantic = results["semantic"].scores[0]
    assert shares["share_first"][0] == pytest.approx(float(semantic[0] / semantic.sum()))


def test_sink_path_and_figure(bridge):
    integrand = path_integrand(bridge, TEXT, alphas=(0.05, 0.5, 1.0))
    path = attention_sinks.sink_path(bridge, integrand, n_early=2)
    assert path.layer_sink.shape == (3, bridge.cfg.n_layers)
    assert bool(((path.layer_sink >= 0) & (path.layer_sink <= 1)).all())
    torch.testing.assert_close(path.integrand_share, integrand.early_share(2))
    patterns = attention_sinks.attention_patterns(bridge, integrand.token_ids, 0.5)
    torch.testing.assert_close(path.layer_sink[1], patterns[:, :, 1:, 0].double().mean(dim=(1, 2)))
    assert list(path.to_pandas().columns)[:2] == ["alpha", "sink_mass_mean"]
    frame = attention_sinks.sink_mass(bridge, TEXT)
    shares, _ = attention_sinks.method_early_shares(
        bridge, TEXT, methods=("semantic", "temperature"), n_early=2
    )
    assert isinstance(attention_sinks.plot_attention_sinks(frame, path, shares), Figure)


def test_sinks_beside_layer_scores_and_along_the_path(bridge):
    import tlscopes as ts

    table = attention_sinks.sink_table(bridge, TEXT)
    n_tokens = len(bridge.to_tokens(TEXT)[0])
    assert len(table) == bridge.cfg.n_layers * n_tokens
    assert table["head_share"].between(0, 1).all()
    shares, layered, sinks = attention_sinks.layer_sink_shares(bridge, TEXT, ts.FisherScope())
    assert list(shares["layer"]) == [-1, *range(bridge.cfg.n_layers)]
    assert shares["share_on_sinks"].between(0, 1).all()
    # Layer 0 equals the input scores, so their shares agree.
    assert shares["share_on_sinks"][0] == pytest.approx(shares["share_on_sinks"][1], rel=1e-9)
    expected = float(layered.scores[0, 1, sinks].sum() / layered.scores[0, 1].sum()) if sinks else 0
    assert shares["share_on_sinks"][2] == pytest.approx(expected)
    integrand = path_integrand(bridge, TEXT, alphas=(0.1, 1.0))
    along = attention_sinks.path_sink_shares(bridge, integrand)
    assert list(along["alpha"]) == [0.1, 1.0] and along["share_on_sinks"].between(0, 1).all()
    figure = attention_sinks.plot_layer_sink_shares({"fisher": shares})
    assert isinstance(figure, Figure)
