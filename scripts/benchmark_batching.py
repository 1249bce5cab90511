"""What `tlscopes evaluate --passages-per-batch N` gains, measured in one run.

Two parts:

* How often the shipped passages can share a pass. Passages are grouped only when their
  inputs have the same number of tokens (no padding, so each passage's numbers are those it
  gets alone), within windows of 4 N consecutive passages of the run's order. This counts,
  for each N, the attribution passes a full run over both tasks' 500 passages makes and the
  mean number of passages per pass.
* The best case: K passages of one length (the first L tokens of K LAMBADA passages, as token
  ids, so every one is usable), evaluated by every method with N = 1 and N = K in fresh
  output directories, alternated over --rounds rounds; the median seconds per passage of
  each, and their ratio. The rows of the two must agree (checked, to 1e-4 in every number).

    python scripts/benchmark_batching.py                       # SmolLM2, K = 8, L = 64
    python scripts/benchmark_batching.py --kind hooked --passages 8 --length 96 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import pandas as pd
import torch

from tlscopes.evaluation import datasets
from tlscopes.evaluation.ablation import Settings
from tlscopes.evaluation.batching import WINDOW, batch_groups
from tlscopes.evaluation.passages import UnusablePassage, prepare_passage, run_order
from tlscopes.evaluation.runner import run_evaluation
from tlscopes.methods.registry import method_names
from tlscopes.models.loading import load_model


def grouping(model, passages: dict[str, list[str]], size: int) -> tuple[int, int]:
    """(passes, passages) of a full run with `size` passages per batch (tlscopes.evaluation.batching's
    windows and keys, every method missing)."""
    lengths: list[int | None] = []
    for task, index in run_order(passages):
        try:
            lengths.append(prepare_passage(model, passages[task][index]).tokens.shape[1])
        except UnusablePassage:
            lengths.append(None)  # yielded as unusable, in no batch
    window, passes = WINDOW * size, 0
    for start in range(0, len(lengths), window):
        usable = [length for length in lengths[start : start + window] if length is not None]
        passes += len(batch_groups(usable, size))
    return passes, sum(length is not None for length in lengths)


def timed_run(model, ids, size: int, settings: Settings) -> tuple[float, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run = run_evaluation(
            model,
            {"lambada": ids},
            method_names(),
            folder,
            settings=settings,
            progress=False,
            passages_per_batch=size,
        )
        seconds = time.perf_counter() - start
    frame = run.per_passage.sort_values(["passage", "method"]).reset_index(drop=True)
    return seconds / len(ids), frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--kind", default="auto", choices=["auto", "hooked", "bridge"])
    parser.add_argument("--passages", type=int, default=8, help="K passages of one length")
    parser.add_argument("--length", type=int, default=64, help="L tokens each (target included)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=5, help="Integrated Gradients points")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, load average {os.getloadavg()}",
        flush=True,
    )
    model = load_model(args.model, kind=args.kind)

    shipped = {task: datasets.load_passages(task) for task in ("lambada", "iwslt")}
    print("\nShipped passages (both tasks, 1,000): passes a full run makes")
    print("| N | attribution passes | passages per pass |")
    print("| --- | --- | --- |")
    for size in (1, 2, 4, 8, 16):
        passes, count = grouping(model, shipped, size)
        print(f"| {size} | {passes} | {count / passes:.2f} |", flush=True)

    ids = []
    for text in shipped["lambada"]:
        tokens = model.to_tokens(text, truncate=False)[0]
        if tokens.shape[0] >= args.length:
            ids.append(tokens[: args.length].tolist())
        if len(ids) == args.passages:
            break
    settings = Settings(n_steps=args.n_steps)
    timed_run(model, ids[:2], 1, settings)  # warm-up
    times: dict[int, list[float]] = {1: [], args.passages: []}
    frames = {}
    for _ in range(args.rounds):
        for size in times:
            seconds, frames[size] = timed_run(model, ids, size, settings)
            times[size].append(seconds)
            print(f"  N={size}: {seconds:.2f} s per passage", flush=True)
    numbers = frames[1].select_dtypes("number").columns
    difference = (frames[1][numbers] - frames[args.passages][numbers]).abs().max().max()
    one, many = statistics.median(times[1]), statistics.median(times[args.passages])
    print(
        f"\n{args.passages} passages of {args.length} tokens, every method "
        f"(Integrated Gradients at {args.n_steps} points), median of {args.rounds} rounds:"
    )
    print(f"  one at a time: {one:.2f} s per passage")
    print(f"  {args.passages} per batch: {many:.2f} s per passage ({one / many:.2f}x)")
    print(f"  largest difference between their rows: {difference:.2g}")
    if not difference <= 1e-4:
        raise SystemExit("the batched rows differ from one-at-a-time rows")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
