"""What every subcommand shares: constants, argument types, errors, the model load."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_PROMPT = "The capital of France is"
DEMO_OUTPUT = Path("tlscopes_demo.html")
SCOPE_NAMES = ("fisher", "temperature", "semantic")
# Kept here, not imported, so that --help needs no torch; tests check they match the library.
METHOD_NAMES = (
    "fisher",
    "temperature",
    "semantic",
    "input_x_gradient",
    "integrated_gradients",
    "saliency",
    "random",
)
TASK_NAMES = ("lambada", "iwslt")
DEFAULT_N_STEPS = 100
DEFAULT_MEMORY_GB = 2.0
MODEL_HELP = (
    "smollm2-135m (default, shipped offline), gemma3-270m (shipped offline), a local Hugging "
    "Face model directory, or a TransformerLens model name (downloads from the hub)"
)
EXIT_USER_ERROR = 2

# Errors that mean the input was wrong, not the program: one line, no traceback.
USER_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


class UsageError(Exception):
    """An argument that is wrong on its face, found before any model is loaded."""


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, a longer description, its arguments and its runner."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_empty_text(text: str) -> str:
    """argparse type: a prompt with at least one non-space character."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the text is empty; pass a prompt to explain")
    return text


def load_with_message(args: argparse.Namespace) -> Any:
    """Loads the model, saying so first: a first load of a shipped model de-quantises it."""
    from tlscopes.models.loading import load_model
    from tlscopes.models.packaged import PACKAGED_MODELS

    first_load = (
        "; its first load converts the shipped weights once (about a minute), later loads take "
        "seconds"
        if args.model in PACKAGED_MODELS
        else ""
    )
    print(f"loading {args.model} ({args.kind}){first_load}", file=sys.stderr, flush=True)
    return load_model(args.model, kind=args.kind)


def refuse_existing(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.exists() and not overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it, or choose another path")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help=MODEL_HELP)
    parser.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "hooked", "bridge"],
        help="TransformerLens model kind (auto: HookedTransformer on TransformerLens 3.x, "
        "TransformerBridge on 4.x)",
    )


def int_list(
    text: str,
    flag: str,
    example: str,
    non_negative: bool,
    accepts: str = "comma-separated integers",
) -> list[int]:
    """Comma-separated integers for `flag`, or an argparse error that names the flag, what it
    `accepts` and an `example`; `non_negative` refuses values below zero (positions may count
    from the end)."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{flag} takes {accepts}, e.g. {example}; got {text!r}")
    if non_negative and min(values) < 0:
        raise argparse.ArgumentTypeError(f"{flag} takes non-negative ids, got {text!r}")
    return values


def token_ids(text: str) -> list[int]:
    """argparse type: comma-separated non-negative token ids."""
    return int_list(text, "--ids", "1,17,5", non_negative=True)


def add_prompt_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """The prompt as TEXT, or as --ids (one of the two; the command checks which)."""
    parser.add_argument(
        "text", nargs="?", type=non_empty_text, help=f"the prompt to {verb} (or give --ids)"
    )
    parser.add_argument(
        "--ids",
        type=token_ids,
        help="the prompt as comma-separated token ids instead of text, used as given (no BOS "
        "added); the way in for a model without a tokenizer",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--out (an HTML report), --save (JSON) and --overwrite."""
    parser.add_argument("--out", type=Path, help="write an HTML report here (opens offline)")
    parser.add_argument("--save", type=Path, help="write the result as JSON here")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out / --save files that exist"
    )


def add_passage_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `tlscopes evaluate` and `tlscopes sanity` share: which passages and methods
    run, where the resumable results go, and Integrated Gradients' path."""
    parser.add_argument(
        "--task",
        default="lambada",
        help=f"{', '.join(TASK_NAMES)}, or both comma-separated (default lambada)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help=f"comma-separated method names (default all: {','.join(METHOD_NAMES)})",
    )
    parser.add_argument(
        "--prompts", type=Path, help='a JSON list of {"text": ...} passages (one task only)'
    )
    parser.add_argument("--limit", type=positive_int, help="the first N passages of each task")
    parser.add_argument(
        "--output", type=Path, help="results directory (resumed if it exists; required)"
    )
    parser.add_argument(
        "--n-steps",
        type=positive_int,
        default=DEFAULT_N_STEPS,
        help=f"Integrated Gradients path points (default {DEFAULT_N_STEPS})",
    )
    parser.add_argument(
        "--ig-batch-size", type=positive_int, help="Integrated Gradients path points per batch"
    )
