"""``tlscopes evaluate``: the AOPC evaluation's command line (the library never prints)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from tlscopes.cli.common import (
    DEFAULT_MEMORY_GB,
    METHOD_NAMES,
    TASK_NAMES,
    UsageError,
    add_model_arguments,
    add_passage_arguments,
    load_with_message,
    positive_int,
)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_passage_arguments(parser)
    parser.add_argument(
        "--hub", action="store_true", help="the full task from the Hugging Face hub (network)"
    )
    parser.add_argument(
        "--fractions",
        default="0.05,0.1,0.2",
        help="ablation fractions k, comma-separated (default 0.05,0.1,0.2)",
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=DEFAULT_MEMORY_GB,
        help="Integrated Gradients activation budget per batch in GiB, when --ig-batch-size is "
        f"not given (default {DEFAULT_MEMORY_GB:g})",
    )
    parser.add_argument(
        "--ig-baseline",
        choices=("zero", "pad", "bos", "eos", "mean"),
        default="zero",
        help="Integrated Gradients' starting point X': zero (default, the paper), the pad, BOS "
        "or EOS token's embedding at every position, or the mean token embedding (named in "
        "run.json when not zero)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the random method's seed")
    parser.add_argument(
        "--passages-per-batch",
        type=positive_int,
        default=1,
        help="up to N passages of one length per attribution pass (same numbers; default 1)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="DIR",
        help="merge the per-rank files of a sharded run in DIR (RANK/WORLD_SIZE set by torchrun "
        "or accelerate) into per_passage.csv, and write and print its summary (aopc.csv); loads "
        "no model. Refused while a shard lacks passages (they are named) unless --allow-partial",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="with --merge: merge shards that lack passages; run.json records the merge as "
        "partial and names what is missing",
    )
    parser.add_argument(
        "--ablation",
        choices=("zero", "filler"),
        default="zero",
        help="how an ablated token's embedding is replaced: zero (default) or filler (a pad or "
        "filler token's embedding, never BOS/EOS; named in run.json)",
    )
    parser.add_argument(
        "--filler-token",
        help="the filler token for --ablation filler, as text (one token) or an id (default: "
        "the pad token if it is neither BOS nor EOS, else ' ')",
    )
    parser.add_argument(
        "--eraser",
        action="store_true",
        help="also ERASER comprehensiveness and sufficiency (AOPC form over the same k)",
    )
    parser.add_argument(
        "--loo-limit",
        type=positive_int,
        help="leave-one-out agreement (Spearman, Kendall tau against each single-token "
        "deletion's KL) on the first N passages of each task",
    )
    parser.add_argument(
        "--protocol",
        choices=("paper", "authors"),
        default="paper",
        help="paper (default): the paper's text (Delta on the ground-truth token, BOS never "
        "ablated, n_k rounded half up over the context); authors: the authors' benchmark "
        "script (Delta on the top-1 prediction, no BOS, n_k = max(1, floor(k n_tokens)) with "
        "the target counted, Input x Gradient and Integrated Gradients on log p, IG at "
        "alpha = 0.2..1.0, --n-steps ignored)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_arguments(parser)


def check_evaluate_arguments(args: argparse.Namespace) -> None:
    for task in _comma_list(args.task):
        if task not in TASK_NAMES:
            raise UsageError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    for name in _comma_list(args.methods):
        if name not in METHOD_NAMES:
            raise UsageError(f"unknown method {name!r}; known methods: {', '.join(METHOD_NAMES)}")
    try:
        fractions = [float(k) for k in args.fractions.split(",")]
    except ValueError:
        raise UsageError(f"--fractions must be numbers, got {args.fractions!r}") from None
    if not all(0 < k <= 1 for k in fractions):
        raise UsageError(f"--fractions must lie in (0, 1], got {args.fractions}")
    if args.memory_gb <= 0:
        raise UsageError(f"--memory-gb must be positive, got {args.memory_gb}")
    if args.filler_token is not None and args.ablation != "filler":
        raise UsageError("--filler-token needs --ablation filler")
    if args.prompts is not None and len(_comma_list(args.task)) != 1:
        raise UsageError("--prompts gives the passages of one task; pass a single --task")
    if args.prompts is not None and not args.prompts.is_file():
        raise UsageError(f"--prompts {args.prompts} is not a file")


def run_evaluate(args: argparse.Namespace) -> int:
    if args.merge is not None:
        return _merge(args.merge, args.allow_partial)
    if args.allow_partial:
        raise UsageError("--allow-partial goes with --merge DIR")
    if args.output is None:
        raise UsageError("--output is required (or --merge DIR)")
    check_evaluate_arguments(args)
    from tlscopes.evaluation import datasets
    from tlscopes.evaluation.ablation import Settings
    from tlscopes.evaluation.run_directory import RunDirectoryError
    from tlscopes.evaluation.runner import RunLock
    from tlscopes.evaluation.summaries import describe_run, format_table, summarize, target_aligned

    tasks = _comma_list(args.task)
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
        protocol=args.protocol,
        ablation=args.ablation,
        eraser=args.eraser,
        loo_limit=args.loo_limit or 0,
        ig_baseline=args.ig_baseline,
    )
    # The directory's lock first: a second run on it is refused at once, not after the load.
    try:
        with RunLock(args.output) as lock:
            result = _run(args, passages, settings, lock)
    except RunDirectoryError as error:  # locked, unreadable, full or not writable
        raise UsageError(str(error)) from error
    print(describe_run(result, args.output))
    print(format_table(result.summary))
    if "prediction_id" in result.per_passage.columns:
        aligned = target_aligned(result.per_passage)
        passages = aligned.drop_duplicates(["task", "passage"])
        print(
            f"\ntarget-aligned subset (top-1 prediction = ground truth, {len(passages)} passages):"
        )
        print(format_table(summarize(aligned, settings.fractions)))
    return 0


def _run(args: argparse.Namespace, passages: dict, settings: Any, lock: Any) -> Any:
    """Loads the model and runs the evaluation under `lock` (held by the caller)."""
    from tlscopes.evaluation.runner import run_evaluation

    model = load_with_message(args)
    if args.filler_token is not None:
        from tlscopes.evaluation.faithfulness import filler_token_id

        token = int(args.filler_token) if args.filler_token.isdigit() else args.filler_token
        try:
            settings = replace(settings, filler_token_id=filler_token_id(model, token))
        except ValueError as error:
            raise UsageError(str(error)) from error
    started = _start_distributed()
    try:
        return run_evaluation(
            model,
            passages,
            _comma_list(args.methods),
            args.output,
            settings=settings,
            progress=not args.no_progress,
            passages_per_batch=args.passages_per_batch,
            lock=lock,
        )
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _start_distributed() -> bool:
    """Joins the launcher's process group (gloo: the ranks only wait for each other before
    rank 0 merges) when torchrun or accelerate started several processes."""
    import os

    if int(os.environ.get("WORLD_SIZE", 1)) < 2 or "MASTER_ADDR" not in os.environ:
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("gloo")
    return True


def _merge(directory: Path, allow_partial: bool) -> int:
    from tlscopes.evaluation.run_directory import (
        PER_PASSAGE,
        RunDirectoryError,
        read_finished,
        read_json,
    )
    from tlscopes.evaluation.runner import write_summaries
    from tlscopes.evaluation.sharding import describe_missing, merge_shards
    from tlscopes.evaluation.summaries import format_table

    try:
        missing = merge_shards(directory, allow_partial=allow_partial)
    except RunDirectoryError as error:
        raise UsageError(str(error)) from error
    frame = read_finished(directory / PER_PASSAGE)
    if frame is None:
        raise UsageError(f"{directory} has no finished passages to summarise")
    fractions = (read_json(directory / "run.json") or {}).get("fractions", [0.05, 0.1, 0.2])
    print(f"merged {directory / PER_PASSAGE}")
    if missing:
        print(f"partial merge (recorded in run.json): {describe_missing(missing)}")
    # Ranks write no summary: without this, an aopc.csv from before the run was sharded (a
    # one-process start, resumed on several) would be left describing fewer passages.
    print(format_table(write_summaries(directory, frame, fractions)))
    return 0


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
