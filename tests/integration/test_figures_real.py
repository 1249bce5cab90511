"""The pieces of scripts/reproduce_figures.py on the real default model (offline, ~1 minute).

The whole --quick run takes a few minutes, so each figure's computation is checked on its own,
at the smallest size that still says something; the script itself runs its cheapest part.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import tlscopes as ts
from analyses import attention_sinks, fisher_spectrum
from tlscopes.analysis import path_integrand, timeseries
from tlscopes.evaluation import datasets

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    return ts.load_model()


def test_translation_matrix_equals_rows_and_aligns_words(model):
    translation = load_script("case_translation").translation_matrix(
        model, "Der alte Mann liest die Zeitung.", "The old man reads the newspaper."
    )
    result = translation.result
    for row in (0, len(translation.targets) - 1):
        single = ts.attribute(
            model, result.token_ids[:1], ts.FisherScope(), position=int(result.positions[row])
        )
        torch.testing.assert_close(result.scores[row], single.scores[0], rtol=1e-3, atol=1e-4)
    tokens = result.tokens[0]
    # " man" is explained above all by the German " Mann".
    row = translation.targets.index(" man")
    best = translation.source[int(result.scores[row, translation.source].argmax())]
    assert tokens[best] == " Mann"


def test_serialized_series_tokenize_one_token_per_digit(model):
    serialized = timeseries.serialize(timeseries.brownian_motion(20, seed=2))
    tokens = [str(t) for t in model.to_str_tokens(serialized.text)]
    assert len(tokens) == 1 + 3 * 20
    groups = timeseries.value_token_groups(tokens, 20)
    assert all(len(group) == 2 for group in groups)
    distribution = timeseries.next_value_distribution(model, serialized.text)
    assert len(distribution) == 90
    assert distribution["probability"].sum() > 0.9  # the model continues with a 2-digit number


def test_ig_integrand_ends_at_semantic_scope_and_is_large_near_the_null_input(model):
    integrand = path_integrand(
        model, load_script("case_bias").TEXT, target=" liberal", alphas=(0.01, 1.0)
    )
    semantic = ts.attribute(model, load_script("case_bias").TEXT, ts.SemanticScope(" liberal"))
    torch.testing.assert_close(integrand.norms[1], semantic.scores[0], rtol=1e-4, atol=1e-5)
    assert float(integrand.norms[0].sum()) > 10 * float(integrand.norms[1].sum())


def test_attention_sinks_on_the_real_model(model):
    frame = attention_sinks.sink_mass(
        model, "The capital of France is Paris, and the capital of Italy is"
    )
    assert frame["total"].sub(1).abs().max() < 1e-4
    table = attention_sinks.layer_head_sink(frame)
    assert table.shape == (30, 9)
    # SmolLM2's later layers park most attention on BOS.
    assert float(table.loc[15:].to_numpy().mean()) > 0.5


def test_fisher_spectrum_on_a_lambada_passage(model):
    (text,) = datasets.load_passages("lambada", limit=1)
    spectra = fisher_spectrum.fisher_spectra(model, [text], progress=False)
    explained = spectra.explained_variance()[0]
    assert explained[-1].item() == pytest.approx(1.0, rel=1e-6)
    assert 0.05 < explained[0].item() < 0.9
    probs = fisher_spectrum.passage_probabilities(model, text)
    top, _ = ts.fisher_directions(model.W_U.detach(), probs.float(), rank=1)
    assert spectra.eigenvalues[0, 0].item() == pytest.approx(top.item(), rel=1e-4)


def test_reproduce_figures_runs_a_part(tmp_path):
    reproduce = load_script("reproduce_figures")
    assert reproduce.main(["--out", str(tmp_path), "--quick", "--only", "bias"]) == 0
    assert (tmp_path / "bias.png").read_bytes()[:4] == b"\x89PNG"
    assert "<script" in (tmp_path / "bias.html").read_text(encoding="utf-8")
    assert set(json.loads((tmp_path / "timings.json").read_text())) == {
        "load_model",
        "bias",
        "total",
    }
