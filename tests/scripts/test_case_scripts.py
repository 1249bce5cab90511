"""The case-study scripts write their figures (tiny models)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests import helpers

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


@pytest.fixture(scope="module")
def digits():
    return helpers.build_digit_bridge()


def load_script(name: str):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_case_scripts_write_their_figures(bridge, digits, tmp_path):
    bias = load_script("case_bias")
    written = bias.run(bridge, tmp_path, text=TEXT)
    translation = load_script("case_translation")
    written += translation.run(bridge, tmp_path, german="ich bin hier .", english="one two three")
    series = load_script("case_timeseries")
    written += series.run(digits, tmp_path, n_values=8)
    names = sorted(path.name for path in written)
    assert names == [
        "bias.html",
        "bias.png",
        "timeseries.html",
        "timeseries.png",
        "translation.html",
        "translation.png",
    ]
    for path in written:
        assert path.stat().st_size > 1000
        if path.suffix == ".png":
            assert path.read_bytes()[:4] == b"\x89PNG"


def test_translation_matrix_rows_are_the_english_positions(bridge):
    translation = load_script("case_translation").translation_matrix(
        bridge, "ich bin hier .", "one two three"
    )
    tokens = translation.result.tokens[0]
    assert [tokens[t] for t in translation.source] == ["ich", "bin", "hier", "."]
    assert [t.strip() for t in translation.targets] == ["one", "two", "three"]
    assert translation.result.scores.shape[0] == 3


def test_the_layer_case_study_writes_maps_and_sink_shares(bridge, tmp_path):
    import pandas as pd

    layers = load_script("case_layers")
    written = layers.run(bridge, tmp_path)
    assert sorted(path.name for path in written) == [
        "layers.html",
        "layers.png",
        "layers_sinks.csv",
    ]
    table = pd.read_csv(tmp_path / "layers_sinks.csv")
    assert set(table["scope"]) == set(layers.SCOPES) and set(table["text"]) == set(layers.texts())
    assert table["share_on_sinks"].between(0, 1).all()
    assert (tmp_path / "layers.png").read_bytes()[:4] == b"\x89PNG"
