"""Both TransformerLens model kinds satisfy the protocol tlscopes is written against."""

from __future__ import annotations

import pytest

from tests.models import TOKENIZERLESS_VARIANTS, VARIANTS
from tlscopes.protocols import TransformerLensModel


@pytest.mark.parametrize("name", sorted({**VARIANTS, **TOKENIZERLESS_VARIANTS}))
def test_every_model_kind_satisfies_the_protocol(name):
    model = {**VARIANTS, **TOKENIZERLESS_VARIANTS}[name]()
    assert isinstance(model, TransformerLensModel)


def test_something_else_does_not():
    import torch

    assert not isinstance(torch.nn.Linear(2, 2), TransformerLensModel)
    assert not isinstance(object(), TransformerLensModel)
