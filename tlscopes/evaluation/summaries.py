"""Summaries of AOPC runs: means and errors per method, paired differences, the printed
table (paper Table 1's order and labels), and a run described in words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tlscopes.evaluation.aopc_arithmetic import FRACTIONS, fraction_label
from tlscopes.evaluation.statistics import bootstrap_interval, wilcoxon_signed_rank

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


def target_aligned(per_passage: pd.DataFrame) -> pd.DataFrame:
    """The rows of passages where the top-1 prediction is the ground-truth token (the authors'
    rebuttal's "target-aligned" subset; needs the ``prediction_id`` column that the authors'
    protocol writes). There the two protocols' Delta_k measure the same token."""
    if "prediction_id" not in per_passage.columns:
        raise ValueError(
            "these rows have no prediction_id column; only runs with --protocol authors "
            "record the top-1 prediction"
        )
    aligned = per_passage["prediction_id"].astype(int) == per_passage["target_id"].astype(int)
    return per_passage[aligned]


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


def paired_tests(
    per_passage: pd.DataFrame,
    column: str = "aopc",
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every pair of methods on the passages both have, per task: the mean difference of
    `column` (method - other; for AOPC negative: the method is better), its 95% percentile
    bootstrap interval, and the paired Wilcoxon signed-rank test
    (:mod:`tlscopes.evaluation.statistics`; two-sided p from the normal approximation).

    Columns: task, method, other, n, diff_mean, ci_low, ci_high, wilcoxon_statistic,
    wilcoxon_z, wilcoxon_p.
    """
    names = ["task", "method", "other", "n", "diff_mean", "ci_low", "ci_high"]
    names += ["wilcoxon_statistic", "wilcoxon_z", "wilcoxon_p"]
    rows = []
    for task, group in per_passage.groupby("task", sort=False):
        table = group.pivot_table(index="passage", columns="method", values=column, aggfunc="first")
        present = [m for m in TABLE_ORDER if m in table.columns]
        present += [m for m in table.columns if m not in present]
        for i, method in enumerate(present):
            for other in present[i + 1 :]:
                both = table[[method, other]].astype(float).dropna()
                diff = (both[method] - both[other]).to_numpy()
                low, high = bootstrap_interval(diff, n_resamples=n_resamples, seed=seed)
                test = wilcoxon_signed_rank(diff)
                mean = float(diff.mean()) if len(diff) else float("nan")
                rows.append(
                    [task, method, other, len(diff), mean, low, high]
                    + [test.statistic, test.z, test.p_value]
                )
    return pd.DataFrame(rows, columns=names)


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


def _passages(count: int) -> str:
    return f"{count} passage{'' if count == 1 else 's'}"


def describe_run(result: Any, output: str | Path) -> str:
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
            f"{Path(output) / 'skipped.csv'}): "
            + ", ".join(f"{r.task} {r.passage}" for r in result.skipped.head(10).itertuples())
            + (", ..." if len(result.skipped) > 10 else "")
        )
    return "\n".join(lines)
