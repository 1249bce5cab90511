"""``tlscopes sanity``: model-parameter randomisation (Adebayo et al. 2018), resumable."""

from __future__ import annotations

import argparse

from tlscopes.cli.common import (
    METHOD_NAMES,
    TASK_NAMES,
    UsageError,
    add_model_arguments,
    add_passage_arguments,
    load_with_message,
)
from tlscopes.cli.evaluation import _comma_list

MODES = ("cascade", "independent")
FIGURE = "rho_vs_blocks.png"


def add_sanity_arguments(parser: argparse.ArgumentParser) -> None:
    add_passage_arguments(parser)
    parser.add_argument(
        "--modes",
        default="cascade,independent",
        help="cascade (the top 1, 2, 4, ... blocks, then all) and/or independent (each block "
        "alone), comma-separated (default both)",
    )
    parser.add_argument(
        "--depths",
        help="the cascade's numbers of top blocks, comma-separated (default 1,2,4,...,all)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the re-initialisation's and the random method's seed"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_arguments(parser)


def check_sanity_arguments(args: argparse.Namespace) -> None:
    if args.output is None:
        raise UsageError("--output is required")
    for task in _comma_list(args.task):
        if task not in TASK_NAMES:
            raise UsageError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    for name in _comma_list(args.methods):
        if name not in METHOD_NAMES:
            raise UsageError(f"unknown method {name!r}; known methods: {', '.join(METHOD_NAMES)}")
    modes = _comma_list(args.modes)
    if not modes or any(mode not in MODES for mode in modes):
        raise UsageError(f"--modes takes {' and/or '.join(MODES)}, got {args.modes!r}")
    if args.depths is not None:
        try:
            depths = [int(depth) for depth in _comma_list(args.depths)]
        except ValueError:
            raise UsageError(f"--depths must be integers, got {args.depths!r}") from None
        if not depths or min(depths) < 0:
            raise UsageError(f"--depths must be non-negative integers, got {args.depths!r}")
    if args.prompts is not None and len(_comma_list(args.task)) != 1:
        raise UsageError("--prompts gives the passages of one task; pass a single --task")
    if args.prompts is not None and not args.prompts.is_file():
        raise UsageError(f"--prompts {args.prompts} is not a file")


def run_sanity_command(args: argparse.Namespace) -> int:
    check_sanity_arguments(args)
    from tlscopes.evaluation import datasets
    from tlscopes.evaluation.run_directory import RunDirectoryError
    from tlscopes.evaluation.sanity import SanitySettings, plot_sanity, run_sanity

    passages = {
        task: datasets.load_passages(task, args.prompts, args.limit)
        for task in _comma_list(args.task)
    }
    depths = None if args.depths is None else tuple(int(d) for d in _comma_list(args.depths))
    settings = SanitySettings(
        modes=tuple(_comma_list(args.modes)),
        depths=depths,
        seed=args.seed,
        n_steps=args.n_steps,
        ig_batch_size=args.ig_batch_size,
    )
    model = load_with_message(args)
    try:
        result = run_sanity(
            model,
            passages,
            _comma_list(args.methods),
            args.output,
            settings=settings,
            progress=not args.no_progress,
        )
    except RunDirectoryError as error:
        raise UsageError(str(error)) from error
    n_passages = len(result.per_passage.drop_duplicates(["task", "passage"]))
    print(
        f"{args.output}: {n_passages} passages ({result.computed} computed now, "
        f"{result.already_done} already done, {len(result.skipped)} skipped)"
    )
    if not result.summary.empty:
        columns = ["task", "method", "mode", "blocks", "n", "spearman_mean", "jaccard_mean"]
        columns += ["logit_spearman_mean", "top1_same_share"]
        print(result.summary[columns].to_string(index=False, float_format="{:.3f}".format))
        title = f"{getattr(model.cfg, 'model_name', '')}: {n_passages} passages"
        figure = plot_sanity(result.summary, title)
        figure.savefig(args.output / FIGURE, dpi=120)
        print(f"figure: {args.output / FIGURE}")
    return 0
