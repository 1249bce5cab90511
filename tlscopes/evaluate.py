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
through the model as one batch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from tlscopes import baselines, datasets
from tlscopes.attribute import final_logits
from tlscopes.hooks import StopForward, run_hooked
from tlscopes.methods import attribute_methods, get_method, method_names
from tlscopes.models import EMBED_HOOK, FINAL_STATE_HOOK

FRACTIONS = (0.05, 0.10, 0.20)
PER_PASSAGE = "per_passage.csv"
SUMMARY = "aopc.csv"
RUN_CONFIG = "run.json"
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


def has_bos(model: Any, tokens: Tensor) -> bool:
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    return bos is not None and int(tokens[0, 0]) == int(bos)


def prepare_passage(model: Any, text: str) -> Passage:
    """Tokenizes with the model's BOS convention and splits off the target (the last token)."""
    tokens = model.to_tokens(text, truncate=False).cpu()
    start = 1 if has_bos(model, tokens) else 0
    if tokens.shape[1] - start < 2:
        raise ValueError(f"passage {text[:40]!r} needs at least two tokens besides BOS")
    inputs = tokens[:, :-1]
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


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def evaluate_passage(
    model: Any,
    text: str,
    methods: Sequence[str],
    *,
    task: str = "",
    index: int = 0,
    settings: Settings = Settings(),  # noqa: B008 (frozen, immutable)
) -> list[dict[str, Any]]:
    """One row per method: Delta_k per fraction, the ablated counts, AOPC and method details."""
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


def read_finished(path: Path) -> pd.DataFrame | None:
    """The rows of an earlier run; a last line cut off by an interruption is dropped first."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
        data = path.read_bytes()
    if not data:
        return None
    return pd.read_csv(io.BytesIO(data), keep_default_na=False)


def _check_config(output: Path, record: dict[str, Any]) -> None:
    path = output / RUN_CONFIG
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != record:
            raise ValueError(
                f"{output} holds a run with different settings ({previous}, now {record}); "
                "resume with the same settings or choose another --output directory"
            )
    else:
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _append(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    # One write per passage, flushed to disk: an interruption loses at most the passage in
    # progress, and a half-written last line is dropped on resume (`read_finished`).
    with path.open("a", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class EvaluationRun:
    """The outcome of :func:`run_evaluation`.

    Attributes:
        per_passage: one row per (task, passage, method), finished earlier or now.
        summary: AOPC mean and standard error per (task, method) (:func:`summarize`).
        computed: how many passages this call computed (the rest were already finished).
    """

    per_passage: pd.DataFrame
    summary: pd.DataFrame
    computed: int


def run_evaluation(
    model: Any,
    passages: dict[str, Sequence[str]],
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
    ``output/aopc.csv`` is rewritten every `summary_every` passages and at the end.

    Args:
        passages: task name -> passage texts (each passage's index is its position here).
        methods: registry names (:func:`tlscopes.methods.method_names`).
    """
    from tqdm.auto import tqdm

    methods = list(dict.fromkeys(methods))
    for name in methods:
        get_method(name)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    record = {"model": str(getattr(model.cfg, "model_name", "")), **settings.record()}
    _check_config(output, record)
    path = output / PER_PASSAGE
    header = columns(settings.fractions)
    finished = read_finished(path)
    done_methods: dict[tuple[str, int], set[str]] = {}
    known_text: dict[tuple[str, int], str] = {}
    if finished is not None:
        for task, index, method, sha in finished[
            ["task", "passage", "method", "text_sha"]
        ].itertuples(index=False):
            done_methods.setdefault((task, int(index)), set()).add(method)
            known_text[(task, int(index))] = str(sha)
    order = [
        (task, index)
        for index in range(max((len(texts) for texts in passages.values()), default=0))
        for task, texts in passages.items()
        if index < len(texts)
    ]
    todo = []
    for task, index in order:
        text = passages[task][index]
        if (task, index) in known_text and known_text[(task, index)] != text_hash(text):
            raise ValueError(
                f"{path} has results for {task} passage {index} from a different text; use "
                "another --output directory for other passages"
            )
        missing = [m for m in methods if m not in done_methods.get((task, index), set())]
        if missing:
            todo.append((task, index, missing))
    bar = tqdm(total=len(order), initial=len(order) - len(todo), disable=not progress)
    for count, (task, index, missing) in enumerate(todo, start=1):
        rows = evaluate_passage(
            model, passages[task][index], missing, task=task, index=index, settings=settings
        )
        _append(path, header, rows)
        bar.update(1)
        if count % summary_every == 0:
            _write_summary(output, path, settings.fractions)
        bar.set_postfix_str(f"{task} {index}")
    bar.close()
    frame = _write_summary(output, path, settings.fractions)
    return EvaluationRun(frame, summarize(frame, settings.fractions), len(todo))


def _write_summary(output: Path, path: Path, fractions: Sequence[float]) -> pd.DataFrame:
    frame = read_finished(path)
    if frame is None:
        frame = pd.DataFrame(columns=columns(fractions))
    summarize(frame, fractions).to_csv(output / SUMMARY, index=False)
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
    """A table shaped like the paper's Table 1: methods as rows, tasks as columns, mean ± sem."""
    tasks = list(dict.fromkeys(summary["task"]))
    methods = [m for m in TABLE_ORDER if m in set(summary["method"])]
    methods += [m for m in dict.fromkeys(summary["method"]) if m not in methods]
    header = ["Method"] + [
        f"{TASK_LABELS.get(t, t)} (n={int(summary[summary['task'] == t]['n'].min())})"
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
            cells.append(f"{mean:+.2f} ± {sem:.2f}")
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
    result = run_evaluation(
        model, passages, methods, args.output, settings=settings, progress=not args.no_progress
    )
    print(f"computed {result.computed} passages; results in {args.output}")
    print(format_table(result.summary))
    return 0


COMMAND = (add_arguments, run)
