"""The resumable AOPC evaluation runner (``tlscopes evaluate``): files, locking, resume.

The metric itself (ablation sets, Delta_k, AOPC) is :mod:`tlscopes.evaluation.ablation`; tables and
summaries are :mod:`tlscopes.evaluation.summaries`; the directory's files are read and written by
:mod:`tlscopes.evaluation.run_directory`. :func:`run_evaluation` writes a resumable run directory:

- ``run.json``: the settings (written atomically; a resumed run must share them);
- ``per_passage.csv``: one row per (task, passage, method), appended and fsynced per passage;
  a rerun computes only the missing (passage, method) pairs. A damaged line (cut off, a wrong
  number of fields, an unparsable value, a repeated row) is dropped with a warning naming the
  line, removed from the file, and its passage computed again;
- ``skipped.csv``: passages with fewer than two tokens besides BOS or longer than the model's
  context (task, passage, text hash, reason); the run goes on without them and never retries
  them;
- ``aopc.csv``: the summary (:func:`summarize`), rewritten when it changes, so a finished run in
  a read-only directory can still be summarised;
- ``.lock``: held (``flock``) while a run works there; a second run is refused at once.

The summary's ``n`` is per (task, method): after adding a method on fewer passages the methods
average different passages, and :func:`format_table` then shows n in every cell.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from tlscopes.evaluation.ablation import Settings, evaluate_passage
from tlscopes.evaluation.batching import evaluate_in_batches
from tlscopes.evaluation.faithfulness import filler_token_id
from tlscopes.evaluation.passages import (
    PassageInput,
    UnusablePassage,
    run_order,
    text_hash,
)
from tlscopes.evaluation.run_directory import (
    ALIGNED_SUMMARY,
    LOCK_FILE,
    PER_PASSAGE,
    SKIPPED,
    SKIPPED_COLUMNS,
    SUMMARY,
    Rows,
    _append,
    _check_config,
    _read_per_passage,
    _read_skipped,
    _rewrite,
    columns,
    exclusive_lock,
    explained_write_errors,
    is_not_writable,
    write_atomic,
)
from tlscopes.evaluation.sharding import Shard, merge_shards, wait_for_all_ranks, write_order
from tlscopes.evaluation.summaries import (
    summarize,
    target_aligned,
)
from tlscopes.methods.registry import get_method
from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import token_strings


@dataclass(frozen=True)
class EvaluationRun:
    """The outcome of :func:`run_evaluation`.

    Attributes:
        per_passage: one row per (task, passage, method) in per_passage.csv, finished earlier or
            now (also passages outside this call's `passages`).
        summary: AOPC mean and standard error per (task, method) (:func:`summarize`); its `n`
            may differ between methods, e.g. after adding a method with a smaller limit.
        computed: how many passages this call computed (for some or all methods).
        already_done: how many of the passages had rows for every method before this call.
        skipped: the unusable passages among `passages` (task, passage, text_sha, reason), found
            now or by an earlier run (``skipped.csv``); they are not retried.
        newly_computed: method -> on how many passages this call computed it.
    """

    per_passage: pd.DataFrame
    summary: pd.DataFrame
    computed: int
    already_done: int = 0
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIPPED_COLUMNS))
    newly_computed: dict[str, int] = field(default_factory=dict)


def run_evaluation(
    model: TransformerLensModel,
    passages: dict[str, Sequence[PassageInput]],
    methods: Sequence[str],
    output: str | Path,
    *,
    settings: Settings = Settings(),  # noqa: B008 (frozen, immutable)
    progress: bool = True,
    summary_every: int = 20,
    shard: Shard | None = None,
    passages_per_batch: int = 1,
    lock: RunLock | None = None,
) -> EvaluationRun:
    """Evaluates every method on every passage of every task, resumably.

    Each passage's rows are appended to ``output/per_passage.csv`` as soon as it is done; a
    rerun with the same output skips passages whose rows for all `methods` are there, so an
    interrupted run loses at most the passage in progress. Tasks are interleaved (passage 0 of
    each task, then passage 1, ...) so a run cut short has about as many of each.
    ``output/aopc.csv`` is rewritten every `summary_every` passages and at the end, when it
    changed. A passage with fewer than two tokens besides BOS, or longer than the model's
    context, is recorded in ``output/skipped.csv`` with the reason and never retried. The run holds an exclusive lock
    on ``output/.lock``; a second run on the same directory is refused at once.

    Args:
        passages: task name -> passages, texts or token ids (each passage's index is its
            position here).
        methods: registry names (:func:`tlscopes.methods.registry.method_names`).
        shard: this process's share (default: RANK and WORLD_SIZE from the environment, as
            torchrun and accelerate set them; :mod:`tlscopes.evaluation.sharding`). A sharded rank writes
            its own files and returns its own rows; rank 0 merges them at the end when
            torch.distributed is initialised, and returns the merged rows.
        passages_per_batch: up to this many passages of one input length per attribution
            pass (:mod:`tlscopes.evaluation.batching`); the same numbers, appended group by group.
        lock: the directory's :class:`RunLock`, when the caller took it first (released here
            once the run is done); None takes it here.

    Raises:
        tlscopes.evaluation.run_directory.RunDirectoryError: another run holds the directory, one of
            its files cannot be read (the message names it and what to do), or it cannot be
            written (a full disk, a read-only directory: the message names the directory; what
            was written before is kept).
        ValueError: the directory holds a run with other settings or other passages.
    """
    methods = list(dict.fromkeys(methods))
    for name in methods:
        get_method(name)
    if settings.ablation == "filler":
        settings = replace(
            settings, filler_token_id=filler_token_id(model, settings.filler_token_id)
        )
    output = Path(output)
    shard = Shard.from_environment() if shard is None else shard
    if lock is not None and (lock.output != output or lock.shard != shard):
        raise ValueError(
            f"the lock given is on {lock.output} for {lock.shard}; this run is on {output} for "
            f"{shard}"
        )
    with explained_write_errors(output):
        with lock if lock is not None else RunLock(output, shard):
            if shard.sharded:
                write_order(
                    output,
                    shard.world_size,
                    list(passages),
                    methods,
                    counts={task: len(texts) for task, texts in passages.items()},
                )
            run = _run_locked(
                model,
                passages,
                methods,
                output,
                settings,
                progress,
                summary_every,
                shard,
                passages_per_batch,
            )
        if shard.sharded and wait_for_all_ranks() and shard.rank == 0:
            merge_shards(output)
            header = columns(settings.fractions, optional_columns(settings))
            frame = _write_summary(output, output / PER_PASSAGE, header, settings.fractions)
            run = replace(run, per_passage=frame, summary=summarize(frame, settings.fractions))
    return run


class RunLock:
    """The locks a run holds on its directory (created if missing), as a context manager:
    ``.lock`` exclusively, or for a rank of a sharded run ``.lock`` shared and its own
    ``.lock.rank<r>`` exclusively.

    :func:`run_evaluation` takes them itself; a caller takes them first to refuse a second run
    on the directory before the slow model load, and passes the lock on (``lock=``), which
    releases it when the run is done (so that rank 0 can then merge). Entering a held lock
    again does nothing.

    Raises:
        tlscopes.evaluation.run_directory.RunDirectoryError: another run holds the directory,
            or it cannot be created (full disk, not writable).
    """

    def __init__(self, output: str | Path, shard: Shard | None = None) -> None:
        self.output = Path(output)
        self.shard = Shard.from_environment() if shard is None else shard
        self._locks: contextlib.ExitStack | None = None

    def __enter__(self) -> RunLock:
        if self._locks is not None:
            return self
        locks = contextlib.ExitStack()
        with explained_write_errors(self.output):
            try:
                self.output.mkdir(parents=True, exist_ok=True)
                if self.shard.sharded:  # the ranks share the directory's lock, each its own
                    locks.enter_context(exclusive_lock(self.output, shared=True))
                locks.enter_context(exclusive_lock(self.output, self.shard.file(LOCK_FILE)))
            except BaseException:
                locks.close()
                raise
        self._locks = locks
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._locks is not None:
            locks, self._locks = self._locks, None
            locks.close()


@dataclass
class _Plan:
    """What a run finds in its directory before computing."""

    order: list[tuple[str, int]]
    todo: list[tuple[str, int, list[str]]]
    already_done: int
    skipped: list[dict[str, Any]]


def _plan(
    passages: dict[str, Sequence[PassageInput]],
    methods: list[str],
    finished: Sequence[Rows | None],
    skipped: Sequence[Rows | None],
    path: Path,
    shard: Shard,
) -> _Plan:
    done_methods: dict[tuple[str, int], set[str]] = {}
    known_text: dict[tuple[str, int], str] = {}
    for rows in filter(None, finished):
        for task, index, method, sha in rows.frame[
            ["task", "passage", "method", "text_sha"]
        ].itertuples(index=False):
            done_methods.setdefault((str(task), int(index)), set()).add(method)
            known_text[(str(task), int(index))] = str(sha)
    unusable: dict[tuple[str, int], dict[str, Any]] = {}
    for rows in filter(None, skipped):
        for record in rows.frame.to_dict("records"):
            key = (str(record["task"]), int(record["passage"]))
            unusable[key] = {**record, "task": key[0], "passage": key[1]}
            known_text.setdefault(key, str(record["text_sha"]))
    order = shard.take(run_order(passages))
    plan = _Plan(order, [], 0, [])
    for task, index in order:
        sha = text_hash(passages[task][index])
        if known_text.get((task, index), sha) != sha:
            raise ValueError(
                f"{path.parent} has results for {task} passage {index} from a different text; "
                "use another --output directory for other passages"
            )
        if (task, index) in unusable:
            plan.skipped.append(unusable[(task, index)])
            continue
        missing = [m for m in methods if m not in done_methods.get((task, index), set())]
        if missing:
            plan.todo.append((task, index, missing))
        else:
            plan.already_done += 1
    return plan


def _run_locked(
    model: TransformerLensModel,
    passages: dict[str, Sequence[PassageInput]],
    methods: list[str],
    output: Path,
    settings: Settings,
    progress: bool,
    summary_every: int,
    shard: Shard,
    passages_per_batch: int,
) -> EvaluationRun:
    from tqdm.auto import tqdm

    record = {"model": str(getattr(model.cfg, "model_name", "")), **settings.record()}
    if settings.filler_token_id is not None and settings.ablation == "filler":
        record["filler_token"] = token_strings(model, [settings.filler_token_id])[0]
    _check_config(output, record)
    path, skipped_path = output / shard.file(PER_PASSAGE), output / shard.file(SKIPPED)
    header = columns(settings.fractions, optional_columns(settings))
    finished, skipped = _read_per_passage(path, header), _read_skipped(skipped_path)
    done, unusable = [finished], [skipped]
    if shard.sharded:  # passages in the merged files are done too
        done.append(_read_per_passage(output / PER_PASSAGE, header))
        unusable.append(_read_skipped(output / SKIPPED))
    plan = _plan(passages, methods, done, unusable, path, shard)
    _rewrite(path, finished)
    _rewrite(skipped_path, skipped)
    newly_computed = dict.fromkeys(methods, 0)
    bar = tqdm(
        total=len(plan.order),
        initial=len(plan.order) - len(plan.todo),
        disable=not progress,
        unit="passage",
    )
    computed = 0
    batches = evaluate_in_batches(
        model,
        passages,
        plan.todo,
        settings,
        passages_per_batch,
        evaluate_passage,
        bar.set_description,
    )
    for count, ((task, index, missing), outcome) in enumerate(batches, start=1):
        text = passages[task][index]
        if isinstance(outcome, UnusablePassage):
            reason = " ".join(str(outcome).split())
            unusable = {"task": task, "passage": index, "text_sha": text_hash(text)}
            plan.skipped.append({**unusable, "reason": reason})
            _append(skipped_path, SKIPPED_COLUMNS, plan.skipped[-1:])
            bar.set_postfix_str(f"{len(plan.skipped)} unusable skipped")
        else:
            _append(path, header, outcome)
            computed += 1
            for name in missing:
                newly_computed[name] += 1
        bar.update(1)
        if count % summary_every == 0 and not shard.sharded:  # rank 0 summarises the merge
            _write_summary(output, path, header, settings.fractions)
    bar.close()
    if shard.sharded:
        rows = _read_per_passage(path, header, warn=False)
        frame = pd.DataFrame(columns=header) if rows is None else rows.frame
    else:
        frame = _write_summary(output, path, header, settings.fractions)
    return EvaluationRun(
        frame,
        summarize(frame, settings.fractions),
        computed,
        already_done=plan.already_done,
        skipped=pd.DataFrame(plan.skipped, columns=SKIPPED_COLUMNS),
        newly_computed={name: n for name, n in newly_computed.items() if n},
    )


def optional_columns(settings: Settings) -> tuple[str, ...]:
    """The optional per_passage.csv columns a run with these settings writes."""
    extra = ["prediction_id"] if settings.protocol == "authors" else []
    extra += ["comprehensiveness", "sufficiency"] if settings.eraser else []
    extra += ["loo_spearman", "loo_kendall"] if settings.loo_limit else []
    return tuple(extra)


def _write_summary(
    output: Path, path: Path, header: list[str], fractions: Sequence[float]
) -> pd.DataFrame:
    """Writes aopc.csv (and, where rows name the top-1 prediction, aopc_target_aligned.csv)
    if it changed (a finished run in a directory we may not write to is read, not written; a
    failed write there is a warning) and returns the per-passage rows."""
    rows = _read_per_passage(path, header, warn=False)
    frame = pd.DataFrame(columns=header) if rows is None else rows.frame
    write_summaries(output, frame, fractions)
    return frame


def write_summaries(output: Path, frame: pd.DataFrame, fractions: Sequence[float]) -> pd.DataFrame:
    """Writes `frame`'s aopc.csv (and, where its rows name the top-1 prediction,
    aopc_target_aligned.csv) into `output` if it changed; returns the summary. The ranks of a
    sharded run write none; whoever merges them writes the whole run's."""
    summary = summarize(frame, fractions)
    _write_if_changed(output / SUMMARY, summary)
    if "prediction_id" in frame.columns:
        _write_if_changed(output / ALIGNED_SUMMARY, summarize(target_aligned(frame), fractions))
    return summary


def _write_if_changed(target: Path, summary: pd.DataFrame) -> None:
    text = summary.to_csv(index=False, lineterminator="\n")
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        try:
            write_atomic(target, text)
        except OSError as error:
            if not is_not_writable(error):
                raise
            warnings.warn(
                f"could not update {target} ({error}); the summary is returned but not saved",
                stacklevel=4,
            )


__all__ = [
    "EvaluationRun",
    "RunLock",
    "run_evaluation",
]
