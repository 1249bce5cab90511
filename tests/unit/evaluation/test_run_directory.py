"""The resumable AOPC runner's directory: full disks, unusable passages, damaged rows, added
methods, read-only results, a second run on the same directory, progress, token ids."""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import io
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests import helpers
from tests.models import TOKENIZERLESS_VARIANTS
from tlscopes.evaluation import runner as evaluate
from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.aopc_arithmetic import FRACTIONS
from tlscopes.evaluation.passages import prepare_passage, text_hash
from tlscopes.evaluation.run_directory import (
    LOCK_FILE,
    PER_PASSAGE,
    RUN_CONFIG,
    SKIPPED,
    SUMMARY,
    RunDirectoryError,
    columns,
    read_finished,
)
from tlscopes.evaluation.summaries import describe_run, format_table
from tlscopes.tokens import bos_token_id

TEXTS = [f"the {w} sat on the mat and the dog sat on the {w}" for w in helpers.WORDS[:4]]
METHODS = ["random", "semantic"]
SETTINGS = Settings(n_steps=2)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model():
    return helpers.build_bridge()


def run(model, output, texts=TEXTS, methods=METHODS, **options):
    return evaluate.run_evaluation(
        model, {"lambada": texts}, methods, output, settings=SETTINGS, progress=False, **options
    )


@pytest.fixture
def counted(monkeypatch):
    """The (task, passage, methods) each evaluate_passage call computes."""
    calls = []
    compute = evaluate_passage

    def counting(model, text, names, *, task, index, settings):
        calls.append((task, index, list(names)))
        return compute(model, text, names, task=task, index=index, settings=settings)

    monkeypatch.setattr(evaluate, "evaluate_passage", counting)
    return calls


# --- run.json --------------------------------------------------------------------------------


@contextlib.contextmanager
def full_disk():
    """Every write that makes a file larger fails (EFBIG), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_at_the_start_leaves_no_empty_run_json(model, tmp_path):
    with full_disk(), pytest.raises(OSError):
        run(model, tmp_path, TEXTS[:1], ["random"])
    assert not (tmp_path / RUN_CONFIG).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]  # no temporary file left
    result = run(model, tmp_path, TEXTS[:1], ["random"])  # the next run starts cleanly
    assert result.computed == 1
    assert json.loads((tmp_path / RUN_CONFIG).read_text())["n_steps"] == 2


@pytest.mark.parametrize("content", ["", '{"fractions": [0.05, 0.1', "[1, 2]"])
def test_an_unreadable_run_json_is_named_with_what_to_do(model, tmp_path, content):
    (tmp_path / RUN_CONFIG).write_text(content)
    with pytest.raises(RunDirectoryError, match=r"run\.json .*[Dd]elete .*--output"):
        run(model, tmp_path, TEXTS[:1], ["random"])


# --- unusable passages -----------------------------------------------------------------------


def test_an_unusable_passage_is_recorded_and_the_run_goes_on(model, tmp_path, counted):
    too_long = " ".join(["the cat"] * 20)  # 40 tokens; the tiny model's context is 32
    texts = [TEXTS[0], "the", TEXTS[1], too_long]  # "the" is one token besides BOS
    first = run(model, tmp_path, texts)
    assert first.computed == 2 and first.already_done == 0
    assert first.skipped[["task", "passage"]].values.tolist() == [["lambada", 1], ["lambada", 3]]
    assert "at least two" in first.skipped["reason"][0]
    assert "longer than the model's context of 32" in first.skipped["reason"][1]
    assert "skipped 2 passages as unusable" in describe_run(first, tmp_path)
    assert sorted(first.per_passage["passage"].unique()) == [0, 2]
    record = pd.read_csv(tmp_path / SKIPPED, keep_default_na=False)
    assert record["text_sha"].tolist() == [text_hash("the"), text_hash(too_long)]

    counted.clear()
    again = run(model, tmp_path, texts)
    assert counted == [] and again.computed == 0 and again.already_done == 2
    pd.testing.assert_frame_equal(again.skipped, first.skipped, check_dtype=False)
    with pytest.raises(ValueError, match="different text"):
        run(model, tmp_path, [TEXTS[0], "the dog", TEXTS[1], too_long])


def test_an_error_names_the_passage_it_stopped_at(model, tmp_path, monkeypatch):
    def broken(model, text, names, *, task, index, settings):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(evaluate, "evaluate_passage", broken)
    with pytest.raises(RuntimeError, match="out of memory") as caught:
        run(model, tmp_path, TEXTS[:1])
    assert "lambada passage 0" in "".join(getattr(caught.value, "__notes__", []))


# --- damaged rows ----------------------------------------------------------------------------


def damage(path: Path, edits: dict[int, str]) -> None:
    """Replaces lines (numbered from 1, the header is line 1) of a file."""
    lines = path.read_text().splitlines(keepends=True)
    for number, line in edits.items():
        lines[number - 1] = line
    path.write_text("".join(lines))


def test_damaged_lines_are_dropped_with_a_warning_and_recomputed(model, tmp_path, counted):
    run(model, tmp_path)
    path = tmp_path / PER_PASSAGE
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[2].rstrip("\n").split(",")
    empty_aopc = ",".join(fields[:-4] + [""] + fields[-3:]) + "\n"  # passage 0, semantic
    assert columns(FRACTIONS)[-4] == "aopc"
    damage(path, {3: empty_aopc, 6: "lambada,2,random\n"})  # line 6: passage 2, random
    path.write_text(path.read_text() + lines[4])  # line 10 repeats line 5
    counted.clear()
    with pytest.warns(UserWarning) as caught:
        result = run(model, tmp_path)
    messages = [str(w.message) for w in caught if "per_passage.csv" in str(w.message)]
    assert len(messages) == 3, messages
    assert "per_passage.csv line 3 dropped: aopc is ''" in messages[0]
    assert "line 6 dropped: 3 fields, not 18" in messages[1]
    assert "line 10 dropped: it repeats the row of line 5" in messages[2]
    assert counted == [("lambada", 0, ["semantic"]), ("lambada", 2, ["random"])]
    assert result.summary["n"].tolist() == [4, 4]
    assert not result.per_passage.duplicated(["passage", "method"]).any()
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        again = run(model, tmp_path)  # the damaged lines were taken out of the file
    assert again.computed == 0
    assert [str(w.message) for w in later if "per_passage" in str(w.message)] == []


def test_a_cut_off_last_line_is_left_out_and_the_resumed_run_appends_cleanly(model, tmp_path):
    run(model, tmp_path, TEXTS[:2])
    path = tmp_path / PER_PASSAGE
    complete = path.read_text()
    path.write_text(complete + "lambada,2,semant")
    frame = read_finished(path)
    assert len(frame) == 4 and path.read_text().endswith("semant")  # reading changes nothing
    result = run(model, tmp_path, TEXTS[:3])
    assert result.computed == 1 and path.read_text().startswith(complete)
    assert len(read_finished(path)) == 6 and "semant\n" not in path.read_text()


def test_a_header_cut_short_is_written_afresh(model, tmp_path):
    run(model, tmp_path, TEXTS[:1], ["random"])
    path = tmp_path / PER_PASSAGE
    path.write_text("task,passage,met")  # a full disk at the first append
    result = run(model, tmp_path, TEXTS[:1], ["random"])
    assert result.computed == 1 and path.read_text().startswith("task,passage,method,")
    assert len(read_finished(path)) == 1


def test_a_hash_of_digits_is_read_back_as_written(model, tmp_path):
    run(model, tmp_path, TEXTS[:1], ["random"])
    path = tmp_path / PER_PASSAGE
    header, row = path.read_text().splitlines()
    fields = row.split(",")
    fields[3] = "0123456789"  # text_sha
    path.write_text(f"{header}\n{','.join(fields)}\n")
    assert read_finished(path)["text_sha"].tolist() == ["0123456789"]


def test_a_foreign_header_is_refused_with_what_to_do(model, tmp_path):
    run(model, tmp_path, TEXTS[:1], ["random"])
    damage(tmp_path / PER_PASSAGE, {1: "garbage\n"})
    with pytest.raises(RunDirectoryError, match=r"per_passage\.csv line 1 .*Move it away"):
        run(model, tmp_path, TEXTS[:1], ["random"])


# --- added methods, counts, the table --------------------------------------------------------


def test_an_added_method_is_reported_and_the_table_shows_n_per_method(model, tmp_path):
    first = run(model, tmp_path, methods=["random"])
    assert first.newly_computed == {"random": 4} and first.already_done == 0
    added = run(model, tmp_path, TEXTS[:2], ["random", "semantic"])
    assert added.computed == 2 and added.already_done == 0
    assert added.newly_computed == {"semantic": 2}
    report = describe_run(added, tmp_path)
    assert "newly computed: semantic on 2 passages" in report
    table = format_table(added.summary)
    assert "LMB (n=" not in table.splitlines()[0]
    random_line, semantic_line = table.splitlines()[1:]
    assert random_line.startswith("Random") and random_line.endswith("(n=4)")
    assert semantic_line.startswith("Semantic Scope") and semantic_line.endswith("(n=2)")

    resumed = run(model, tmp_path, TEXTS[:3], ["random"])
    assert resumed.computed == 0 and resumed.already_done == 3 and resumed.newly_computed == {}
    assert describe_run(resumed, tmp_path).startswith("computed 0 passages, 3 already")


def test_the_command_line_says_what_it_did(model, tmp_path, monkeypatch, capsys):
    import tlscopes.models.loading
    from tlscopes import cli

    monkeypatch.setattr(tlscopes.models.loading, "load_model", lambda *args, **kwargs: model)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"text": t} for t in [*TEXTS[:2], "the"]]))
    command = ["evaluate", "--prompts", str(prompts), "--methods", "random", "--no-progress"]
    args = cli.build_parser().parse_args([*command, "--output", str(tmp_path / "out")])
    run = cli.commands()["evaluate"].run
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "computed 2 passages, 0 already done" in printed
    assert "newly computed: random on 2 passages" in printed
    assert "skipped 1 passage as unusable" in printed and "lambada 2" in printed
    assert "LMB (n=2)" in printed
    with directory_lock(tmp_path / "out"), pytest.raises(cli.UsageError, match="another run"):
        run(args)


# --- a read-only directory -------------------------------------------------------------------


@contextlib.contextmanager
def read_only(directory: Path):
    """Makes `directory` read-only: its modes, and, since root may write anyway, every way
    Python opens a file for writing there (builtins.open, io.open, os.open, os.replace)."""
    paths = [directory, *directory.rglob("*")]

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(path).resolve().is_relative_to(
            directory.resolve()
        )

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied (read-only test)", str(path))

    def guard(original, writes):
        def guarded(path, mode_or_flags="r", *args, **kwargs):
            if inside(path) and writes(mode_or_flags):
                refuse(path)
            return original(path, mode_or_flags, *args, **kwargs)

        return guarded

    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    with pytest.MonkeyPatch.context() as patch:
        for module in (builtins, io):
            patch.setattr(module, "open", guard(module.open, lambda m: bool(set(m) & set("wax+"))))
        patch.setattr(os, "open", guard(os.open, lambda flags: bool(flags & writing_flags)))
        patch.setattr(os, "replace", lambda source, target, **_: refuse(target))
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_finished_run_in_a_read_only_directory_prints_its_table(model, tmp_path):
    expected = run(model, tmp_path)
    with read_only(tmp_path):
        with pytest.raises(PermissionError):  # the guard works
            (tmp_path / SUMMARY).write_text("")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to warn about: nothing needs writing
            result = run(model, tmp_path)
    assert result.computed == 0 and result.already_done == 4
    assert format_table(result.summary) == format_table(expected.summary)


def test_a_stale_summary_in_a_read_only_directory_is_a_warning(model, tmp_path):
    expected = run(model, tmp_path)
    (tmp_path / SUMMARY).write_text("task\n")
    with read_only(tmp_path), pytest.warns(UserWarning, match=r"could not update .*aopc\.csv"):
        result = run(model, tmp_path)
    pd.testing.assert_frame_equal(result.summary, expected.summary)


# --- a second run on the same directory ------------------------------------------------------


@contextlib.contextmanager
def directory_lock(directory: Path):
    """Holds the run lock of `directory` as a second run would."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def test_a_second_run_on_a_locked_directory_is_refused_at_once(model, tmp_path, counted):
    with directory_lock(tmp_path), pytest.raises(RunDirectoryError) as caught:
        run(model, tmp_path)
    assert f"another run is writing to {tmp_path}" in str(caught.value)
    assert counted == [] and not (tmp_path / PER_PASSAGE).exists()
    assert run(model, tmp_path, TEXTS[:1]).computed == 1  # the lock goes with its holder


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tlscopes.evaluation.run_directory import exclusive_lock

    with exclusive_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def test_a_run_in_another_process_holds_the_directory(model, tmp_path, counted):
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunDirectoryError, match="another run is writing to"):
            run(model, tmp_path)
        assert counted == []
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert run(model, tmp_path, TEXTS[:1]).computed == 1  # a killed holder lets go


# --- progress --------------------------------------------------------------------------------


class RecordingBar:
    """Stands in for tqdm: records its arguments and descriptions."""

    made: list[RecordingBar] = []

    def __init__(self, **options):
        self.options, self.descriptions, self.n = options, [], options.get("initial", 0)
        RecordingBar.made.append(self)

    def set_description(self, text):
        self.descriptions.append(text)

    def set_postfix_str(self, text):
        pass

    def update(self, count):
        self.n += count

    def close(self):
        pass


def test_progress_names_the_passage_in_progress_and_starts_at_the_finished_count(
    model, tmp_path, monkeypatch
):
    import tqdm.auto

    run(model, tmp_path, TEXTS[:2])
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    seen = []
    compute = evaluate_passage

    def watching(model, text, names, *, task, index, settings):
        seen.append((index, RecordingBar.made[-1].descriptions[-1]))
        return compute(model, text, names, task=task, index=index, settings=settings)

    monkeypatch.setattr(evaluate, "evaluate_passage", watching)
    RecordingBar.made.clear()
    run(model, tmp_path, TEXTS[:4])
    (bar,) = RecordingBar.made
    assert bar.options["total"] == 4 and bar.options["initial"] == 2 and bar.n == 4
    assert seen == [(2, "lambada passage 2"), (3, "lambada passage 3")]


# --- token ids on a model without a tokenizer ------------------------------------------------


@pytest.mark.parametrize("name", sorted(TOKENIZERLESS_VARIANTS))
def test_token_ids_on_a_model_without_a_tokenizer(name, tmp_path):
    model = TOKENIZERLESS_VARIANTS[name]()
    bos = 0 if name.startswith("bridge") else None  # the bridge's cfg keeps its HF BOS id
    assert model.tokenizer is None and bos_token_id(model) == bos
    ids = torch.tensor([0, 7, 9, 11, 13, 15])
    passage = prepare_passage(model, ids)
    assert passage.target_id == 15 and passage.tokens.tolist() == [[0, 7, 9, 11, 13]]
    assert passage.context.tolist() == ([1, 2, 3, 4] if bos == 0 else [0, 1, 2, 3, 4])
    rows = evaluate_passage(model, ids.tolist(), ["semantic", "random"])
    assert [row["n_context"] for row in rows] == [len(passage.context)] * 2
    with pytest.raises(ValueError, match="no tokenizer.*token ids"):
        prepare_passage(model, "the cat sat")
    result = evaluate.run_evaluation(
        model, {"lambada": [ids, [0, 7], [3, 4, 5]]}, ["random"], tmp_path, progress=False
    )
    # [0, 7] is one token besides a BOS, or two tokens on a model without BOS.
    assert (result.computed, len(result.skipped)) == ((2, 1) if bos == 0 else (3, 0))


def test_passage_ids_must_be_one_sequence_of_integers(model):
    with pytest.raises(TypeError, match="integers"):
        prepare_passage(model, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\[pos\] or \[1, pos\]"):
        prepare_passage(model, torch.ones(2, 3, dtype=torch.long))


def test_the_command_line_takes_the_lock_before_loading_the_model(tmp_path, monkeypatch, capsys):
    import tlscopes.models.loading
    from tlscopes import cli

    loads = []
    monkeypatch.setattr(tlscopes.models.loading, "load_model", lambda *a, **k: loads.append(a))
    argv = ["evaluate", "--limit", "1", "--methods", "random", "--output", str(tmp_path)]
    with directory_lock(tmp_path):
        assert cli.main(argv) == cli.EXIT_USER_ERROR
    assert f"another run is writing to {tmp_path}" in capsys.readouterr().err
    assert loads == []  # refused before the (slow) model load


# --- a full disk or a read-only directory on the command line --------------------------------


def evaluate_command(model, monkeypatch, prompts: Path, output: Path, texts) -> list[str]:
    import tlscopes.models.loading

    monkeypatch.setattr(tlscopes.models.loading, "load_model", lambda *args, **kwargs: model)
    prompts.write_text(json.dumps([{"text": text} for text in texts]))
    return ["evaluate", "--prompts", str(prompts), "--methods", ",".join(METHODS)] + [
        "--no-progress",
        "--output",
        str(output),
    ]


def test_a_read_only_output_directory_is_one_line_naming_it(model, tmp_path, monkeypatch, capsys):
    from tlscopes import cli

    output = tmp_path / "out"
    output.mkdir()
    argv = evaluate_command(model, monkeypatch, tmp_path / "prompts.json", output, TEXTS[:1])
    with read_only(output):
        assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"tlscopes evaluate: error: cannot write to {output}: it is not writable (Permission "
        "denied)"
    ), err
    assert "Traceback" not in "\n".join(err) and ".run.json." not in err[-1]


def test_a_full_disk_mid_run_is_one_line_and_keeps_what_was_written(
    model, tmp_path, monkeypatch, capsys
):
    from tlscopes import cli

    output = tmp_path / "out"
    argv = evaluate_command(model, monkeypatch, tmp_path / "prompts.json", output, TEXTS)
    append = evaluate._append
    calls = []
    written = ""

    def fills_the_disk(path, header, rows):
        nonlocal written
        calls.append(path)
        if len(calls) <= 2:
            return append(path, header, rows)
        written = path.read_text()
        with path.open("a") as handle:  # the disk fills part-way through a line
            handle.write("lambada,2,ran")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(evaluate, "_append", fills_the_disk)
        assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"tlscopes evaluate: error: cannot write to {output}: the disk is full (No space left "
        "on device); the results already written there are kept"
    ), err
    assert "Traceback" not in "\n".join(err)
    # The two passages written before the disk filled are there, byte for byte.
    assert (output / PER_PASSAGE).read_text().startswith(written)
    assert len(written.splitlines()) == 1 + 2 * len(METHODS)
    # Once there is space, the same command resumes and ends as a run that never failed.
    assert cli.main(argv) == 0
    clean = tmp_path / "clean"
    assert cli.main([*argv[:-1], str(clean)]) == 0
    assert (output / PER_PASSAGE).read_text() == (clean / PER_PASSAGE).read_text()
