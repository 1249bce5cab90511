"""Command line: ``tlscopes attribute``, ``demo`` and ``evaluate``.

The library never prints; this module is where results are turned into text. Argument parsing
imports neither torch nor TransformerLens, so ``tlscopes --help`` (and every subcommand's
``--help``) answers at once; the heavy imports happen when a command runs. User errors (bad
arguments, a target that splits, a file in the way) print one line and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
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


def _make_scope(name: str, target: str | None, rank: int) -> Any:
    from tlscopes.scopes import FisherScope, SemanticScope, TemperatureScope

    if name == "fisher":
        return FisherScope(rank=rank)
    if name == "temperature":
        return TemperatureScope()
    return SemanticScope(_parse_target(target))


def _parse_target(target: str | None) -> int | str | None:
    if target is None:
        return None
    return int(target) if target.isdigit() else target


def format_table(frame: Any) -> str:
    shown = frame[["position", "token", "score", "normalized"]].copy()
    shown["token"] = shown["token"].map(repr)
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def _describe(attribution: Any, top: int) -> str:
    index = 0
    position = int(attribution.positions[index])
    lines = [
        f"== {attribution.method} scope: next token after position {position} "
        f"({attribution.tokens[index][position]!r})",
        "prediction: "
        + ", ".join(
            f"{token!r} {prob:.3f}"
            for token, prob in zip(
                attribution.top_tokens[index][:5],
                attribution.top_probs[index][:5].tolist(),
                strict=True,
            )
        ),
    ]
    if attribution.target_ids is not None:
        lines.append(
            f"target: {attribution.target_tokens[index]!r} id {int(attribution.target_ids[index])} "
            f"(p = {float(attribution.target_probs[index]):.4f})"
        )
    lines.append(format_table(attribution.top(top)))
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> Any:
    """Loads the model, saying so first: a first load of a shipped model de-quantises it."""
    from tlscopes.models import load_model

    print(
        f"loading {args.model} ({args.kind}); the first load of a shipped model converts its "
        "weights once (about a minute), later loads take seconds",
        file=sys.stderr,
        flush=True,
    )
    return load_model(args.model, kind=args.kind)


def _refuse_existing(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.exists() and not overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it, or choose another path")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help=MODEL_HELP)
    parser.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "hooked", "bridge"],
        help="TransformerLens model kind (auto: HookedTransformer on TransformerLens 3.x, "
        "TransformerBridge on 4.x)",
    )


def _add_attribute_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", type=non_empty_text, help="the prompt to explain")
    parser.add_argument("--scope", default="fisher", choices=SCOPE_NAMES, help="which scope")
    parser.add_argument(
        "--target",
        help="semantic scope's target: one token (e.g. ' Paris', with its space) or a token id; "
        "default: the top prediction",
    )
    parser.add_argument(
        "--rank", type=positive_int, default=1, help="Fisher scope rank (default 1)"
    )
    parser.add_argument(
        "--position",
        type=int,
        default=-1,
        help="position whose next-token prediction is explained (default -1: the last)",
    )
    parser.add_argument(
        "--top", type=positive_int, default=10, help="how many tokens to print (default 10)"
    )
    parser.add_argument("--out", type=Path, help="write an HTML report here (opens offline)")
    parser.add_argument("--save", type=Path, help="write the result as JSON here")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out / --save files that exist"
    )
    _add_model_arguments(parser)


def _check_scope_arguments(args: argparse.Namespace) -> None:
    if args.target is not None and args.scope != "semantic":
        raise UsageError(f"--target is for --scope semantic, not --scope {args.scope}")
    if args.rank != 1 and args.scope != "fisher":
        raise UsageError(f"--rank is for --scope fisher, not --scope {args.scope}")
    if args.target == "":
        raise UsageError("--target is empty; pass one token or a token id")


def _run_attribute(args: argparse.Namespace) -> int:
    _check_scope_arguments(args)
    _refuse_existing(args.out, args.overwrite)
    _refuse_existing(args.save, args.overwrite)
    from tlscopes.attribute import attribute

    model = _load(args)
    scope = _make_scope(args.scope, args.target, args.rank)
    result = attribute(model, args.text, scope, position=args.position)
    print(_describe(result, args.top))
    if args.out:
        result.to_html(args.out)
        print(f"wrote {args.out}")
    if args.save:
        result.save(args.save, overwrite=args.overwrite)
        print(f"wrote {args.save}")
    return 0


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", type=non_empty_text, default=DEMO_PROMPT, help="the prompt")
    parser.add_argument(
        "--target", default=" Paris", help="the semantic scope's target token (default ' Paris')"
    )
    parser.add_argument(
        "--top", type=positive_int, default=8, help="how many tokens to print per scope"
    )
    parser.add_argument(
        "--out", type=Path, default=DEMO_OUTPUT, help=f"the HTML report (default {DEMO_OUTPUT})"
    )
    _add_model_arguments(parser)


def _run_demo(args: argparse.Namespace) -> int:
    from tlscopes.attribute import attribute
    from tlscopes.viz import combined_html

    if args.target == "":
        raise UsageError("--target is empty; pass one token or a token id")
    model = _load(args)
    results = []
    for name in SCOPE_NAMES:
        result = attribute(model, args.text, _make_scope(name, args.target, 1))
        print(_describe(result, args.top), end="\n\n")
        results.append(result)
    report = combined_html(results)
    Path(args.out).write_text(str(getattr(report, "html", report)), encoding="utf-8")
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB; opens offline)")
    return 0


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--hub", action="store_true", help="the full task from the Hugging Face hub (network)"
    )
    parser.add_argument("--limit", type=positive_int, help="the first N passages of each task")
    parser.add_argument(
        "--output", type=Path, required=True, help="results directory (resumed if it exists)"
    )
    parser.add_argument(
        "--fractions",
        default="0.05,0.1,0.2",
        help="ablation fractions k, comma-separated (default 0.05,0.1,0.2)",
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
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=DEFAULT_MEMORY_GB,
        help="Integrated Gradients activation budget per batch in GiB, when --ig-batch-size is "
        f"not given (default {DEFAULT_MEMORY_GB:g})",
    )
    parser.add_argument("--seed", type=int, default=0, help="the random method's seed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_model_arguments(parser)


def _check_evaluate_arguments(args: argparse.Namespace) -> None:
    for task in (t.strip() for t in args.task.split(",")):
        if task not in TASK_NAMES:
            raise UsageError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    for name in (m.strip() for m in args.methods.split(",")):
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
    if args.prompts is not None and not args.prompts.is_file():
        raise UsageError(f"--prompts {args.prompts} is not a file")


def _run_evaluate(args: argparse.Namespace) -> int:
    _check_evaluate_arguments(args)
    from tlscopes import evaluate

    print(f"loading {args.model} ({args.kind})", file=sys.stderr, flush=True)
    return evaluate.run(args)


def commands() -> dict[str, Command]:
    """Every subcommand by name (a new dict per call)."""
    return {
        "attribute": Command(
            "explain one prompt's next-token prediction with a scope",
            "Scores every token of TEXT by how strongly it moves the model's prediction at the "
            "explained position, along the scope's direction (Jacobian Scopes, arXiv "
            "2601.16407), prints the top tokens and can write an HTML report and a JSON file.",
            _add_attribute_arguments,
            _run_attribute,
        ),
        "demo": Command(
            "the three scopes on one prompt, with an offline HTML report",
            "Runs the Fisher, Temperature and Semantic scopes on one prompt (default: 'The "
            "capital of France is', target ' Paris'), prints the most influential tokens of "
            "each and writes one HTML report that opens offline.",
            _add_demo_arguments,
            _run_demo,
        ),
        "evaluate": Command(
            "AOPC faithfulness evaluation (paper section 5), resumable",
            "Ablates each method's top-scoring tokens in the shipped LAMBADA / IWSLT passages "
            "(or your own) and measures the drop in the target's log-probability (AOPC, paper "
            "eq. 9). Results are appended per passage; rerunning the same command resumes.",
            _add_evaluate_arguments,
            _run_evaluate,
        ),
    }


def build_parser(table: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    table = commands() if table is None else table
    parser = argparse.ArgumentParser(
        prog="tlscopes",
        description="Jacobian Scopes (arXiv 2601.16407): token attributions for "
        "TransformerLens models.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in table.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.description)
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    table = commands()
    parser = build_parser(table)
    args = parser.parse_args(argv)
    # Say what a slow step is doing (e.g. a first model load), without other libraries' logs.
    library_logger = logging.getLogger("tlscopes")
    if not library_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        library_logger.addHandler(handler)
        library_logger.setLevel(logging.INFO)
    try:
        return table[args.command].run(args)
    except UsageError as error:
        if args.debug:
            raise
        print(f"tlscopes {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tlscopes {args.command}: error: {message} (--debug shows where)", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
