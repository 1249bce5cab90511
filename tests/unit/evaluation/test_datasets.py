"""The shipped passages, prompt files and the hub loader's errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tlscopes.evaluation import datasets
from tlscopes.methods import registry as methods

PROMPT = "the capital of france is paris and the capital of italy is rome"
REPO = Path(__file__).resolve().parents[3]
ALL = methods.method_names()
OPTIONS = {"integrated_gradients": {"n_steps": 3}}


def test_shipped_passages_load_offline():
    for task in datasets.task_names():
        texts = datasets.load_passages(task)
        assert len(texts) == 500 and all(isinstance(text, str) and text for text in texts)
    assert datasets.load_passages("iwslt", limit=3)[0].startswith("German: ")
    with pytest.raises(ValueError, match="known tasks: lambada, iwslt"):
        datasets.load_passages("squad")


def test_prompts_file_and_bad_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('[{"text": "a b"}, {"text": "c d"}]')
    assert datasets.load_passages("lambada", path) == ["a b", "c d"]
    path.write_text('[{"prompt": "a"}]')
    with pytest.raises(ValueError, match="text"):
        datasets.load_passages("lambada", path)


def test_hub_loader_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r"pip install 'tlscopes\[datasets\]'"):
        datasets.load_hub_passages("lambada")


def test_strip_trailing_punctuation():
    assert datasets.strip_trailing_punctuation('he said "Bob."  ') == 'he said "Bob'
    assert datasets.strip_trailing_punctuation("night") == "night"
