"""The long-context memory curve: peak resident memory against prompt length (a linear axis,
so linear growth is a straight line), one panel per model, one line per method and measurement
condition (issue 22).

Reads the rows that ``scripts/benchmark_long_context.py`` writes, either its ``--out`` JSON or
its printed table (``model | tokens | method | time (s) | peak (GiB) | ...``). Each input is
given as ``PATH=CONDITION``. A run killed at the memory limit is drawn at that limit with a
cross; rows with other errors are left out. The default inputs are the
measurements committed under ``results/bench/`` on 2026-12-07 and 2026-12-08.

    python scripts/plot_long_context.py                                  # the docs' figure
    python scripts/plot_long_context.py rows.json=quiet --out curve.png
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 2**30
KILLED = re.compile(r"over ([\d.]+) GiB")
BENCH = Path("results/bench")
DEFAULT_INPUTS = (
    f"{BENCH}/long_context_before_2026-12-07.json=before issue 22",
    f"{BENCH}/long_context_peers_smollm2_2026-12-07.json=one run",
    f"{BENCH}/long_context_inseq_smollm2_2026-12-07.json=the run after",
    f"{BENCH}/long_context_gemma_4k_2026-12-07.json=Semantic + Fisher + Temperature",
    f"{BENCH}/long_context_gemma_8k_2026-12-07.txt=the three, before the MLP chunks",
    f"{BENCH}/long_context_gemma_16k_2026-12-07.json=Semantic + Fisher + Temperature",
    f"{BENCH}/long_context_gemma_32k_2026-12-07.json=Semantic",
    f"{BENCH}/long_context_gemma_32k_fisher_temperature_2026-12-07.json=Fisher + Temperature",
    f"{BENCH}/long_context_gemma_keys_fix_2026-12-08.json=all three, keys fix (2026-12-08)",
)
# The targets: (model, tokens, GiB).
TARGETS = (("smollm2-135m", 8192, 3.0), ("gemma3-270m", 16384, 6.0), ("gemma3-270m", 32768, 8.0))
LABELS = {
    "tlscopes": "tlscopes",
    "tlscopes-plain": "tlscopes, no checkpointing",
    "plain-recipe": "HF + SDPA + gradient checkpointing",
    "captum-ixg": "captum InputXGradient (HF + SDPA)",
    "inseq-ixg": "inseq input_x_gradient (HF, eager attention)",
}


def read_rows(path: Path) -> list[dict]:
    """The benchmark's rows from its JSON or its printed table. A run killed at the memory
    limit ("over 14 GiB") gets that limit as its peak and ``killed: True``; rows with other
    errors are dropped."""
    text = path.read_text()
    if path.suffix == ".json":
        rows = json.loads(text)
    else:
        rows = []
        for line in text.splitlines():
            cells = [cell.strip() for cell in line.split("|")]
            if len(cells) >= 5 and cells[1].isdigit():
                row = {"model": cells[0], "tokens": int(cells[1]), "method": cells[2]}
                try:
                    row["peak"] = float(cells[4]) * GIB
                except ValueError:  # the peak column of a failed run holds its error
                    row["error"] = cells[4]
                rows.append(row)
    for row in rows:
        killed = KILLED.fullmatch(str(row.get("error", "")))
        if killed:
            row["peak"], row["killed"] = float(killed.group(1)) * GIB, True
    return [row for row in rows if "peak" in row]


Curves = dict[str, dict[str, list[tuple[int, float, bool]]]]


def curves(inputs: list[str]) -> Curves:
    """{model: {line label: [(tokens, peak GiB, killed), ...]}} from ``PATH=CONDITION``
    inputs."""
    found: Curves = defaultdict(lambda: defaultdict(list))
    for item in inputs:
        path, _, condition = item.partition("=")
        if not Path(path).exists():
            print(f"skipped {path}: not found")
            continue
        for row in read_rows(Path(path)):
            label = LABELS.get(row["method"], row["method"])
            if condition:
                label = f"{label} [{condition}]"
            point = (int(row["tokens"]), row["peak"] / GIB, bool(row.get("killed")))
            found[row["model"]][label].append(point)
    return found


def figure(found: Curves) -> plt.Figure:
    models = sorted(found)
    fig, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), 6.6), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        killed_label = "killed at the benchmark's memory limit"
        for label, points in sorted(found[model].items()):
            points = sorted(set(points))
            tokens, peaks = [p[0] for p in points], [p[1] for p in points]
            (line,) = axis.plot(tokens, peaks, marker="o", label=label)
            for length, peak, killed in points:
                if killed:
                    axis.scatter(
                        [length],
                        [peak],
                        marker="X",
                        s=120,
                        color=line.get_color(),
                        zorder=3,
                        label=killed_label,
                    )
                    killed_label = None
        targets = [(tokens, gib) for name, tokens, gib in TARGETS if name == model]
        if targets:
            axis.scatter(
                *zip(*targets, strict=True),
                marker="_",
                s=400,
                color="black",
                label="issue 22's target",
            )
        lengths = sorted(
            {p[0] for points in found[model].values() for p in points} | {t for t, _ in targets}
        )
        lengths = [tokens for tokens in lengths if tokens >= max(lengths) / 16]  # no overlaps
        axis.set_xticks(lengths, [f"{tokens // 1024}k" for tokens in lengths])
        axis.set_xlabel("prompt length (tokens)")
        axis.set_ylabel("peak resident memory (GiB)")
        axis.set_title(model)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", default=list(DEFAULT_INPUTS), help="PATH=CONDITION")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/long_context_memory.png"))
    args = parser.parse_args()
    figure(curves(args.inputs)).savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
