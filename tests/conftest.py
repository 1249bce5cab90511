import os
import warnings

# The tests are offline: every model is built here or loaded from a local directory. Set before
# anything imports huggingface_hub, which reads it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

warnings.filterwarnings("ignore", category=UserWarning)
