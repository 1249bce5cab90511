"""``tlscopes explore``: one offline page explaining every position of a text with each scope
(or, with ``--positions``, the positions named: a long text names them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tlscopes.cli.common import (
    SCOPE_NAMES,
    UsageError,
    add_model_arguments,
    int_list,
    load_with_message,
    non_empty_text,
    refuse_existing,
)

EXPLORER_OUTPUT = Path("explorer.html")
# tlscopes.app.explorer's limit, here so that --help imports no torch (the CLI tests check that
# the two agree).
MAX_EVERY_POSITION_TOKENS = 512


def scope_list(text: str) -> list[str]:
    """argparse type: comma-separated scope names, each known."""
    names = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [name for name in names if name not in SCOPE_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scope {unknown[0]!r}; "
            if unknown
            else f"no scope given; choose from {','.join(SCOPE_NAMES)}"
        )
    return names


def position_list(text: str) -> list[int]:
    """argparse type: comma-separated positions, negative from the end (-1: the last)."""
    return int_list(text, "--positions", "-1 or 5,9,-1", non_negative=False)


def add_explore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", type=non_empty_text, help="the text to explain at every position")
    parser.add_argument(
        "--positions",
        type=position_list,
        default=None,
        help="comma-separated positions to explain, negative from the end (default: every "
        f"position, for a text of at most {MAX_EVERY_POSITION_TOKENS} tokens; a longer one "
        "names them, e.g. --positions=-1 for the last)",
    )
    parser.add_argument(
        "--scopes",
        type=scope_list,
        default=list(SCOPE_NAMES),
        help=f"comma-separated scopes (default {','.join(SCOPE_NAMES)}); semantic explains each "
        "position's top prediction",
    )
    parser.add_argument(
        "--no-layers", action="store_true", help="leave out the layer x token map (faster)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=EXPLORER_OUTPUT,
        help=f"the HTML file (default {EXPLORER_OUTPUT}; opens offline)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_model_arguments(parser)


def run_explore(args: argparse.Namespace) -> int:
    refuse_existing(args.out, args.overwrite)
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; pass a file name such as explorer.html")
    from tlscopes.app.explorer import explore

    model = load_with_message(args)
    report = explore(
        model, args.text, args.scopes, positions=args.positions, layers=not args.no_layers
    ).save(args.out)
    size = args.out.stat().st_size
    print(f"wrote {report.path} ({size / 1024:.0f} KiB; opens offline)")
    return 0
