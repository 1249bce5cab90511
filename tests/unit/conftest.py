import pytest
import torch

from tests.models import VARIANTS


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    """Every tiny model variant available with the installed TransformerLens, seeded."""
    torch.manual_seed(0)
    return VARIANTS[request.param]()
