"""Fisher spectra, explained variance and AOPC by rank."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import tlscopes as ts
from analyses import fisher_spectrum
from tests import helpers
from tests.models import VARIANTS

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


PASSAGES = [
    "the cat sat on the mat and the dog sat on the mat",
    "one two three four five six seven eight nine",
    "the capital of france is paris and the capital of italy is rome",
]


def test_spectrum_matches_the_explicit_matrix_and_its_trace(bridge):
    spectra = fisher_spectrum.fisher_spectra(bridge, PASSAGES, progress=False)
    d_model = bridge.cfg.d_model
    assert spectra.eigenvalues.shape == (3, d_model)
    for index, text in enumerate(PASSAGES):
        probs = fisher_spectrum.passage_probabilities(bridge, text)
        matrix = ts.fisher_matrix(bridge.W_U.detach().double(), probs)
        expected = torch.linalg.eigvalsh(matrix).flip(0)
        torch.testing.assert_close(
            spectra.eigenvalues[index], expected.clamp_min(0), atol=1e-12, rtol=1e-9
        )
        torch.testing.assert_close(
            spectra.traces[index], torch.trace(matrix), rtol=1e-9, atol=1e-12
        )
        top, _ = ts.fisher_directions(bridge.W_U.detach().double(), probs, rank=2)
        torch.testing.assert_close(spectra.eigenvalues[index, :2], top, rtol=1e-8, atol=1e-12)


def test_explained_variance_is_monotone_and_reaches_one(bridge):
    explained = fisher_spectrum.fisher_spectra(
        bridge, PASSAGES, progress=False
    ).explained_variance()
    assert explained.shape == (3, bridge.cfg.d_model)
    assert bool((explained.diff(dim=1) >= 0).all())
    assert bool((explained > 0).all())
    torch.testing.assert_close(
        explained[:, -1], torch.ones(3, dtype=explained.dtype), rtol=1e-9, atol=0
    )


def test_rank_scores_equal_fisher_scope_of_that_rank(model):
    tokens = model.to_tokens(PASSAGES[2])
    scores = fisher_spectrum.rank_scores(model, tokens, [1, 2, 5])
    for rank in (2, 5):
        expected = ts.attribute(model, tokens, ts.FisherScope(rank=rank)).scores[0]
        # Eigenvectors of a rank-5 and a rank-2 solve agree to the solver's tolerance only.
        torch.testing.assert_close(scores[rank], expected.double(), rtol=1e-6, atol=1e-12)
    rank_one = ts.attribute(model, tokens, ts.FisherScope())
    lambda_1 = rank_one.details["eigenvalues"][0][0]
    torch.testing.assert_close(
        scores[1], rank_one.scores[0].double() * math.sqrt(lambda_1), rtol=1e-6, atol=1e-12
    )


def test_aopc_by_rank_and_figure(bridge):
    frame = fisher_spectrum.aopc_by_rank(
        bridge, PASSAGES[:2], ranks=(1, 3), baselines=("semantic", "random"), progress=False
    )
    assert len(frame) == 2 * 4
    assert set(frame["method"]) == {"fisher_r1", "fisher_r3", "semantic", "random"}
    assert bool(frame["aopc"].map(math.isfinite).all())
    assert sorted(frame[frame["rank"] > 0]["rank"].unique()) == [1, 3]
    spectra = fisher_spectrum.fisher_spectra(bridge, PASSAGES, progress=False)
    assert isinstance(fisher_spectrum.plot_fisher_spectrum(spectra, frame), Figure)
    assert isinstance(fisher_spectrum.plot_fisher_spectrum(spectra), Figure)


def test_aopc_by_rank_uses_the_evaluation_of_tlscopes_evaluate(bridge):
    """Rank-1 Fisher Scope ranks tokens as FisherScope() does, so its AOPC is the evaluator's."""
    from tlscopes.evaluation.ablation import evaluate_passage

    frame = fisher_spectrum.aopc_by_rank(
        bridge, PASSAGES[:1], ranks=(1,), baselines=(), progress=False
    )
    (row,) = evaluate_passage(bridge, PASSAGES[0], ["fisher"])
    assert frame["aopc"][0] == pytest.approx(row["aopc"], rel=1e-9)
