"""Evaluation passages: the paper's 500 per task shipped with tlscopes, or the full sets online.

Each passage is one string whose last token is the prediction target (see
:mod:`tlscopes.evaluation.runner`). The shipped files are the first 500 of the 1000 passages per task the
paper's authors used (``tlscopes/data/README.md``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TASK_FILES = {
    "lambada": "lambada_prompts_500.json",
    "iwslt": "iwslt2017_de_en_500.json",
}
# The paper's filters (appendix A.1).
LAMBADA_MIN_WORDS = 50
IWSLT_MIN_ENGLISH_WORDS = 20
_TRAILING_PUNCTUATION = re.compile(r"[\s.,;:!?\"'”“’)\]—–-]+$")


def task_names() -> list[str]:
    return list(TASK_FILES)


def _check_task(task: str) -> None:
    if task not in TASK_FILES:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASK_FILES)}")


def load_passages(task: str, path: str | Path | None = None, limit: int | None = None) -> list[str]:
    """Passages from a JSON list of {"text": ...} objects (default: the task's shipped file).

    Args:
        task: "lambada" or "iwslt".
        path: a JSON file in the same format; None uses the shipped one.
        limit: keep only the first `limit` passages.
    """
    _check_task(task)
    path = DATA_DIR / TASK_FILES[task] if path is None else Path(path)
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("text"), str) for r in records
    ):
        raise ValueError(f'{path} must hold a JSON list of {{"text": ...}} objects')
    texts = [r["text"] for r in records]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        texts = texts[:limit]
    return texts


def strip_trailing_punctuation(text: str) -> str:
    """The text without punctuation or spaces after its final word (appendix A.1)."""
    return _TRAILING_PUNCTUATION.sub("", text)


def _import_datasets():
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "loading the full evaluation sets needs the Hugging Face `datasets` package and "
            "internet access: pip install 'tlscopes[datasets]' (or use the shipped passages: "
            "tlscopes.evaluation.datasets.load_passages)"
        ) from error
    return datasets


def load_hub_passages(task: str, limit: int = 1000, split: str = "test") -> list[str]:
    """The full task from the Hugging Face hub, filtered and formatted as in appendix A.1.

    LAMBADA (``EleutherAI/lambada_openai``): passages of at least 50 words, trailing
    punctuation removed. IWSLT2017 (``IWSLT/iwslt2017``, ``iwslt2017-de-en``):
    ``German: <de> English: <en>`` with at least 20 English words, trailing punctuation of the
    English side removed. Needs `datasets` and internet access; not run by the offline tests.
    The passages it selects need not be the authors' exactly (they did not publish their
    sampling); the shipped files are.
    """
    _check_task(task)
    datasets = _import_datasets()
    texts: list[str] = []
    if task == "lambada":
        rows = datasets.load_dataset("EleutherAI/lambada_openai", "en", split=split)
        for row in rows:
            text = strip_trailing_punctuation(row["text"].strip())
            if len(text.split()) >= LAMBADA_MIN_WORDS:
                texts.append(text)
            if len(texts) >= limit:
                break
    else:
        rows = datasets.load_dataset("IWSLT/iwslt2017", "iwslt2017-de-en", split=split)
        for row in rows:
            german = row["translation"]["de"].strip()
            english = strip_trailing_punctuation(row["translation"]["en"].strip())
            if len(english.split()) >= IWSLT_MIN_ENGLISH_WORDS:
                texts.append(f"German: {german} English: {english}")
            if len(texts) >= limit:
                break
    return texts
