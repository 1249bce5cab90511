"""Issue 23's ablation choices, from committed run directories, paired on the passages both runs
finished.

    python scripts/ablation_choices.py [--out results/ablation_choices.md]

1. **Zero against filler ablation, Gemma-3-270M**: ``results/aopc_gemma3`` (ablated embeddings
   set to zero) against ``results/aopc_gemma3_filler`` (set to the pad token's embedding). The
   authors' rebuttal found, on Gemma-3-1B and LAMBADA, that the swap erases the scopes' lead over
   the best baseline (gap -0.108 -> +0.001) and moves the random baseline from 0.280 to 0.434.
2. **Integrated Gradients' baseline, SmolLM2-135M**: IG's AOPC in ``results/aopc`` (starting
   point zero) against ``results/aopc_ig_pad`` (the pad embedding at every position). The
   rebuttal's LLaMA-3.2-1B: -1.276 (zero) against -0.735 (pad) on LAMBADA, Holm p = 1.8e-69.

For each, per task: the methods' mean AOPC [95% bootstrap interval] under both choices, the
paired difference with its interval and the Wilcoxon signed-rank p-value, and for (1) the
scopes' lead: the best scope's AOPC minus the best baseline's, per passage (the best chosen by
the mean over these passages; negative: a scope leads). p-values of (2) are Holm-corrected over
the two tasks. Passages are matched on (task, passage) and checked to be the same text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tlscopes.evaluation.run_directory import PER_PASSAGE, RUN_CONFIG, read_finished
from tlscopes.evaluation.statistics import bootstrap_interval, wilcoxon_signed_rank

ROOT = Path(__file__).resolve().parents[1]
SCOPES = ("fisher", "temperature", "semantic")
BASELINES = ("saliency", "input_x_gradient", "integrated_gradients")
ORDER = (*SCOPES, *BASELINES, "random")
NAMES = {
    "fisher": "Fisher Scope",
    "temperature": "Temperature Scope",
    "semantic": "Semantic Scope",
    "saliency": "Saliency",
    "input_x_gradient": "Input × Gradient",
    "integrated_gradients": "Integrated Gradients",
    "random": "Random",
}


def load(directory: Path) -> tuple[pd.DataFrame, dict]:
    rows = read_finished(directory / PER_PASSAGE)
    config = json.loads((directory / RUN_CONFIG).read_text())
    return rows, config


def paired(a: pd.DataFrame, b: pd.DataFrame, task: str) -> pd.DataFrame:
    """AOPC per passage and method under both runs: columns (run, method), rows the passages
    both runs finished for every method they share."""
    tables = []
    for rows in (a, b):
        rows = rows[rows["task"] == task]
        tables.append(rows.pivot_table(index="passage", columns="method", values="aopc"))
    shared = [m for m in ORDER if m in tables[0].columns and m in tables[1].columns]
    both = pd.concat({"a": tables[0][shared], "b": tables[1][shared]}, axis=1).dropna()
    texts = [
        rows[rows["task"] == task].groupby("passage")["text_sha"].first().loc[both.index]
        for rows in (a, b)
    ]
    if not texts[0].equals(texts[1]):
        raise SystemExit(f"{task}: the two runs hold different texts under the same passage ids")
    return both


def interval(values: np.ndarray) -> str:
    low, high = bootstrap_interval(values)
    return f"{values.mean():.3f} [{low:.3f}, {high:.3f}]"


def p_value(differences: np.ndarray) -> float:
    return wilcoxon_signed_rank(differences).p_value


def holm(p_values: list[float]) -> list[float]:
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def method_rows(both: pd.DataFrame, labels: tuple[str, str]) -> list[str]:
    lines = [
        f"| Method | {labels[0]} | {labels[1]} | {labels[1]} - {labels[0]} | Wilcoxon p |",
        "|---|---|---|---|---|",
    ]
    for method in both["a"].columns:
        a, b = both["a"][method].to_numpy(), both["b"][method].to_numpy()
        lines.append(
            f"| {NAMES.get(method, method)} | {interval(a)} | {interval(b)} | "
            f"{interval(b - a)} | {p_value(b - a):.2g} |"
        )
    return lines


def lead(table: pd.DataFrame) -> tuple[str, str, np.ndarray]:
    """(best scope, best baseline, per-passage best scope - best baseline)."""
    scopes = [m for m in SCOPES if m in table.columns]
    baselines = [m for m in BASELINES if m in table.columns]
    scope = min(scopes, key=lambda m: table[m].mean())
    baseline = min(baselines, key=lambda m: table[m].mean())
    return scope, baseline, (table[scope] - table[baseline]).to_numpy()


def filler_section(zero_dir: Path, filler_dir: Path) -> list[str]:
    zero, zero_config = load(zero_dir)
    filler, filler_config = load(filler_dir)
    lines = [
        "## Zero against filler ablation, Gemma-3-270M",
        "",
        f"Runs: `{zero_dir.relative_to(ROOT)}` (zero) and `{filler_dir.relative_to(ROOT)}` "
        f"(filler: token {filler_config.get('filler_token_id')!r}, "
        f"{filler_config.get('filler_token', '?')!r}); both with fractions "
        f"{zero_config.get('fractions')}, Integrated Gradients with "
        f"{zero_config.get('n_steps')} / {filler_config.get('n_steps')} steps. AOPC: lower is "
        "more faithful.",
        "",
    ]
    for task in ("lambada", "iwslt"):
        both = paired(zero, filler, task)
        if both.empty:
            lines += [f"### {task}: no passage finished in both runs yet", ""]
            continue
        lines += [f"### {task} ({len(both)} passages in both runs)", ""]
        lines += method_rows(both, ("zero", "filler"))
        lines.append("")
        scope_a, baseline_a, gap_a = lead(both["a"])
        scope_b, baseline_b, gap_b = lead(both["b"])
        lines += [
            "The scopes' lead (best scope - best baseline, per passage; negative: a scope leads):",
            "",
            f"- zero: {NAMES[scope_a]} - {NAMES[baseline_a]} = {interval(gap_a)} "
            f"(Wilcoxon p = {p_value(gap_a):.2g});",
            f"- filler: {NAMES[scope_b]} - {NAMES[baseline_b]} = {interval(gap_b)} "
            f"(Wilcoxon p = {p_value(gap_b):.2g});",
            f"- change of the lead, filler - zero: {interval(gap_b - gap_a)} "
            f"(Wilcoxon p = {p_value(gap_b - gap_a):.2g}).",
            "",
        ]
        if "random" in both["a"].columns:
            ra, rb = both["a"]["random"], both["b"]["random"]
            lines += [
                f"Random baseline: {ra.mean():.3f} ± {ra.std(ddof=1):.3f} (zero) against "
                f"{rb.mean():.3f} ± {rb.std(ddof=1):.3f} (filler), mean ± standard deviation over "
                "passages.",
                "",
            ]
    return lines


def ig_section(zero_dir: Path, pad_dir: Path) -> list[str]:
    zero, zero_config = load(zero_dir)
    pad, pad_config = load(pad_dir)
    lines = [
        "## Integrated Gradients: zero against pad baseline, SmolLM2-135M",
        "",
        f"Runs: `{zero_dir.relative_to(ROOT)}` (baseline zero) and `{pad_dir.relative_to(ROOT)}` "
        f"(baseline {pad_config.get('ig_baseline', 'zero')!r}); {zero_config.get('n_steps')} / "
        f"{pad_config.get('n_steps')} path points, fractions {pad_config.get('fractions')}.",
        "",
        "| task | passages | IG, zero | IG, pad | pad - zero | Wilcoxon p | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    cells = []
    for task in ("lambada", "iwslt"):
        both = paired(zero, pad, task)
        if both.empty or "integrated_gradients" not in both["a"].columns:
            continue
        a = both["a"]["integrated_gradients"].to_numpy()
        b = both["b"]["integrated_gradients"].to_numpy()
        cells.append((task, len(a), a, b, p_value(b - a)))
    for (task, n, a, b, _), adjusted in zip(cells, holm([c[4] for c in cells]), strict=True):
        lines.append(
            f"| {task} | {n} | {interval(a)} | {interval(b)} | {interval(b - a)} | "
            f"{wilcoxon_signed_rank(b - a).p_value:.2g} | {adjusted:.2g} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "ablation_choices.md")
    args = parser.parse_args()
    lines = [
        "# The ablation's choices (issue 23)",
        "",
        "Written by `scripts/ablation_choices.py`.",
        "",
    ]
    results = ROOT / "results"
    if (results / "aopc_gemma3_filler" / PER_PASSAGE).exists():
        lines += filler_section(results / "aopc_gemma3", results / "aopc_gemma3_filler")
    if (results / "aopc_ig_pad" / PER_PASSAGE).exists():
        lines += ig_section(results / "aopc", results / "aopc_ig_pad")
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
