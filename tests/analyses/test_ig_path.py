"""Figure 15: drawing the IG path integrand."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from analyses import ig_path
from tests import helpers
from tlscopes.analysis import path_integrand

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


def test_integrand_figure(bridge):
    integrand = path_integrand(bridge, TEXT, alphas=(0.1, 1.0))
    assert isinstance(ig_path.plot_path_integrand(integrand), Figure)
