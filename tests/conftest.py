import os
import warnings

# The tests are offline: every model is built here or loaded from a local directory. Set before
# anything imports huggingface_hub, which reads it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

warnings.filterwarnings("ignore", category=UserWarning)


def pytest_collection_modifyitems(config, items):
    """Tests under tests/browser drive headless Chromium: mark them `browser`, so a quick run
    can leave them out (-m "not integration and not browser")."""
    import pytest

    for item in items:
        if "tests/browser/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


import pytest  # noqa: E402

from tests import helpers  # noqa: E402 (after the offline settings above)
from tests.models import VARIANTS  # noqa: E402


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    """Every tiny model variant available with the installed TransformerLens, seeded (a test
    module may define its own `model`, e.g. a real or a tokenizer-less one)."""
    import torch

    torch.manual_seed(0)
    return VARIANTS[request.param]()


@pytest.fixture(scope="module")
def bridge():
    """One tiny Llama-style TransformerBridge, seeded."""
    return helpers.build_bridge()
