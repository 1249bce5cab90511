"""AOPC evaluation: arithmetic, ablation, methods by name, datasets, resume after a kill."""

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
from tests.models import VARIANTS
from tests.reference import embeddings_of, final_state_fn
from tlscopes import datasets, evaluate, methods
from tlscopes.results import Attribution

PROMPT = "the capital of france is paris and the capital of italy is rome"
REPO = Path(__file__).resolve().parents[2]
ALL = methods.method_names()
OPTIONS = {"integrated_gradients": {"n_steps": 3}}


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


# --- methods by name -------------------------------------------------------------------------


def test_every_method_is_reachable_by_name(model):
    assert ALL == [
        "fisher",
        "temperature",
        "semantic",
        "input_x_gradient",
        "integrated_gradients",
        "saliency",
        "random",
    ]
    for name in ALL:
        result = methods.attribute_by_name(model, PROMPT, name, **OPTIONS.get(name, {}))
        assert isinstance(result, Attribution) and result.method == name
        assert result.scores.shape == (1, len(result.tokens[0]))
        assert bool(torch.isfinite(result.scores).all()) and bool((result.scores >= 0).all())


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="known methods: fisher, temperature, semantic"):
        methods.get_method("shap")


def test_a_name_registered_twice_is_refused():
    registry: dict[str, methods.Method] = {}
    method = methods.get_method("fisher")
    methods._register(registry, method)
    with pytest.raises(ValueError, match="registered twice"):
        methods._register(registry, method)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shared_passes_give_the_same_scores_as_each_method_alone(name):
    model = VARIANTS[name]()
    prompts = [PROMPT, "the cat sat on the mat and"]
    together = methods.attribute_methods(model, prompts, ALL, target=" rome", n_steps=3, seed=5)
    assert list(together) == ALL
    for method in ALL:
        options = {"seed": 5} if method == "random" else OPTIONS.get(method, {})
        alone = methods.attribute_by_name(model, prompts, method, target=" rome", **options)
        torch.testing.assert_close(together[method].scores, alone.scores, rtol=1e-9, atol=1e-12)


# --- AOPC arithmetic, rounding, BOS ----------------------------------------------------------


def test_aopc_on_a_hand_checked_case():
    # (0.10 - 0.05)(-1 - 2)/2 + (0.20 - 0.10)(-2 - 4)/2 = -0.075 - 0.3
    assert evaluate.aopc((0.05, 0.10, 0.20), (-1.0, -2.0, -4.0)) == pytest.approx(-0.375)
    assert evaluate.aopc((0.05, 0.10, 0.20), (0.0, 0.0, 0.0)) == 0.0
    with pytest.raises(ValueError, match="two"):
        evaluate.aopc((0.1,), (-1.0,))


@pytest.mark.parametrize(
    "fraction, n_context, count",
    [(0.05, 10, 1), (0.05, 9, 1), (0.05, 30, 2), (0.10, 84, 8), (0.10, 85, 9), (0.2, 1, 1)],
)
def test_fraction_rounds_half_up_to_at_least_one_token(fraction, n_context, count):
    assert evaluate.ablation_count(fraction, n_context) == count


def test_bos_is_never_context_and_never_ablated(model):
    passage = evaluate.prepare_passage(model, PROMPT)
    tokens = model.to_tokens(PROMPT)
    assert evaluate.has_bos(model, tokens)
    assert passage.target_id == int(tokens[0, -1])
    assert passage.tokens.shape[1] == tokens.shape[1] - 1
    assert passage.context.tolist() == list(range(1, passage.tokens.shape[1]))
    scores = torch.arange(passage.tokens.shape[1], 0, -1, dtype=torch.float64)  # BOS highest
    assert evaluate.top_positions(scores, passage.context, 2) == (1, 2)
    ties = torch.ones(passage.tokens.shape[1])
    assert evaluate.top_positions(ties, passage.context, 3) == (1, 2, 3)


# --- ablation --------------------------------------------------------------------------------


def test_zero_embeddings_zeroes_exactly_the_chosen_positions():
    embeddings = torch.randn(3, 6, 4, dtype=torch.float64) + 5.0
    keep = evaluate.keep_masks(6, [(), (2,), (0, 4, 5)])
    ablated = evaluate.zero_embeddings(embeddings, keep)
    for row, chosen in enumerate([(), (2,), (0, 4, 5)]):
        for position in range(6):
            expected = torch.zeros(4) if position in chosen else embeddings[row, position]
            assert torch.equal(ablated[row, position], expected.to(ablated.dtype))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ablated_log_probs_equal_a_forward_with_those_embeddings_zeroed(name):
    model = VARIANTS[name]()
    passage = evaluate.prepare_passage(model, PROMPT)
    sets = [(), (3,), (1, 5, 6), (2, 4)]
    keep = evaluate.keep_masks(passage.tokens.shape[1], sets)
    batched = evaluate.ablated_log_probs(
        model, passage.tokens, passage.position, passage.target_id, keep
    )
    x = embeddings_of(model, passage.tokens[0])
    final_state = final_state_fn(model, passage.tokens[0], passage.position)
    for row, chosen in enumerate(sets):
        edited = x.clone()
        edited[list(chosen)] = 0.0  # positional embeddings are left to the model
        with torch.no_grad():
            logits = final_state(edited) @ model.W_U + model.b_U
        expected = torch.log_softmax(logits.double(), dim=-1)[passage.target_id]
        torch.testing.assert_close(batched[row], expected, rtol=1e-9, atol=1e-12)


def test_evaluate_passage_rows(model):
    settings = evaluate.Settings(n_steps=2)
    rows = evaluate.evaluate_passage(model, PROMPT, ALL, task="lambada", index=3, settings=settings)
    assert [row["method"] for row in rows] == ALL
    n_context = len(model.to_tokens(PROMPT)[0]) - 2
    for row in rows:
        assert row["n_context"] == n_context and row["passage"] == 3
        assert [row[f"n_ablated_{k}"] for k in ("0.05", "0.1", "0.2")] == [1, 1, 2]
        deltas = [row[f"delta_{k}"] for k in ("0.05", "0.1", "0.2")]
        assert row["aopc"] == pytest.approx(evaluate.aopc(settings.fractions, deltas))
    by_method = {row["method"]: row for row in rows}
    assert by_method["integrated_gradients"]["n_steps"] == 2
    assert by_method["saliency"]["aopc"] == by_method["semantic"]["aopc"]
    assert by_method["fisher"]["n_steps"] == ""


# --- summaries -------------------------------------------------------------------------------


def test_summarize_mean_and_standard_error():
    frame = pd.DataFrame(
        {
            "task": ["lambada"] * 3,
            "method": ["fisher"] * 3,
            "aopc": [-1.0, -2.0, -3.0],
            "delta_0.05": [1.0, 2.0, 3.0],
            "delta_0.1": [0.0, 0.0, 0.0],
            "delta_0.2": [0.0, 0.0, 0.0],
            "n_steps": ["", "", ""],
        }
    )
    summary = evaluate.summarize(frame)
    assert summary.loc[0, "n"] == 3
    assert summary.loc[0, "aopc_mean"] == pytest.approx(-2.0)
    assert summary.loc[0, "aopc_sem"] == pytest.approx(1.0 / 3**0.5)
    assert summary.loc[0, "delta_0.05"] == pytest.approx(2.0)
    table = evaluate.format_table(summary)
    assert "Fisher Scope" in table and "-2.00 ± 0.58" in table and "LMB (n=3)" in table


def test_paired_differences_by_hand():
    # Passage 2 has no semantic row: it is left out of the pair, not treated as zero.
    frame = pd.DataFrame(
        {
            "task": ["lambada"] * 7,
            "passage": [0, 1, 2, 0, 1, 0, 1],
            "method": ["fisher"] * 3 + ["semantic"] * 2 + ["random"] * 2,
            "aopc": [-1.5, -1.0, -9.0, -1.0, -2.0, -0.2, -0.4],
        }
    )
    paired = evaluate.paired_differences(frame).set_index("method")
    assert list(paired.index) == ["random", "fisher"]
    assert paired.loc["fisher", "n"] == 2
    assert paired.loc["fisher", "diff_mean"] == pytest.approx(0.25)  # (-0.5 + 1.0) / 2
    assert paired.loc["fisher", "diff_sem"] == pytest.approx(0.75)  # std 0.75 * 2**0.5, n 2
    assert paired.loc["fisher", "wins"] == pytest.approx(0.5)
    assert paired.loc["random", "diff_mean"] == pytest.approx(1.2)
    assert paired.loc["random", "wins"] == 0.0
    with pytest.raises(ValueError, match="no 'saliency' rows"):
        evaluate.paired_differences(frame, reference="saliency")


# --- datasets --------------------------------------------------------------------------------


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
    from tests.unit.test_evaluate import PASSAGES, RESUME_METHODS
    from tlscopes import evaluate

    compute = evaluate.evaluate_passage

    def slow(*args, **kwargs):  # slow enough to be killed part-way
        time.sleep(0.3)
        return compute(*args, **kwargs)

    evaluate.evaluate_passage = slow
    model = helpers.build_bridge()
    evaluate.run_evaluation(
        model, PASSAGES, RESUME_METHODS, sys.argv[1],
        settings=evaluate.Settings(n_steps=2), progress=False,
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
    per_passage = interrupted / evaluate.PER_PASSAGE
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
    compute = evaluate.evaluate_passage

    def counting(model, text, names, *, task, index, settings):
        computed.append((task, index))
        return compute(model, text, names, task=task, index=index, settings=settings)

    monkeypatch.setattr(evaluate, "evaluate_passage", counting)
    model = helpers.build_bridge()
    settings = evaluate.Settings(n_steps=2)
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
    assert (interrupted / evaluate.SUMMARY).exists()

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
            settings=evaluate.Settings(n_steps=n_steps),
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
