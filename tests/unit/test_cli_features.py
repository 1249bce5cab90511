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
