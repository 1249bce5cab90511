"""``tlscopes attribute`` and ``tlscopes demo``: explain one prompt and print the result."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tlscopes.cli.common import (
    DEMO_OUTPUT,
    DEMO_PROMPT,
    SCOPE_NAMES,
    UsageError,
    add_model_arguments,
    add_output_arguments,
    add_prompt_arguments,
    load_with_message,
    non_empty_text,
    positive_int,
    refuse_existing,
)


def _make_scope(name: str, target: str | None, rank: int) -> Any:
    from tlscopes.core.scopes import scope_from_name

    if name == "fisher":
        return scope_from_name(name, rank=rank)
    if name == "semantic":
        return scope_from_name(name, target=_parse_target(target))
    return scope_from_name(name)


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


def add_attribute_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_arguments(parser, "explain")
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
    add_output_arguments(parser)
    add_model_arguments(parser)


def _check_scope_arguments(args: argparse.Namespace) -> None:
    if (args.text is None) == (args.ids is None):
        raise UsageError("give the prompt as TEXT or as --ids, one of the two")
    if args.target is not None and args.scope != "semantic":
        raise UsageError(f"--target is for --scope semantic, not --scope {args.scope}")
    if args.rank != 1 and args.scope != "fisher":
        raise UsageError(f"--rank is for --scope fisher, not --scope {args.scope}")
    if args.target == "":
        raise UsageError("--target is empty; pass one token or a token id")


def run_attribute(args: argparse.Namespace) -> int:
    _check_scope_arguments(args)
    refuse_existing(args.out, args.overwrite)
    refuse_existing(args.save, args.overwrite)
    from tlscopes.core.engine import attribute

    model = load_with_message(args)
    scope = _make_scope(args.scope, args.target, args.rank)
    import torch

    inputs = args.text if args.ids is None else torch.tensor(args.ids, dtype=torch.long)
    result = attribute(model, inputs, scope, position=args.position)
    print(_describe(result, args.top))
    if args.out:
        result.to_html(args.out)
        print(f"wrote {args.out}")
    if args.save:
        result.save(args.save, overwrite=args.overwrite)
        print(f"wrote {args.save}")
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_model_arguments(parser)


def run_demo(args: argparse.Namespace) -> int:
    from tlscopes.core.engine import attribute
    from tlscopes.views.html import combined_html

    if args.target == "":
        raise UsageError("--target is empty; pass one token or a token id")
    model = load_with_message(args)
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
