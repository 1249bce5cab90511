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
