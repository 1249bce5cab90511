"""Command line: ``tlscopes attribute``, ``demo``, ``evaluate``, ``sanity``, ``explore`` and
``serve``.

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
from collections.abc import Sequence

from tlscopes.cli.common import (
    DEFAULT_MEMORY_GB,
    DEFAULT_N_STEPS,
    EXIT_USER_ERROR,
    METHOD_NAMES,
    TASK_NAMES,
    USER_ERRORS,
    Command,
    UsageError,
    non_empty_text,
    positive_int,
)
from tlscopes.cli.evaluation import add_evaluate_arguments, run_evaluate
from tlscopes.cli.explain import (
    add_attribute_arguments,
    add_demo_arguments,
    run_attribute,
    run_demo,
)
from tlscopes.cli.explore import (
    MAX_EVERY_POSITION_TOKENS,
    add_explore_arguments,
    run_explore,
)
from tlscopes.cli.features import add_features_arguments, run_features
from tlscopes.cli.generate import add_generate_arguments, run_generate
from tlscopes.cli.sanity import add_sanity_arguments, run_sanity_command
from tlscopes.cli.serve import add_serve_arguments, run_serve

__all__ = [
    "DEFAULT_MEMORY_GB",
    "DEFAULT_N_STEPS",
    "EXIT_USER_ERROR",
    "METHOD_NAMES",
    "TASK_NAMES",
    "Command",
    "UsageError",
    "build_parser",
    "commands",
    "main",
    "non_empty_text",
    "positive_int",
]


def commands() -> dict[str, Command]:
    """Every subcommand by name (a new dict per call)."""
    return {
        "attribute": Command(
            "explain one prompt's next-token prediction with a scope",
            "Scores every token of TEXT by how strongly it moves the model's prediction at the "
            "explained position, along the scope's direction (Jacobian Scopes, arXiv "
            "2601.16407), prints the top tokens and can write an HTML report and a JSON file.",
            add_attribute_arguments,
            run_attribute,
        ),
        "demo": Command(
            "the three scopes on one prompt, with an offline HTML report",
            "Runs the Fisher, Temperature and Semantic scopes on one prompt (default: 'The "
            "capital of France is', target ' Paris'), prints the most influential tokens of "
            "each and writes one HTML report that opens offline.",
            add_demo_arguments,
            run_demo,
        ),
        "evaluate": Command(
            "AOPC faithfulness evaluation (paper section 5), resumable",
            "Ablates each method's top-scoring tokens in the shipped LAMBADA / IWSLT passages "
            "(or your own) and measures the drop in the target's log-probability (AOPC, paper "
            "eq. 9). Results are appended per passage; rerunning the same command resumes.",
            add_evaluate_arguments,
            run_evaluate,
        ),
        "sanity": Command(
            "model-parameter randomisation check of every method (Adebayo et al. 2018)",
            "Re-initialises the model's blocks (cascading from the top, and each alone), "
            "explains the LAMBADA / IWSLT passages (or your own) again, and measures how much "
            "each method's map changed (Spearman rho, top-10% Jaccard) beside how much the "
            "prediction changed. Results are appended per passage; rerunning resumes.",
            add_sanity_arguments,
            run_sanity_command,
        ),
        "features": Command(
            "which input tokens drive each SAE feature active at a position",
            "Loads an SAE (--sae: a Gemma Scope 2, EleutherAI sparsify or SAELens folder), finds "
            "the features that fire at the explained position (or --features ids) and scores "
            "every input token for each of them, ||d pre_f / d x_t||, from one forward pass; "
            "prints each feature's top tokens and the features the explained token drives, and "
            "can write an HTML report, a JSON file and a figure.",
            add_features_arguments,
            run_features,
        ),
        "generate": Command(
            "generate a continuation and explain every generated token with a scope",
            "Continues TEXT (greedy, or seeded sampling with --sample) and explains the "
            "prediction of each generated token over every token before it, from one forward "
            "pass over the whole text; prints each step's token, its probability and its top "
            "source tokens, and can write an HTML report and a JSON file.",
            add_generate_arguments,
            run_generate,
        ),
        "explore": Command(
            "one offline page explaining every position of a text with each scope",
            "Explains the prediction at every position of TEXT with the Fisher, Temperature and "
            "Semantic scopes (one forward pass per scope) and writes one HTML file that opens "
            "offline: click a token to see what explains the prediction there, switch scopes, "
            "colour scales and colormaps, prediction bars, a time-series view for number "
            "series, the layer x token map, and sink masking. A text over "
            f"{MAX_EVERY_POSITION_TOKENS} tokens names the positions to explain (--positions=-1: "
            "the last).",
            add_explore_arguments,
            run_explore,
        ),
        "serve": Command(
            "a local web app: type a text, pick a scope, see the attribution",
            "Serves a page on HOST:PORT (default 127.0.0.1:7860) where you type a text or a "
            "comma-separated number series, pick the scope, target, position and model, and see "
            "the coloured tokens, the prediction and the time-series view, open the explorer "
            "for every position, with --sae the SAE features at a position, and download JSON "
            "and HTML. One model serves every request.",
            add_serve_arguments,
            run_serve,
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
