"""AOPC faithfulness evaluation (paper section 5, eq. 9; appendix A.1).

For each passage the target is its last token and the model explains the prediction at the
position before it (the input is every token but the last). The *context* is every input
position, the explained position's own token included, except a BOS token: BOS is never ablated
and never counted. For each ablation fraction k, the top ``n_k = max(1, floor(k * C + 1/2))``
context tokens by a method's score (C context tokens; ties go to the earlier position) have
their input embeddings replaced by zero vectors; positions, attention masks and everything else
are unchanged. Delta_k = log p_ablated(target) - log p(target), negative when ablation hurts.

AOPC is eq. 9 exactly as printed, with k in fractions (0.05, 0.10, 0.20):
AOPC = sum_i (k_{i+1} - k_i)(Delta_i + Delta_{i+1}) / 2, i.e. 0.15 x the trapezoid-weighted
mean of the Delta_k; it is not divided by the span of k. This is the reading that reproduces the
paper's magnitudes: zeroing whole input embeddings costs the target several nats (on
SmolLM2-135M, Delta_k is about -8 for the scopes and -2 for random), so the printed formula
gives about -1.2 and -0.3, as in the paper's Table 1, while the normalised mean would give
about -8. per_passage.csv keeps every raw Delta_k, so any other convention can be recomputed.

Per passage, all methods share their passes (:func:`tlscopes.methods.attribute_methods`), and
every distinct ablation set (methods x fractions, deduplicated) plus the unablated input run
through the model as one batch. A passage is a string or, on a model without a tokenizer, token
ids; without a tokenizer the first id is a BOS only if ``model.cfg.bos_token_id`` names it.

:func:`run_evaluation` (``tlscopes evaluate``) writes a resumable run directory:

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

import argparse
import csv
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from tlscopes import baselines, datasets
from tlscopes.attribute import final_logits
from tlscopes.hooks import StopForward, run_hooked
from tlscopes.methods import attribute_methods, get_method, method_names
from tlscopes.models import EMBED_HOOK, FINAL_STATE_HOOK, context_length
from tlscopes.run_directory import (
    Rows,
    RunDirectoryError,
    exclusive_lock,
    is_not_writable,
    optional,
    parse_any,
    parse_float,
    parse_int,
    parse_text,
    read_json,
    read_rows,
    write_atomic,
)

FRACTIONS = (0.05, 0.10, 0.20)
PER_PASSAGE = "per_passage.csv"
SUMMARY = "aopc.csv"
RUN_CONFIG = "run.json"
SKIPPED = "skipped.csv"
# Paper Table 1 order and labels.
TABLE_ORDER = (
    "random",
    "integrated_gradients",
    "input_x_gradient",
    "saliency",
    "semantic",
    "temperature",
    "fisher",
)
TABLE_LABELS = {
    "random": "Random",
    "integrated_gradients": "Integrated Grads",
    "input_x_gradient": "Input × Grad",
    "saliency": "Saliency",
    "semantic": "Semantic Scope",
    "temperature": "Temperature Scope",
    "fisher": "Fisher Scope",
}
TASK_LABELS = {"lambada": "LMB", "iwslt": "IWS"}


@dataclass(frozen=True)
class Passage:
    """A passage as the evaluation sees it.

    Attributes:
        tokens: the input, every token but the last [1, pos].
        target_id: the last token, whose log-probability is measured.
        context: the positions that may be ablated (all input positions but a BOS) [n_context].
    """

    tokens: Tensor
    target_id: int
    context: Tensor

    @property
    def position(self) -> int:
        return self.tokens.shape[1] - 1


class UnusablePassage(ValueError):
    """A passage the evaluation cannot use: fewer than two tokens besides BOS (there must be a
    target and at least one context token), or longer than the model's context.
    :func:`run_evaluation` records it in ``skipped.csv`` and goes on."""


def bos_token_id(model: Any) -> int | None:
    """The model's BOS token id, or None if it has none.

    With a tokenizer, the tokenizer's ``bos_token_id``. A model built from a config has no
    tokenizer; then only a ``bos_token_id`` set on ``model.cfg`` counts, since
    ``cfg.default_prepend_bos`` says that a BOS would be prepended but not which id it is.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        bos = getattr(tokenizer, "bos_token_id", None)
    else:
        bos = getattr(getattr(model, "cfg", None), "bos_token_id", None)
    return None if bos is None else int(bos)


def has_bos(model: Any, tokens: Tensor) -> bool:
    """Whether the first token of `tokens` [1, pos] is the model's BOS (:func:`bos_token_id`)."""
    bos = bos_token_id(model)
    return bos is not None and tokens.shape[1] > 0 and int(tokens[0, 0]) == bos


PassageInput = str | Sequence[int] | Tensor


def passage_tokens(model: Any, text: PassageInput) -> Tensor:
    """[1, pos] token ids: a string tokenized with the model's BOS convention, or ids as given
    ([pos] or [1, pos]; nothing is prepended to ids)."""
    if isinstance(text, str):
        if getattr(model, "tokenizer", None) is None:
            raise ValueError(
                f"passage {text[:40]!r} is text, but the model has no tokenizer (it was built "
                "from a config); pass each passage as token ids"
            )
        return model.to_tokens(text, truncate=False).cpu()
    tokens = torch.as_tensor(text).cpu()
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"passage token ids must be integers, got dtype {tokens.dtype}")
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 1:
        raise ValueError(f"passage token ids must be [pos] or [1, pos], got {tuple(tokens.shape)}")
    return tokens.long()[None]


def describe_passage(text: PassageInput) -> str:
    if isinstance(text, str):
        return repr(text[:40])
    return f"token ids {torch.as_tensor(text).flatten()[:10].tolist()}"


def prepare_passage(model: Any, text: PassageInput) -> Passage:
    """Splits off the target (the last token) of a passage given as text or token ids.

    Raises:
        UnusablePassage: fewer than two tokens besides BOS, or an input (every token but the
            last) longer than the model's context.
    """
    tokens = passage_tokens(model, text)
    start = 1 if has_bos(model, tokens) else 0
    if tokens.shape[1] - start < 2:
        raise UnusablePassage(
            f"passage {describe_passage(text)} has {tokens.shape[1] - start} token(s) besides "
            "BOS; it needs at least two (context and target)"
        )
    inputs = tokens[:, :-1]
    if inputs.shape[1] > context_length(model):
        raise UnusablePassage(
            f"passage {describe_passage(text)} is {inputs.shape[1]} tokens before its target, "
            f"longer than the model's context of {context_length(model)} tokens"
        )
    context = torch.arange(start, inputs.shape[1])
    return Passage(inputs, int(tokens[0, -1]), context)


def ablation_count(fraction: float, n_context: int) -> int:
    """How many tokens k% of C context tokens means: round half up, at least 1, at most C."""
    if not 0 < fraction <= 1:
        raise ValueError(f"ablation fraction must be in (0, 1], got {fraction}")
    return min(n_context, max(1, math.floor(fraction * n_context + 0.5)))


def top_positions(scores: Tensor, context: Tensor, count: int) -> tuple[int, ...]:
    """The `count` context positions with the highest score (ties: earlier position), sorted."""
    order = torch.argsort(scores[context].double(), descending=True, stable=True)
    return tuple(sorted(context[order[:count]].tolist()))


def keep_masks(n_positions: int, ablation_sets: Sequence[Sequence[int]]) -> Tensor:
    """[n_sets, pos] booleans: False where a position's embedding is zeroed."""
    keep = torch.ones((len(ablation_sets), n_positions), dtype=torch.bool)
    for row, positions in enumerate(ablation_sets):
        keep[row, list(positions)] = False
    return keep


def zero_embeddings(embeddings: Tensor, keep: Tensor) -> Tensor:
    """The embeddings with the positions where `keep` is False replaced by exact zeros."""
    return torch.where(keep[:, :, None].to(embeddings.device), embeddings, 0.0)


def ablated_log_probs(
    model: Any, tokens: Tensor, position: int, target_id: int, keep: Tensor
) -> Tensor:
    """log p(target) at `position` for each ablation mask, all masks in one batch [n_sets].

    Only the token embeddings (``hook_embed``) are zeroed; positional embeddings, attention and
    every other activation are left to the model. The pass stops at the unembedding.
    """
    captured: dict[str, Tensor] = {}

    def ablate(tensor: Tensor, *, hook: Any) -> Tensor:
        return zero_embeddings(tensor, keep)

    def take(tensor: Tensor, *, hook: Any) -> Tensor:
        captured["final_state"] = tensor[:, position]
        raise StopForward

    batch = tokens.expand(keep.shape[0], -1).to(model.W_U.device)
    run_hooked(model, batch, [(EMBED_HOOK, ablate), (FINAL_STATE_HOOK, take)], grad=False)
    with torch.no_grad():
        logits = final_logits(model, captured["final_state"])
    return torch.log_softmax(logits.double(), dim=-1)[:, target_id].cpu()


def trapezoid(fractions: Sequence[float], deltas: Sequence[float]) -> float:
    """Paper eq. 9 as printed: sum_i (k_{i+1} - k_i)(Delta_i + Delta_{i+1}) / 2."""
    return sum(
        (fractions[i + 1] - fractions[i]) * (deltas[i] + deltas[i + 1]) / 2
        for i in range(len(fractions) - 1)
    )


def aopc(fractions: Sequence[float], deltas: Sequence[float]) -> float:
    """AOPC, paper eq. 9 with k in fractions: the trapezoid of Delta_k over k (not normalised).

    More negative is better (the ablated tokens mattered more). Needs at least two fractions.
    """
    if len(fractions) < 2:
        raise ValueError("AOPC integrates over at least two ablation fractions")
    return trapezoid(fractions, deltas)


def fraction_label(fraction: float) -> str:
    return f"{fraction:g}"


@dataclass(frozen=True)
class Settings:
    """What a run's numbers depend on besides the model and the passages."""

    fractions: tuple[float, ...] = FRACTIONS
    n_steps: int = baselines.DEFAULT_N_STEPS
    seed: int = 0
    ig_batch_size: int | None = None
    memory_budget: int = baselines.DEFAULT_MEMORY_BUDGET

    def __post_init__(self) -> None:
        fractions = tuple(self.fractions)
        if len(fractions) < 2 or list(fractions) != sorted(set(fractions)):
            raise ValueError(f"fractions must be at least two increasing values, got {fractions}")
        for fraction in fractions:
            ablation_count(fraction, 1)

    def record(self) -> dict[str, Any]:
        """The settings a resumed run must share (batch sizes change nothing but speed)."""
        return {"fractions": list(self.fractions), "n_steps": self.n_steps, "seed": self.seed}


def passage_seed(seed: int, task: str, index: int) -> int:
    """The random method's seed for one passage: fixed by (seed, task, index)."""
    digest = hashlib.sha256(f"{seed}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:6], "little")


def text_hash(text: PassageInput) -> str:
    """A short hash naming a passage's text (or its token ids), to tell passages apart on resume."""
    if not isinstance(text, str):
        text = "token ids: " + " ".join(map(str, torch.as_tensor(text).flatten().tolist()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def evaluate_passage(
    model: Any,
    text: PassageInput,
    methods: Sequence[str],
    *,
    task: str = "",
    index: int = 0,
    settings: Settings = Settings(),  # noqa: B008 (frozen, immutable)
) -> list[dict[str, Any]]:
    """One row per method: Delta_k per fraction, the ablated counts, AOPC and method details.

    `text` is a string, or token ids (needed on a model without a tokenizer; see
    :func:`bos_token_id` for how a BOS is recognised there). Raises :class:`UnusablePassage`
    for a passage with fewer than two tokens besides BOS.
    """
    passage = prepare_passage(model, text)
    results = attribute_methods(
        model,
        passage.tokens,
        methods,
        target=passage.target_id,
        n_steps=settings.n_steps,
        ig_batch_size=settings.ig_batch_size,
        memory_budget=settings.memory_budget,
        seed=passage_seed(settings.seed, task, index),
    )
    n_context = len(passage.context)
    counts = [ablation_count(k, n_context) for k in settings.fractions]
    chosen = {
        name: [top_positions(result.scores[0], passage.context, c) for c in counts]
        for name, result in results.items()
    }
    # The unablated input first; every distinct set once.
    sets = list(dict.fromkeys([(), *(s for sets in chosen.values() for s in sets)]))
    keep = keep_masks(passage.tokens.shape[1], sets)
    log_probs = ablated_log_probs(model, passage.tokens, passage.position, passage.target_id, keep)
    row_of = {positions: row for row, positions in enumerate(sets)}
    original = float(log_probs[0])
    rows = []
    for name, result in results.items():
        deltas = [float(log_probs[row_of[s]]) - original for s in chosen[name]]
        row: dict[str, Any] = {
            "task": task,
            "passage": index,
            "method": name,
            "text_sha": text_hash(text),
            "n_tokens": passage.tokens.shape[1],
            "n_context": n_context,
            "target_id": passage.target_id,
            "logp": original,
        }
        for fraction, count, delta in zip(settings.fractions, counts, deltas, strict=True):
            row[f"n_ablated_{fraction_label(fraction)}"] = count
            row[f"delta_{fraction_label(fraction)}"] = delta
        row["aopc"] = aopc(settings.fractions, deltas)
        is_ig = name == "integrated_gradients"
        row["n_steps"] = settings.n_steps if is_ig else ""
        row["completeness_gap"] = result.details["completeness_gap"][0] if is_ig else ""
        row["seed"] = result.details["seed"] if name == "random" else ""
        rows.append(row)
    return rows


def columns(fractions: Sequence[float]) -> list[str]:
    head = ["task", "passage", "method", "text_sha", "n_tokens", "n_context", "target_id", "logp"]
    for fraction in fractions:
        head += [f"n_ablated_{fraction_label(fraction)}", f"delta_{fraction_label(fraction)}"]
    return head + ["aopc", "n_steps", "completeness_gap", "seed"]


# Read back as strings: a task named "2017" or a hash of digits only stays what it was.
TEXT_COLUMNS = ("task", "method", "text_sha", "reason")


def _parsers(header: Sequence[str]) -> dict[str, Callable[[str], None]]:
    """What each per_passage.csv column must hold for its row to count as finished."""
    kinds: dict[str, Callable[[str], None]] = {
        "task": parse_any,
        "method": parse_text,
        "text_sha": parse_text,
        "n_steps": optional(parse_int),
        "completeness_gap": optional(parse_float),
        "seed": optional(parse_int),
    }
    for column in header:
        if column not in kinds:
            is_count = column in ("passage", "n_tokens", "n_context", "target_id")
            is_count |= column.startswith("n_ablated_")
            kinds[column] = parse_int if is_count else parse_float
    return kinds


def _fractions_of(path: Path) -> list[str]:
    """The delta_<k> columns named in a per_passage.csv header, as <k> labels."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = next(csv.reader([handle.readline()]), [])
    return [column.removeprefix("delta_") for column in first if column.startswith("delta_")]


def _read_per_passage(path: Path, header: list[str], *, warn: bool = True) -> Rows | None:
    key = ["task", "passage", "method"]
    return read_rows(path, header, _parsers(header), key, text_columns=TEXT_COLUMNS, warn=warn)


def read_finished(path: str | Path) -> pd.DataFrame | None:
    """The usable rows of a per_passage.csv; None if it is missing or empty. Reads only.

    A last line cut off by an interruption is left out; a damaged line (a wrong number of
    fields, a value that does not parse, a (task, passage, method) already seen) is left out
    with a warning naming the file and line. :func:`run_evaluation` removes such lines from the
    file and computes those passages again.
    """
    path = Path(path)
    if not path.exists():
        return None
    header = columns([float(label) for label in _fractions_of(path)])
    rows = _read_per_passage(path, header)
    return None if rows is None else rows.frame


SKIPPED_COLUMNS = ["task", "passage", "text_sha", "reason"]
SKIPPED_PARSERS = {
    "task": parse_any,
    "passage": parse_int,
    "text_sha": parse_text,
    "reason": parse_any,
}


def _read_skipped(path: Path) -> Rows | None:
    key = ["task", "passage"]
    return read_rows(path, SKIPPED_COLUMNS, SKIPPED_PARSERS, key, text_columns=TEXT_COLUMNS)


def _check_config(output: Path, record: dict[str, Any]) -> None:
    path = output / RUN_CONFIG
    previous = read_json(path)
    if previous is None:
        write_atomic(path, json.dumps(record, indent=1) + "\n")
    elif not isinstance(previous, dict):
        raise RunDirectoryError(
            f"{path} holds {type(previous).__name__}, not a run's settings; delete it if the "
            "results beside it were computed with the settings you run now, or choose another "
            "--output directory"
        )
    elif previous != record:
        raise ValueError(
            f"{output} holds a run with different settings ({previous}, now {record}); "
            "resume with the same settings or choose another --output directory"
        )


def _append(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    # One write per passage, flushed to disk: an interruption loses at most the passage in
    # progress, and a half-written last line is left out on resume (`read_finished`).
    with path.open("a", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _rewrite(path: Path, rows: Rows | None) -> None:
    """Rewrites a CSV file without the lines reading it left out, so appends start on a clean
    line and the warnings are not repeated. A directory we may not write to is left as it is
    (the lines are left out when reading)."""
    if rows is None or rows.dropped == 0:
        return
    try:
        write_atomic(path, rows.text)
    except OSError as error:
        if not is_not_writable(error):
            raise


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
    model: Any,
    passages: dict[str, Sequence[PassageInput]],
    methods: Sequence[str],
    output: str | Path,
    *,
    settings: Settings = Settings(),  # noqa: B008 (frozen, immutable)
    progress: bool = True,
    summary_every: int = 20,
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
        methods: registry names (:func:`tlscopes.methods.method_names`).

    Raises:
        tlscopes.run_directory.RunDirectoryError: another run holds the directory, or one of
            its files cannot be read (the message names it and what to do).
        ValueError: the directory holds a run with other settings or other passages.
    """
    methods = list(dict.fromkeys(methods))
    for name in methods:
        get_method(name)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(output):
        return _run_locked(model, passages, methods, output, settings, progress, summary_every)


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
    finished: Rows | None,
    skipped: Rows | None,
    path: Path,
) -> _Plan:
    done_methods: dict[tuple[str, int], set[str]] = {}
    known_text: dict[tuple[str, int], str] = {}
    if finished is not None:
        for task, index, method, sha in finished.frame[
            ["task", "passage", "method", "text_sha"]
        ].itertuples(index=False):
            done_methods.setdefault((str(task), int(index)), set()).add(method)
            known_text[(str(task), int(index))] = str(sha)
    unusable: dict[tuple[str, int], dict[str, Any]] = {}
    if skipped is not None:
        for record in skipped.frame.to_dict("records"):
            key = (str(record["task"]), int(record["passage"]))
            unusable[key] = {**record, "task": key[0], "passage": key[1]}
            known_text.setdefault(key, str(record["text_sha"]))
    order = [
        (task, index)
        for index in range(max((len(texts) for texts in passages.values()), default=0))
        for task, texts in passages.items()
        if index < len(texts)
    ]
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
    model: Any,
    passages: dict[str, Sequence[PassageInput]],
    methods: list[str],
    output: Path,
    settings: Settings,
    progress: bool,
    summary_every: int,
) -> EvaluationRun:
    from tqdm.auto import tqdm

    record = {"model": str(getattr(model.cfg, "model_name", "")), **settings.record()}
    _check_config(output, record)
    path, skipped_path = output / PER_PASSAGE, output / SKIPPED
    header = columns(settings.fractions)
    finished, skipped = _read_per_passage(path, header), _read_skipped(skipped_path)
    plan = _plan(passages, methods, finished, skipped, path)
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
    for count, (task, index, missing) in enumerate(plan.todo, start=1):
        bar.set_description(f"{task} passage {index}")
        text = passages[task][index]
        try:
            rows = evaluate_passage(model, text, missing, task=task, index=index, settings=settings)
        except UnusablePassage as error:
            reason = " ".join(str(error).split())
            unusable = {"task": task, "passage": index, "text_sha": text_hash(text)}
            plan.skipped.append({**unusable, "reason": reason})
            _append(skipped_path, SKIPPED_COLUMNS, plan.skipped[-1:])
            bar.set_postfix_str(f"{len(plan.skipped)} unusable skipped")
        except Exception as error:
            if hasattr(error, "add_note"):  # Python 3.11+: say where the run stopped
                error.add_note(
                    f"while evaluating {task} passage {index} ({describe_passage(text)})"
                )
            raise
        else:
            _append(path, header, rows)
            computed += 1
            for name in missing:
                newly_computed[name] += 1
        bar.update(1)
        if count % summary_every == 0:
            _write_summary(output, path, settings.fractions)
    bar.close()
    frame = _write_summary(output, path, settings.fractions)
    return EvaluationRun(
        frame,
        summarize(frame, settings.fractions),
        computed,
        already_done=plan.already_done,
        skipped=pd.DataFrame(plan.skipped, columns=SKIPPED_COLUMNS),
        newly_computed={name: n for name, n in newly_computed.items() if n},
    )


def _write_summary(output: Path, path: Path, fractions: Sequence[float]) -> pd.DataFrame:
    """Writes aopc.csv if it changed (a finished run in a directory we may not write to is
    read, not written; a failed write there is a warning) and returns the per-passage rows."""
    rows = _read_per_passage(path, columns(fractions), warn=False)
    frame = pd.DataFrame(columns=columns(fractions)) if rows is None else rows.frame
    text = summarize(frame, fractions).to_csv(index=False, lineterminator="\n")
    target = output / SUMMARY
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        try:
            write_atomic(target, text)
        except OSError as error:
            if not is_not_writable(error):
                raise
            warnings.warn(
                f"could not update {target} ({error}); the summary is returned but not saved",
                stacklevel=3,
            )
    return frame


def summarize(per_passage: pd.DataFrame, fractions: Sequence[float] = FRACTIONS) -> pd.DataFrame:
    """AOPC mean and standard error of the mean per (task, method), and the mean Delta_k.

    Columns: task, method, n, aopc_mean, aopc_sem, delta_<k> per fraction, n_steps (for
    Integrated Gradients; empty otherwise).
    """
    rows = []
    deltas = [f"delta_{fraction_label(k)}" for k in fractions]
    for (task, method), group in per_passage.groupby(["task", "method"], sort=False):
        values = group["aopc"].astype(float)
        n = len(values)
        steps = sorted({int(s) for s in group["n_steps"] if str(s) != ""})
        row = {
            "task": task,
            "method": method,
            "n": n,
            "aopc_mean": values.mean(),
            "aopc_sem": values.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan"),
        }
        row.update({d: group[d].astype(float).mean() for d in deltas})
        row["n_steps"] = ",".join(map(str, steps))
        rows.append(row)
    summary = pd.DataFrame(
        rows, columns=["task", "method", "n", "aopc_mean", "aopc_sem", *deltas, "n_steps"]
    )
    rank = {name: i for i, name in enumerate(TABLE_ORDER)}
    task_rank = {name: i for i, name in enumerate(TASK_LABELS)}
    summary["_method"] = summary["method"].map(lambda m: rank.get(m, len(rank)))
    summary["_task"] = summary["task"].map(lambda t: task_rank.get(t, len(task_rank)))
    return (
        summary.sort_values(["_task", "_method"], kind="stable")
        .drop(columns=["_task", "_method"])
        .reset_index(drop=True)
    )


def paired_differences(per_passage: pd.DataFrame, reference: str = "semantic") -> pd.DataFrame:
    """Each method's AOPC minus the reference method's on the same passages, per task.

    The methods are scored on the same passages, so their AOPCs are strongly correlated; the
    standard error of the per-passage difference is much smaller than either method's own and
    says whether a gap in the table is real. Negative: the method beats the reference.

    Columns: task, method, reference, n (passages both have), diff_mean, diff_sem, wins (the
    fraction of passages where the method's AOPC is lower).
    """
    rows = []
    for task, group in per_passage.groupby("task", sort=False):
        table = group.pivot_table(index="passage", columns="method", values="aopc", aggfunc="first")
        if reference not in table.columns:
            raise ValueError(f"no {reference!r} rows for task {task!r}; choose another reference")
        for method in [m for m in TABLE_ORDER if m in table.columns and m != reference]:
            both = table[[method, reference]].astype(float).dropna()
            diff = both[method] - both[reference]
            n = len(diff)
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "reference": reference,
                    "n": n,
                    "diff_mean": diff.mean(),
                    "diff_sem": diff.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan"),
                    "wins": float((diff < 0).mean()) if n else float("nan"),
                }
            )
    return pd.DataFrame(
        rows, columns=["task", "method", "reference", "n", "diff_mean", "diff_sem", "wins"]
    )


def format_table(summary: pd.DataFrame) -> str:
    """A table shaped like the paper's Table 1: methods as rows, tasks as columns, mean ± sem.

    When every method of a task averages the same number of passages, the task's column header
    says it (``LMB (n=500)``); otherwise each cell says its own (``-1.20 ± 0.05 (n=2)``).
    """
    tasks = list(dict.fromkeys(summary["task"]))
    methods = [m for m in TABLE_ORDER if m in set(summary["method"])]
    methods += [m for m in dict.fromkeys(summary["method"]) if m not in methods]
    same_n = {t: summary[summary["task"] == t]["n"].nunique() == 1 for t in tasks}
    header = ["Method"] + [
        f"{TASK_LABELS.get(t, t)} (n={int(summary[summary['task'] == t]['n'].iloc[0])})"
        if same_n[t]
        else f"{TASK_LABELS.get(t, t)} (n per cell)"
        for t in tasks
    ]
    lines = [header]
    for method in methods:
        cells = [TABLE_LABELS.get(method, method)]
        for task in tasks:
            match = summary[(summary["task"] == task) & (summary["method"] == method)]
            if match.empty:
                cells.append("")
                continue
            mean, sem = float(match["aopc_mean"].iloc[0]), float(match["aopc_sem"].iloc[0])
            n = "" if same_n[task] else f" (n={int(match['n'].iloc[0])})"
            cells.append(f"{mean:+.2f} ± {sem:.2f}{n}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="lambada", help="lambada, iwslt, or both comma-separated")
    parser.add_argument(
        "--methods",
        default=",".join(method_names()),
        help=f"comma-separated method names (default all: {','.join(method_names())})",
    )
    parser.add_argument("--prompts", type=Path, help='JSON list of {"text": ...} (one task only)')
    parser.add_argument("--hub", action="store_true", help="the full task from the HF hub")
    parser.add_argument("--limit", type=int, help="the first N passages of each task")
    parser.add_argument("--output", type=Path, required=True, help="results directory")
    parser.add_argument("--fractions", default=",".join(map(fraction_label, FRACTIONS)))
    parser.add_argument("--n-steps", type=int, default=baselines.DEFAULT_N_STEPS, help="IG steps")
    parser.add_argument("--ig-batch-size", type=int, help="IG path points per batch")
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=baselines.DEFAULT_MEMORY_BUDGET / 1024**3,
        help="IG activation budget per batch (GiB), when --ig-batch-size is not given",
    )
    parser.add_argument("--seed", type=int, default=0, help="the random method's seed")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--model", default="smollm2-135m", help="default model, HF dir or TL name")
    parser.add_argument("--kind", default="auto", choices=["auto", "hooked", "bridge"])


def run(args: argparse.Namespace) -> int:
    from tlscopes.models import load_model

    tasks = _comma_list(args.task)
    for task in tasks:
        if task not in datasets.task_names():
            raise SystemExit(
                f"unknown task {task!r}; known tasks: {', '.join(datasets.task_names())}"
            )
    if args.prompts is not None and len(tasks) != 1:
        raise SystemExit("--prompts gives the passages of one task; pass a single --task")
    methods = _comma_list(args.methods)
    for name in methods:
        if name not in method_names():
            raise SystemExit(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    passages = {}
    for task in tasks:
        if args.hub:
            passages[task] = datasets.load_hub_passages(task, limit=args.limit or 1000)
        else:
            passages[task] = datasets.load_passages(task, args.prompts, args.limit)
    settings = Settings(
        fractions=tuple(float(k) for k in _comma_list(args.fractions)),
        n_steps=args.n_steps,
        seed=args.seed,
        ig_batch_size=args.ig_batch_size,
        memory_budget=int(args.memory_gb * 1024**3),
    )
    model = load_model(args.model, kind=args.kind)
    try:
        result = run_evaluation(
            model, passages, methods, args.output, settings=settings, progress=not args.no_progress
        )
    except RunDirectoryError as error:
        raise SystemExit(str(error)) from error
    print(describe_run(result, args.output))
    print(format_table(result.summary))
    return 0


def _passages(count: int) -> str:
    return f"{count} passage{'' if count == 1 else 's'}"


def describe_run(result: EvaluationRun, output: str | Path) -> str:
    """What a run did, in words: computed, already done, skipped as unusable, methods added."""
    lines = [
        f"computed {_passages(result.computed)}, {result.already_done} already done before; "
        f"results in {output}"
    ]
    if result.newly_computed:
        added = ", ".join(f"{m} on {_passages(n)}" for m, n in result.newly_computed.items())
        lines.append(f"newly computed: {added}")
    if len(result.skipped):
        lines.append(
            f"skipped {_passages(len(result.skipped))} as unusable (reasons in "
            f"{Path(output) / SKIPPED}): "
            + ", ".join(f"{r.task} {r.passage}" for r in result.skipped.head(10).itertuples())
            + (", ..." if len(result.skipped) > 10 else "")
        )
    return "\n".join(lines)


COMMAND = (add_arguments, run)
