"""``tlscopes features``: arguments checked before loading, the printed features and the files
it writes, on a tiny model with a random SAE written as a Gemma Scope 2 folder."""

from __future__ import annotations

import pytest

from tests.unit import test_cli
from tests.unit.sae import sae_files
from tlscopes import cli
from tlscopes.results.feature_attribution import FeatureAttribution

# The command-line tests' fixture: a tiny model that load_model returns, recording each load.
tiny_model = test_cli.tiny_model


@pytest.fixture
def sae_folder(tmp_path):
    return sae_files.write_gemma_scope(tmp_path / "sae", "resid_post", 0, 16).path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["features", "the cat"], "--sae"),
        (["features", "the cat", "--sae", "x", "--features", "1,a"], "'active' or comma"),
        (["features", "the cat", "--sae", "x", "--features", "-1"], "non-negative"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(argv, message, capsys, tiny_model):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err
    assert tiny_model == []


def test_errors_are_one_line(tmp_path, capsys, tiny_model):
    (tmp_path / "weights.pt").write_bytes(b"")
    assert cli.main(["features", "the cat", "--sae", str(tmp_path)]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "unknown SAE format" in err and "weights.pt" in err and len(err.splitlines()) == 1
    assert cli.main(["features", "--sae", str(tmp_path)]) == cli.EXIT_USER_ERROR
    assert "TEXT or as --ids" in capsys.readouterr().err
    assert tiny_model == []


def test_features_prints_and_writes_its_files(tmp_path, capsys, tiny_model, sae_folder):
    out, saved, figure = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "f.png"
    argv = ["features", "the cat sat on the mat", "--sae", str(sae_folder)]
    files = ["--out", str(out), "--save", str(saved), "--figure", str(figure)]
    assert cli.main([*argv, *files]) == 0
    printed = capsys.readouterr().out
    assert "SAE features at blocks.0.hook_resid_post" in printed and "feature " in printed
    assert "features the explained token drives most" in printed
    assert out.exists() and figure.stat().st_size > 0
    loaded = FeatureAttribution.load(saved)
    assert len(loaded) > 0 and loaded.sae["source"].startswith("gemma-scope:")
    assert cli.main([*argv, *files]) == cli.EXIT_USER_ERROR  # files exist
    assert cli.main([*argv, "--features", "0,1", "--save", str(saved), "--overwrite"]) == 0
    assert FeatureAttribution.load(saved).features.tolist() == [0, 1]


def test_serve_offers_the_given_saes_in_the_page(monkeypatch, capsys, tiny_model, sae_folder):
    import json
    import urllib.request

    from tlscopes.cli import serve

    assert cli.main(["serve", "--port", "0", "--sae", "missing"]) == cli.EXIT_USER_ERROR
    assert "--sae missing is not a folder" in capsys.readouterr().err
    assert tiny_model == []  # refused before any model loads
    seen = []

    def interrupt_once_served():
        url = capsys.readouterr().err.split("serving on ")[1].split()[0]
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            seen.append(json.loads(response.read()))
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "wait_until_interrupted", interrupt_once_served)
    monkeypatch.setattr(serve, "end_process", lambda status: None)
    assert cli.main(["serve", "--port", "0", "--sae", str(sae_folder)]) == 0
    menu = next(c["props"] for c in seen[0]["components"] if c["props"].get("label") == "SAE")
    assert [choice[1] for choice in menu["choices"]] == [sae_folder.name]
    assert any(dependency.get("api_name") == "features" for dependency in seen[0]["dependencies"])


def test_sae_folders_are_named_by_their_folder_unless_two_share_it(tmp_path):
    from tlscopes.cli.serve import sae_names

    a, b, c = tmp_path / "x" / "layer_3", tmp_path / "y" / "layer_3", tmp_path / "layers.6"
    assert sae_names([c]) == {"layers.6": c}
    assert sae_names([a, b, c]) == {str(a): a, str(b): b, "layers.6": c}
