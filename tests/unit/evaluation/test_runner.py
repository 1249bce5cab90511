"""The AOPC runner: resume after a kill, settings checked on resume, the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests import helpers
from tlscopes.evaluation import runner as evaluate
from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.passages import run_order
from tlscopes.evaluation.run_directory import PER_PASSAGE, SUMMARY
from tlscopes.methods import registry as methods

PROMPT = "the capital of france is paris and the capital of italy is rome"
REPO = Path(__file__).resolve().parents[3]
ALL = methods.method_names()
OPTIONS = {"integrated_gradients": {"n_steps": 3}}


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


# --- resuming --------------------------------------------------------------------------------

PASSAGES = {
    "lambada": [f"the {w} sat on the mat and the dog sat on the {w}" for w in helpers.WORDS[:12]],
    "iwslt": [f"german : ich bin hier english : {w} one two three {w}" for w in helpers.WORDS[:12]],
}
RESUME_METHODS = ["fisher", "semantic", "integrated_gradients", "random"]
CHILD = textwrap.dedent(
    """
    import sys, time
    from tests import helpers
    from tests.unit.evaluation.test_runner import PASSAGES, RESUME_METHODS
    from tlscopes.evaluation import runner as evaluate
    from tlscopes.evaluation.ablation import Settings

    compute = evaluate.evaluate_passage

    def slow(*args, **kwargs):  # slow enough to be killed part-way
        time.sleep(0.3)
        return compute(*args, **kwargs)

    evaluate.evaluate_passage = slow
    model = helpers.build_bridge()
    evaluate.run_evaluation(
        model, PASSAGES, RESUME_METHODS, sys.argv[1],
        settings=Settings(n_steps=2), progress=False,
    )
    """
)


def finished_passages(path: Path) -> int:
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()[1:]
    return len(lines) // len(RESUME_METHODS)


def test_a_killed_run_resumes_without_recomputing_or_losing_anything(tmp_path, monkeypatch):
    interrupted = tmp_path / "interrupted"
    per_passage = interrupted / PER_PASSAGE
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(interrupted)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while finished_passages(per_passage) < 3:
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "the child run made no progress"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    before = per_passage.read_text()
    done_before = {
        (row.task, row.passage)
        for row in pd.read_csv(per_passage, keep_default_na=False).itertuples()
    }
    total = sum(len(texts) for texts in PASSAGES.values())
    assert 3 <= len(done_before) < total

    computed = []
    compute = evaluate_passage

    def counting(model, text, names, *, task, index, settings):
        computed.append((task, index))
        return compute(model, text, names, task=task, index=index, settings=settings)

    monkeypatch.setattr(evaluate, "evaluate_passage", counting)
    model = helpers.build_bridge()
    settings = Settings(n_steps=2)
    resumed = evaluate.run_evaluation(
        model, PASSAGES, RESUME_METHODS, interrupted, settings=settings, progress=False
    )
    assert resumed.computed == total - len(done_before)
    assert set(computed).isdisjoint(done_before) and len(computed) == len(set(computed))
    after = per_passage.read_text()
    assert after.startswith(before[: before.rfind("\n") + 1])  # finished rows kept as written

    fresh = evaluate.run_evaluation(
        model, PASSAGES, RESUME_METHODS, tmp_path / "fresh", settings=settings, progress=False
    )
    key = ["task", "passage", "method"]
    left = resumed.per_passage.sort_values(key).reset_index(drop=True)
    right = fresh.per_passage.sort_values(key).reset_index(drop=True)
    assert not left.duplicated(key).any() and len(left) == total * len(RESUME_METHODS)
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9)
    assert (interrupted / SUMMARY).exists()

    computed.clear()
    again = evaluate.run_evaluation(
        model, PASSAGES, RESUME_METHODS, interrupted, settings=settings, progress=False
    )
    assert again.computed == 0 and computed == []


def test_resuming_with_other_settings_is_refused(tmp_path, model):
    def run(text: str, n_steps: int) -> None:
        evaluate.run_evaluation(
            model,
            {"lambada": [text]},
            ["random"],
            tmp_path,
            settings=Settings(n_steps=n_steps),
            progress=False,
        )

    run(PROMPT, 2)
    with pytest.raises(ValueError, match="different settings"):
        run(PROMPT, 3)
    with pytest.raises(ValueError, match="different text"):
        run(PROMPT + " and", 2)


def test_cli_registers_evaluate_and_checks_names():
    from tlscopes import cli

    parser = cli.build_parser()
    args = parser.parse_args(["evaluate", "--task", "lambada", "--output", "x", "--methods", "bad"])
    with pytest.raises(cli.UsageError, match="known methods: fisher"):
        cli.commands()["evaluate"].run(args)
    args = parser.parse_args(["evaluate", "--task", "squad", "--output", "x"])
    with pytest.raises(cli.UsageError, match="known tasks"):
        cli.commands()["evaluate"].run(args)


def test_cli_protocol_authors_records_it_and_prints_the_target_aligned_table(
    tmp_path, monkeypatch, capsys
):
    import json

    from tlscopes import cli
    from tlscopes.cli import evaluation

    model = helpers.build_bridge()
    monkeypatch.setattr(evaluation, "load_with_message", lambda args: model)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"text": PROMPT}, {"text": "the cat sat on the mat"}]))
    out = tmp_path / "run"
    argv = ["evaluate", "--prompts", str(prompts), "--output", str(out), "--no-progress"]
    argv += ["--methods", "semantic,random", "--protocol", "authors"]
    args = cli.build_parser().parse_args(argv)
    assert cli.commands()["evaluate"].run(args) == 0
    printed = capsys.readouterr().out
    assert "target-aligned subset (top-1 prediction = ground truth" in printed
    assert json.loads((out / "run.json").read_text())["protocol"] == "authors"
    default = cli.build_parser().parse_args(["evaluate", "--output", "x"])
    assert default.protocol == "paper"


def test_a_bridge_loaded_with_a_device_map_evaluates_as_the_plain_bridge(tmp_path):
    """What can be checked on a CPU of the multi-device path: TransformerLens' bridge booted
    with a Hugging Face device_map (here every module on the CPU) gives the same rows."""
    from transformer_lens.model_bridge import TransformerBridge

    helpers.save_hf_family("llama", str(tmp_path))
    plain = TransformerBridge.boot_transformers(str(tmp_path), dtype=torch.float64)
    mapped = TransformerBridge.boot_transformers(
        str(tmp_path), dtype=torch.float64, device_map={"": "cpu"}
    )
    ids = list(range(3, 20))
    names = ["fisher", "semantic", "integrated_gradients"]
    settings = Settings(n_steps=2)
    expected = evaluate_passage(plain, ids, names, settings=settings)
    assert evaluate_passage(mapped, ids, names, settings=settings) == expected


def test_cli_measure_and_batching_flags_reach_the_run(tmp_path, monkeypatch, capsys):
    import json

    from tlscopes import cli
    from tlscopes.cli import evaluation

    model = helpers.build_bridge()
    monkeypatch.setattr(evaluation, "load_with_message", lambda args: model)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"text": PROMPT}, {"text": "the cat sat on the mat"}]))
    out = tmp_path / "run"
    argv = ["evaluate", "--prompts", str(prompts), "--output", str(out), "--no-progress"]
    argv += ["--methods", "semantic,random", "--ablation", "filler", "--filler-token", "7"]
    argv += ["--eraser", "--loo-limit", "1", "--passages-per-batch", "2"]
    assert cli.commands()["evaluate"].run(cli.build_parser().parse_args(argv)) == 0
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["ablation"] == "filler" and recorded["filler_token_id"] == 7
    assert recorded["eraser"] is True and recorded["loo_limit"] == 1
    header = (out / "per_passage.csv").read_text().splitlines()[0]
    assert header.endswith("comprehensiveness,sufficiency,loo_spearman,loo_kendall")
    bad = cli.build_parser().parse_args(["evaluate", "--output", "x", "--filler-token", "7"])
    with pytest.raises(cli.UsageError, match="--ablation filler"):
        cli.commands()["evaluate"].run(bad)
    with pytest.raises(cli.UsageError, match="--output"):
        cli.commands()["evaluate"].run(cli.build_parser().parse_args(["evaluate"]))


def test_run_order_interleaves_tasks_passage_by_passage():
    order = run_order({"lambada": ["a", "b", "c"], "iwslt": ["d"]})
    assert order == [("lambada", 0), ("iwslt", 0), ("lambada", 1), ("lambada", 2)]
    assert run_order({}) == []
