"""The command line: help without torch, arguments checked before any model loads, one-line
errors for user mistakes."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tests import helpers
from tlscopes import cli


@pytest.fixture
def tiny_model(monkeypatch):
    import tlscopes.models.loading

    model = helpers.build_bridge()
    loads = []

    def fake_load(*args, **kwargs):
        loads.append(args)
        return model

    monkeypatch.setattr(tlscopes.models.loading, "load_model", fake_load)
    return loads


def test_help_imports_neither_torch_nor_transformer_lens():
    code = (
        "import sys\n"
        "from tlscopes.cli import main\n"
        "for argv in (['--help'], ['attribute', '--help'], ['demo', '--help'],"
        " ['evaluate', '--help'], ['generate', '--help'], ['explore', '--help'],"
        " ['serve', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "heavy = [m for m in ('torch', 'transformer_lens', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "explain one prompt's next-token prediction" in done.stdout


def test_every_subcommand_and_option_has_help():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    described = {action.dest: action.help for action in subparsers._choices_actions}
    assert set(described) == set(cli.commands())
    assert {"attribute", "demo", "evaluate", "generate", "explore", "serve"} <= set(described)
    assert all(described.values())
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_the_help_texts_name_what_the_library_has():
    from tlscopes.evaluation import datasets
    from tlscopes.methods import baselines
    from tlscopes.methods import registry as methods

    assert list(cli.METHOD_NAMES) == methods.method_names()
    assert list(cli.TASK_NAMES) == datasets.task_names()
    assert cli.DEFAULT_N_STEPS == baselines.DEFAULT_N_STEPS
    assert cli.DEFAULT_MEMORY_GB * 1024**3 == baselines.DEFAULT_MEMORY_BUDGET


@pytest.mark.parametrize(
    "argv, message",
    [
        (["attribute", "  "], "the text is empty"),
        (["attribute", "the cat", "--top", "-1"], "expected a positive integer, got -1"),
        (["attribute", "the cat", "--rank", "0"], "expected a positive integer, got 0"),
        (["evaluate", "--output", "x", "--limit", "0"], "expected a positive integer"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(argv, message, capsys, tiny_model):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err
    assert tiny_model == []  # no model was loaded


@pytest.mark.parametrize(
    "argv, message",
    [
        (["attribute", "the cat", "--scope", "fisher", "--target", "cat"], "--target is for"),
        (["attribute", "the cat", "--scope", "temperature", "--rank", "2"], "--rank is for"),
        (["evaluate", "--output", "x", "--task", "squad"], "unknown task 'squad'"),
        (["evaluate", "--output", "x", "--methods", "fisher,bad"], "unknown method 'bad'"),
        (["evaluate", "--output", "x", "--fractions", "0.1,2"], "must lie in (0, 1]"),
    ],
)
def test_wrong_combinations_are_one_line_before_loading(argv, message, capsys, tiny_model):
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert tiny_model == []


def test_errors_found_after_loading_are_one_line_and_debug_shows_the_traceback(capsys, tiny_model):
    argv = ["attribute", "the capital of france is", "--scope", "semantic", "--target", "xyz q"]
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "target 'xyz q' is 2 tokens" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("tlscopes attribute: error:")
    with pytest.raises(ValueError, match="is 2 tokens"):
        cli.main(["--debug", *argv])


def test_attribute_writes_its_files_and_refuses_to_overwrite(tmp_path, capsys, tiny_model):
    out, saved = tmp_path / "r.html", tmp_path / "r.json"
    argv = ["attribute", "the capital of france is", "--out", str(out), "--save", str(saved)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "== fisher scope" in printed and out.exists() and saved.exists()
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite"]) == 0


def test_demo_reports_the_size_of_what_it_wrote(tmp_path, capsys, tiny_model):
    out = tmp_path / "demo.html"
    argv = ["demo", "--text", "the capital of france is", "--target", " paris", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (" in printed and "KiB" in printed
    assert printed.count("== ") == 3


def test_token_ids_instead_of_text(capsys, tiny_model):
    assert cli.main(["attribute", "--ids", "0,5,7,9", "--scope", "temperature"]) == 0
    assert "'<bos>'" in capsys.readouterr().out
    assert cli.main(["attribute", "the cat", "--ids", "1,2"]) == cli.EXIT_USER_ERROR
    assert "one of the two" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["attribute", "--ids", "1,x"])
    assert "comma-separated integers" in capsys.readouterr().err
    assert cli.main(["attribute", "--ids", "1,100000"]) == cli.EXIT_USER_ERROR
    assert "outside the model's vocabulary" in capsys.readouterr().err


def test_a_model_without_a_tokenizer_shows_tokens_by_id(capsys, monkeypatch):
    import tlscopes.models.loading
    from tests.models import build_bridge_without_tokenizer

    model = build_bridge_without_tokenizer()
    monkeypatch.setattr(tlscopes.models.loading, "load_model", lambda *args, **kwargs: model)
    assert cli.main(["attribute", "--ids", "3,17,5", "--scope", "temperature"]) == 0
    printed = capsys.readouterr().out
    assert "'<17>'" in printed and "'<5>'" in printed
    assert cli.main(["attribute", "the cat"]) == cli.EXIT_USER_ERROR
    assert "no tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "the cat", "--temperature", "2"], "add --sample"),
        (["generate", "the cat", "--top-k", "3"], "add --sample"),
        (["generate", "the cat", "--seed", "3"], "--seed seeds sampling; add --sample"),
        (["generate", "the cat", "--scope", "semantic", "--rank", "2"], "--rank is for"),
        (["generate", "the cat", "--ids", "1,2"], "one of the two"),
    ],
)
def test_generate_refuses_wrong_combinations_before_loading(argv, message, capsys, tiny_model):
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert tiny_model == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "the cat", "--max-new-tokens", "0"], "expected a positive integer"),
        (["generate", "the cat", "--sample", "--temperature", "0"], "expected a positive number"),
        (["generate", "the cat", "--sample", "--temperature", "x"], "expected a positive number"),
    ],
)
def test_generate_arguments_are_checked_by_the_parser(argv, message, capsys, tiny_model):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err
    assert tiny_model == []


def test_generate_prints_each_step_and_writes_its_files(tmp_path, capsys, tiny_model):
    from tlscopes.results.generation_attribution import GenerationAttribution

    out, saved = tmp_path / "gen.html", tmp_path / "gen.json"
    argv = ["generate", "the cat sat on", "--max-new-tokens", "4", "--out", str(out)]
    assert cli.main([*argv, "--save", str(saved)]) == 0
    printed = capsys.readouterr().out
    result = GenerationAttribution.load(saved)
    assert f"generated: {result.generated_text[0]!r}" in printed
    steps = [line for line in printed.splitlines() if line[:4].strip().isdigit()]
    assert len(steps) == int(result.generated_lengths[0])
    first = result.top_sources(0, 0, 3)
    assert f"{result.probs[0, 0]:.3f}" in steps[0]
    assert all(f"{token!r}@{position}" in steps[0] for position, token, _ in first)
    assert result.info["parameters"]["max_new_tokens"] == 4
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert cli.main([*argv, "--save", str(saved)]) == cli.EXIT_USER_ERROR
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite"]) == 0


def test_generate_samples_with_a_seed(tmp_path, capsys, tiny_model):
    def sampled(seed, name):
        path = tmp_path / name
        argv = ["generate", "one two", "--scope", "temperature", "--max-new-tokens", "6"]
        options = ["--sample", "--seed", seed, "--temperature", "2", "--no-eos-stop"]
        assert cli.main([*argv, *options, "--save", str(path)]) == 0
        from tlscopes.results.generation_attribution import GenerationAttribution

        return GenerationAttribution.load(path)

    first, again, other = sampled("1", "a.json"), sampled("1", "b.json"), sampled("2", "c.json")
    assert first.generated_ids.tolist() == again.generated_ids.tolist()
    assert first.generated_ids.tolist() != other.generated_ids.tolist()
    assert first.info["parameters"]["do_sample"] is True
    assert first.info["parameters"]["temperature"] == 2.0
    assert first.info["parameters"]["stop_at_eos"] is False


def test_generate_on_a_model_without_a_tokenizer(capsys, monkeypatch):
    import tlscopes.models.loading
    from tests.models import build_bridge_without_tokenizer

    model = build_bridge_without_tokenizer()
    monkeypatch.setattr(tlscopes.models.loading, "load_model", lambda *args, **kwargs: model)
    argv = ["generate", "--ids", "3,17,5", "--scope", "semantic", "--max-new-tokens", "3"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "prompt: '<3><17><5>'" in printed and "'<17>'@1" in printed


def test_explore_writes_one_offline_page(tmp_path, capsys, tiny_model):
    out = tmp_path / "explorer.html"
    argv = ["explore", "the capital of france is", "--scopes", "fisher,semantic", "--out", str(out)]
    assert cli.main(argv) == 0
    assert f"wrote {out} (" in capsys.readouterr().out
    page = out.read_text()
    assert page.count("<script>") == 1 and '"name":"semantic"' in page
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_explore_refuses_unknown_scopes_before_loading(capsys, tiny_model):
    with pytest.raises(SystemExit):
        cli.main(["explore", "the cat", "--scopes", "fisher,saliency"])
    assert "unknown scope 'saliency'" in capsys.readouterr().err
    assert tiny_model == []


def test_explore_takes_positions_and_its_limit_is_the_librarys(tmp_path, capsys, tiny_model):
    import json
    import re

    from tlscopes.app import explorer
    from tlscopes.cli import explore

    assert explore.MAX_EVERY_POSITION_TOKENS == explorer.MAX_EVERY_POSITION_TOKENS
    out = tmp_path / "explorer.html"
    text = "the capital of france is"
    argv = ["explore", text, "--positions=-1,2", "--scopes", "fisher", "--no-layers"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    payload = json.loads(re.search(r'class="tlx-data">(.*?)</script>', out.read_text()).group(1))
    assert payload["positions"] == [5, 2] and payload["layers"] == []
    with pytest.raises(SystemExit):
        cli.main(["explore", text, "--positions", "last"])
    assert "--positions takes comma-separated integers" in capsys.readouterr().err


def test_serve_max_tokens_reaches_the_app(monkeypatch, tiny_model):
    import tlscopes.app.explorer_app
    import tlscopes.app.ui
    from tlscopes.cli import serve

    assert serve.DEFAULT_MAX_TOKENS == tlscopes.app.explorer_app.MAX_TOKENS
    served = []

    class Page:
        local_url = "http://127.0.0.1:1/"

    def fake_start(app, host, port, *, directory):
        served.append(app)
        return Page()

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(tlscopes.app.ui, "start", fake_start)
    monkeypatch.setattr(tlscopes.app.ui, "stop", lambda page: None)
    monkeypatch.setattr(serve, "wait_until_interrupted", interrupt)
    monkeypatch.setattr(serve, "end_process", lambda status: None)
    assert cli.main(["serve", "--max-tokens", "8192"]) == 0
    assert cli.main(["serve"]) == 0
    assert [app.max_tokens for app in served] == [8192, serve.DEFAULT_MAX_TOKENS]
    with pytest.raises(SystemExit):
        cli.main(["serve", "--max-tokens", "0"])


def test_serve_starts_the_app_on_the_shared_model_and_stops(monkeypatch, capsys, tiny_model):
    import json
    import urllib.request

    import tlscopes.app.explorer_app
    from tlscopes.cli import serve

    assert (serve.DEFAULT_HOST, serve.DEFAULT_PORT) == (
        tlscopes.app.explorer_app.DEFAULT_HOST,
        tlscopes.app.explorer_app.DEFAULT_PORT,
    )
    seen = []

    def interrupt_once_served():
        url = capsys.readouterr().err.split("serving on ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            seen.append((url, json.loads(response.read())))
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "wait_until_interrupted", interrupt_once_served)
    ended = []
    monkeypatch.setattr(serve, "end_process", ended.append)  # in-process: no os._exit
    assert cli.main(["serve", "--port", "0"]) == 0 and ended == [0]
    url, config = seen[0]
    assert url.startswith("http://127.0.0.1:") and config["title"] == "tlscopes app"
    menu = next(c["props"] for c in config["components"] if c["props"].get("label") == "model")
    assert menu["value"] == "smollm2-135m" and len(tiny_model) == 1
    assert [choice[1] for choice in menu["choices"]] == ["smollm2-135m", "gemma3-270m"]
    with pytest.raises(OSError):  # stopped
        urllib.request.urlopen(url, timeout=5)
    assert cli.main(["serve", "--port", "70000"]) == cli.EXIT_USER_ERROR
    assert "--port must be between" in capsys.readouterr().err


def test_the_command_line_runs_as_a_module_for_torchrun():
    done = subprocess.run(
        [sys.executable, "-m", "tlscopes.cli", "evaluate", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--protocol" in done.stdout


@pytest.mark.parametrize("kind", ["auto", "bridge"])
def test_an_unknown_model_name_offline_is_one_line_listing_what_works(kind, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert cli.main(["demo", "--model", "nope-model-xyz", "--kind", kind]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and "convert" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    line = errors[0]
    assert line.startswith("tlscopes demo: error: cannot load model 'nope-model-xyz'"), line
    for form in ("smollm2-135m", "gemma3-270m", "local Hugging Face model directory"):
        assert form in line, line
    assert "TransformerLens model name" in line


SERVE_CHILD = """
import signal, sys, time
# A terminal's Ctrl-C, whatever the test process passes on: a child inherits an ignored or
# blocked SIGINT, and Python then raises no KeyboardInterrupt for it.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)
from tests import helpers
import tlscopes.models.loading
from tlscopes import cli
from tlscopes.app import explorer_app

model = helpers.build_bridge()
tlscopes.models.loading.load_model = lambda *args, **kwargs: model

def slow_attribute(self, request):  # a request that is still computing at Ctrl-C
    print("computing", file=sys.stderr, flush=True)
    time.sleep(60)

explorer_app.ExplorerApp.attribute = slow_attribute
sys.exit(cli.main(["serve", "--port", sys.argv[1]]))
"""


def test_serve_stops_within_a_second_of_ctrl_c_with_a_request_in_flight(tmp_path):
    import http.client
    import json
    import os
    import signal
    import time
    import urllib.request
    from pathlib import Path

    from tlscopes.app.ui import free_port

    repo = Path(__file__).resolve().parents[2]
    port = free_port("127.0.0.1")
    env = {**os.environ, "PYTHONPATH": str(repo), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE_CHILD, str(port)],
        cwd=repo,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in child.stderr:
            lines.append(line)
            if "serving on" in line:
                break
        assert any(tmp_path.glob("tlscopes-app-*")), lines  # the page's download folder
        call = urllib.request.Request(
            f"http://127.0.0.1:{port}/gradio_api/call/explain",
            data=json.dumps({"data": ["the cat sat", "fisher", None, None, -1, None]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        event = json.loads(urllib.request.urlopen(call, timeout=30).read())["event_id"]
        stream = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/gradio_api/call/explain/{event}", timeout=30
        )
        for line in child.stderr:
            lines.append(line)
            if "computing" in line:
                break
        started = time.monotonic()
        child.send_signal(signal.SIGINT)  # Ctrl-C
        status = child.wait(timeout=30)
        elapsed = time.monotonic() - started
        rest = child.stderr.read()
        print(f"serve exited {elapsed:.2f} s after Ctrl-C")
    finally:
        if child.poll() is None:
            child.kill()
    assert status == 0 and "Traceback" not in rest, rest
    assert elapsed < 1.0, f"still running {elapsed:.1f} s after Ctrl-C"
    # The request in flight is cancelled: its connection is closed, not left hanging.
    with pytest.raises(http.client.IncompleteRead):
        stream.read()
    assert not any(tmp_path.glob("tlscopes-app-*"))  # its files removed


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        ("token_ids", "1,x", "--ids takes comma-separated integers"),
        ("token_ids", ",", "--ids takes comma-separated integers"),
        ("token_ids", "3,-1", "--ids takes non-negative ids"),
        ("feature_ids", "7;8", "--features takes 'active' or comma-separated ids"),
        ("feature_ids", "-2", "--features takes non-negative ids"),
        ("position_list", "last", "--positions takes comma-separated integers"),
    ],
)
def test_integer_lists_name_their_flag(parse, text, message):
    from tlscopes.cli import common, explore, features

    function = {"token_ids": common.token_ids, "feature_ids": features.feature_ids}.get(
        parse, explore.position_list
    )
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        function(text)


def test_integer_lists_parse():
    from tlscopes.cli import common, explore, features

    assert common.token_ids("1, 17,5") == [1, 17, 5]
    assert features.feature_ids("active") == "active"
    assert features.feature_ids("12,407") == [12, 407]
    assert explore.position_list("-1,5") == [-1, 5]
