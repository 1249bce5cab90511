"""``tlscopes generate``: generate a continuation and explain every generated token."""

from __future__ import annotations

import argparse
from typing import Any

from tlscopes.cli.common import (
    SCOPE_NAMES,
    UsageError,
    add_model_arguments,
    add_output_arguments,
    add_prompt_arguments,
    load_with_message,
    positive_int,
    refuse_existing,
)

# How many source tokens each printed step lists.
PRINTED_SOURCES = 3


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_arguments(parser, "continue")
    parser.add_argument(
        "--scope",
        default="fisher",
        choices=SCOPE_NAMES,
        help="which scope explains each step (semantic: the generated token's logit)",
    )
    parser.add_argument(
        "--rank", type=positive_int, default=1, help="Fisher scope rank (default 1)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=20,
        help="how many tokens to generate at most (default 20)",
    )
    parser.add_argument(
        "--sample", action="store_true", help="sample (seeded) instead of greedy decoding"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sampling seed (default 0)")
    parser.add_argument(
        "--temperature",
        type=positive_float,
        help="sampling temperature (default 1; with --sample)",
    )
    parser.add_argument(
        "--top-k", type=positive_int, help="sample among the k most likely tokens (with --sample)"
    )
    parser.add_argument(
        "--no-eos-stop",
        action="store_true",
        help="go on generating after the tokenizer's end-of-sequence token",
    )
    add_output_arguments(parser)
    add_model_arguments(parser)


def _check_arguments(args: argparse.Namespace) -> None:
    if (args.text is None) == (args.ids is None):
        raise UsageError("give the prompt as TEXT or as --ids, one of the two")
    if args.rank != 1 and args.scope != "fisher":
        raise UsageError(f"--rank is for --scope fisher, not --scope {args.scope}")
    if not args.sample and (args.temperature is not None or args.top_k is not None):
        raise UsageError("--temperature and --top-k shape sampling; add --sample")
    if not args.sample and args.seed != 0:
        raise UsageError("--seed seeds sampling; add --sample")


def describe_generation(result: Any) -> str:
    """The generated text, then one line per step: the token, its probability and the
    highest-scoring source tokens (position and score)."""
    lines = [
        f"== {result.method} scope while generating",
        f"prompt: {result.prompt_text[0]!r}",
        f"generated: {result.generated_text[0]!r}",
        f"{'step':>4}  {'token':<16} {'p':>6}  top sources (token@position score)",
    ]
    for step in range(int(result.generated_lengths[0])):
        sources = ", ".join(
            f"{token!r}@{position} {score:.3g}"
            for position, token, score in result.top_sources(0, step, PRINTED_SOURCES)
        )
        token = repr(result.generated_tokens[0][step])
        lines.append(f"{step:>4}  {token:<16} {float(result.probs[0, step]):>6.3f}  {sources}")
    return "\n".join(lines)


def run_generate(args: argparse.Namespace) -> int:
    _check_arguments(args)
    refuse_existing(args.out, args.overwrite)
    refuse_existing(args.save, args.overwrite)
    import torch

    from tlscopes.core.scopes import scope_from_name
    from tlscopes.generation.attribution import attribute_generation

    model = load_with_message(args)
    scope = scope_from_name(args.scope, rank=args.rank if args.scope == "fisher" else None)
    prompt = args.text if args.ids is None else torch.tensor(args.ids, dtype=torch.long)
    sampling = {}
    if args.sample:
        sampling = {"do_sample": True, "seed": args.seed, "top_k": args.top_k}
        sampling["temperature"] = 1.0 if args.temperature is None else args.temperature
    result = attribute_generation(
        model,
        prompt,
        scope,
        max_new_tokens=args.max_new_tokens,
        stop_at_eos=not args.no_eos_stop,
        **sampling,
    )
    print(describe_generation(result))
    if args.out:
        result.to_html(args.out)
        print(f"wrote {args.out}")
    if args.save:
        result.save(args.save, overwrite=args.overwrite)
        print(f"wrote {args.save}")
    return 0
