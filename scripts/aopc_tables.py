"""The AOPC comparison tables of the README from the committed run directories.

    python scripts/aopc_tables.py [--out results/aopc_tables.md]
    python scripts/aopc_tables.py --single results/aopc    (one run's own table.md)

Reads results/aopc (SmolLM2, paper protocol), results/aopc_authors (SmolLM2, authors'
protocol) and results/aopc_gemma3 (Gemma-3-270M, paper protocol), whichever exist, and writes:
the two protocols side by side with the paper's LLaMA-3.2-1B column (on the passages both runs
have), the authors' target-aligned subset, Gemma-3-270M beside SmolLM2 and the paper's Gemma-3
columns, paired differences against Semantic Scope with a bootstrap interval and the Wilcoxon
test, Integrated Gradients against Fisher Scope, ERASER and leave-one-out means where a run has
them, and paired_tests.csv (every method pair) in each run directory. results/aopc_measures
(SmolLM2, paper protocol, filler ablation, ERASER and leave-one-out on a subset) is put beside
the zero-ablation run on the same passages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tlscopes.evaluation import summaries
from tlscopes.evaluation.run_directory import PER_PASSAGE, RUN_CONFIG, SUMMARY, read_finished

TASKS = ("lambada", "iwslt")
# Paper Table 1 (n = 1000 passages, standard errors 0.01-0.02): (LMB, IWS).
PAPER = {
    "LLaMA-3.2-1B": {
        "random": (-0.26, -0.30),
        "integrated_gradients": (-1.10, -0.93),
        "input_x_gradient": (-1.28, -1.04),
        "semantic": (-1.30, -1.06),
        "temperature": (-1.32, -1.09),
        "fisher": (-1.32, -1.08),
    },
    "Gemma-3-1B": {
        "random": (-0.42, -0.41),
        "integrated_gradients": (-0.64, -0.91),
        "input_x_gradient": (-1.56, -1.36),
        "semantic": (-1.64, -1.30),
        "temperature": (-1.66, -1.29),
        "fisher": (-1.67, -1.39),
    },
    "Gemma-3-4B": {
        "random": (-0.29, -0.18),
        "integrated_gradients": (-1.43, -1.20),
        "input_x_gradient": (-1.70, -1.17),
        "semantic": (-1.78, -1.06),
        "temperature": (-1.78, -0.99),
        "fisher": (-1.81, -1.20),
    },
}


def read(directory: Path) -> pd.DataFrame | None:
    path = directory / PER_PASSAGE
    return read_finished(path) if path.exists() else None


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """Only passages with a row for every method of the run (a run cut mid-way is balanced)."""
    methods = frame["method"].nunique()
    counts = frame.groupby(["task", "passage"])["method"].transform("nunique")
    return frame[counts == methods]


def same_passages(frame: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    keys = set(map(tuple, other[["task", "passage"]].drop_duplicates().to_numpy().tolist()))
    mask = [(t, int(p)) in keys for t, p in zip(frame["task"], frame["passage"], strict=True)]
    return frame[mask]


def cell(summary: pd.DataFrame, task: str, method: str) -> str:
    match = summary[(summary.task == task) & (summary.method == method)]
    if match.empty:
        return "—"
    row = match.iloc[0]
    return f"{row.aopc_mean:.2f} ± {row.aopc_sem:.2f}"


def n_of(summary: pd.DataFrame, task: str) -> int:
    match = summary[summary.task == task]
    return int(match.n.min()) if len(match) else 0


def table(columns: list[tuple[str, pd.DataFrame | None, str | None]]) -> list[str]:
    """Methods as rows; each column is (label, summary or None, paper model or None) per task."""
    header, cells = ["Method"], {m: [summaries.TABLE_LABELS[m]] for m in summaries.TABLE_ORDER}
    for task in TASKS:
        label_task = summaries.TASK_LABELS[task]
        for label, summary, paper in columns:
            if summary is not None:
                header.append(f"{label_task} {label} (n={n_of(summary, task)})")
                for method in summaries.TABLE_ORDER:
                    cells[method].append(cell(summary, task, method))
            else:
                header.append(f"{label_task} paper {paper}")
                for method in summaries.TABLE_ORDER:
                    value = PAPER[paper].get(method)
                    cells[method].append(
                        "—" if value is None else f"{value[TASKS.index(task)]:.2f}"
                    )
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cells[m]) + " |" for m in summaries.TABLE_ORDER]
    return lines


def paired_lines(frame: pd.DataFrame, reference: str, title: str) -> list[str]:
    tests = summaries.paired_tests(frame)
    plain = summaries.paired_differences(frame, reference=reference)
    lines = [title, ""]
    lines += [
        "| Method − " + summaries.TABLE_LABELS[reference] + " | task | n | difference ± sem "
        "| 95% bootstrap | lower on | Wilcoxon z | p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in TASKS:
        for method in summaries.TABLE_ORDER:
            if method == reference:
                continue
            row = plain[(plain.task == task) & (plain.method == method)]
            pair = tests[
                (tests.task == task)
                & (
                    ((tests.method == method) & (tests.other == reference))
                    | ((tests.method == reference) & (tests.other == method))
                )
            ]
            if row.empty or pair.empty:
                continue
            row, pair = row.iloc[0], pair.iloc[0]
            sign = 1 if pair.method == method else -1
            low, high = sorted((sign * pair.ci_low, sign * pair.ci_high))
            lines.append(
                f"| {summaries.TABLE_LABELS[method]} | {summaries.TASK_LABELS[task]} | {row.n} "
                f"| {row.diff_mean:+.3f} ± {row.diff_sem:.3f} | [{low:+.3f}, {high:+.3f}] "
                f"| {row.wins:.0%} | {z_text(sign * pair.wilcoxon_z)} | {z_text(pair.wilcoxon_p, '.2g')} |"
            )
    return lines


def z_text(value: float, spec: str = "+.1f") -> str:
    return "—" if pd.isna(value) else format(value, spec)


def extra_lines(frame: pd.DataFrame, name: str) -> list[str]:
    columns = [c for c in ("comprehensiveness", "sufficiency", "loo_spearman", "loo_kendall")]
    columns = [c for c in columns if c in frame.columns]
    if not columns:
        return []
    lines = [
        f"Measures beside AOPC ({name}; mean over passages; comprehensiveness: higher is "
        "better; sufficiency: lower is better; leave-one-out: on the --loo-limit passages).",
        "",
        "| Method | task | " + " | ".join(columns) + " | n (loo) |",
        "|" + " --- |" * (len(columns) + 3),
    ]
    for task in TASKS:
        for method in summaries.TABLE_ORDER:
            group = frame[(frame.task == task) & (frame.method == method)]
            if group.empty:
                continue
            values = []
            for column in columns:
                numbers = pd.to_numeric(group[column], errors="coerce").dropna()
                values.append(f"{numbers.mean():.3f}" if len(numbers) else "—")
            loo = pd.to_numeric(group.get("loo_spearman", pd.Series(dtype=float)), errors="coerce")
            lines.append(
                f"| {summaries.TABLE_LABELS[method]} | {summaries.TASK_LABELS[task]} | "
                + " | ".join(values)
                + f" | {int(loo.notna().sum())} |"
            )
    return lines


def single_run(directory: Path) -> None:
    """One run's own files: aopc.csv (the summary), paired_vs_semantic.csv and table.md (the
    run beside the paper's LLaMA-3.2-1B column, then paired against Semantic Scope)."""
    frame = read(directory)
    if frame is None:
        raise SystemExit(f"{directory / PER_PASSAGE} does not exist: run the evaluation first")
    summary = summaries.summarize(frame)
    summary.to_csv(directory / SUMMARY, index=False)
    summaries.paired_differences(frame, reference="semantic").to_csv(
        directory / "paired_vs_semantic.csv", index=False
    )
    model = json.loads((directory / RUN_CONFIG).read_text()).get("model", "this run")
    steps = ",".join(sorted(set(summary.n_steps.astype(str)) - {""}))
    lines = table([(str(model).split("/")[-1], summary, None), ("", None, "LLaMA-3.2-1B")])
    lines += [
        "",
        f"Integrated Gradients: n_steps = {steps}. AOPC: paper eq. 9 as printed, k in fractions "
        "(0.05, 0.10, 0.20), not normalised; mean ± standard error over passages.",
        "",
    ]
    lines += paired_lines(frame, "semantic", "Paired against Semantic Scope on the same passages:")
    (directory / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("results/aopc_tables.md"))
    parser.add_argument(
        "--single", type=Path, help="only this run directory's aopc.csv, table.md and pairs"
    )
    args = parser.parse_args()
    if args.single is not None:
        single_run(args.single)
        return
    paper_run = read(args.results / "aopc")
    authors_run = read(args.results / "aopc_authors")
    gemma_run = read(args.results / "aopc_gemma3")
    lines = ["# AOPC tables", ""]
    for name, frame in (("aopc_authors", authors_run), ("aopc_gemma3", gemma_run)):
        if frame is not None:
            summaries.paired_tests(complete(frame)).to_csv(
                args.results / name / "paired_tests.csv", index=False
            )
    if authors_run is not None and paper_run is not None:
        authors = complete(authors_run)
        aligned = summaries.target_aligned(authors)
        share = aligned[["task", "passage"]].drop_duplicates().shape[0] / max(
            1, authors[["task", "passage"]].drop_duplicates().shape[0]
        )
        paper_same = same_passages(paper_run, authors)
        lines += [
            "## SmolLM2-135M: the paper's protocol and the authors' script",
            "",
            f"Target-aligned passages (top-1 = ground truth): {share:.0%}.",
            "",
        ]
        lines += table(
            [
                ("paper protocol", summaries.summarize(paper_same), None),
                ("authors' protocol", summaries.summarize(authors), None),
                ("authors', target-aligned", summaries.summarize(aligned), None),
                ("", None, "LLaMA-3.2-1B"),
            ]
        )
        lines += [""] + paired_lines(
            authors, "semantic", "Authors' protocol, paired against Semantic Scope:"
        )
        lines += [""] + extra_lines(authors, "SmolLM2, authors' protocol") + [""]
    if gemma_run is not None:
        gemma = complete(gemma_run)
        columns: list[tuple[str, pd.DataFrame | None, str | None]] = [
            ("Gemma-3-270M", summaries.summarize(gemma), None)
        ]
        if paper_run is not None:
            columns.append(
                (
                    "SmolLM2-135M, same passages",
                    summaries.summarize(same_passages(paper_run, gemma)),
                    None,
                )
            )
        columns += [("", None, "Gemma-3-1B"), ("", None, "Gemma-3-4B")]
        lines += ["## Gemma-3-270M beside SmolLM2 (paper protocol)", ""] + table(columns)
        lines += [""] + paired_lines(
            gemma, "semantic", "Gemma-3-270M, paired against Semantic Scope:"
        )
        lines += [""] + paired_lines(
            gemma, "fisher", "Gemma-3-270M, paired against Fisher Scope (does IG tie Fisher?):"
        )
        lines += [""] + extra_lines(gemma, "Gemma-3-270M") + [""]
    measures_run = read(args.results / "aopc_measures")
    if measures_run is not None:
        measures = complete(measures_run)
        summaries.paired_tests(measures).to_csv(
            args.results / "aopc_measures" / "paired_tests.csv", index=False
        )
        filler = json.loads((args.results / "aopc_measures" / RUN_CONFIG).read_text())
        columns = [
            (f"filler {filler.get('filler_token', '')!r}", summaries.summarize(measures), None)
        ]
        if paper_run is not None:
            zero = summaries.summarize(same_passages(paper_run, measures))
            columns.insert(0, ("zero (the table's run), same passages", zero, None))
        lines += [
            "## SmolLM2-135M: zero and filler ablation, ERASER, leave-one-out (paper protocol)",
            "",
        ]
        lines += table(columns)
        lines += [""] + paired_lines(
            measures, "semantic", "Filler ablation, paired against Semantic Scope:"
        )
        lines += [""] + extra_lines(measures, "SmolLM2, filler ablation") + [""]
    for name in ("aopc_authors", "aopc_gemma3", "aopc_measures"):
        config = args.results / name / RUN_CONFIG
        if config.exists():
            lines.append(f"{name}/run.json: `{json.dumps(json.loads(config.read_text()))}`")
    lines.append("")
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
