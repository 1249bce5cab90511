"""Command line: `tlscopes attribute`, `tlscopes demo` and the subcommands other modules add.

The library never prints; this module is where results are turned into text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

DEMO_PROMPT = "The capital of France is"
SCOPE_NAMES = ("fisher", "temperature", "semantic")

# A subcommand: (add its arguments, run it).
Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _make_scope(name: str, target: str | None, rank: int):
    from tlscopes.scopes import FisherScope, SemanticScope, TemperatureScope

    if name == "fisher":
        return FisherScope(rank=rank)
    if name == "temperature":
        return TemperatureScope()
    if name == "semantic":
        return SemanticScope(_parse_target(target))
    raise SystemExit(f"unknown scope {name!r}; choose from {', '.join(SCOPE_NAMES)}")


def _parse_target(target: str | None) -> int | str | None:
    if target is None:
        return None
    return int(target) if target.isdigit() else target


def format_table(frame: pd.DataFrame) -> str:
    shown = frame[["position", "token", "score", "normalized"]].copy()
    shown["token"] = shown["token"].map(repr)
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def _describe(attribution, top: int) -> str:
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


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="default model, HF dir or TL name")
    parser.add_argument("--kind", default="auto", choices=["auto", "hooked", "bridge"])


def _add_attribute_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help="the prompt")
    parser.add_argument("--scope", default="fisher", choices=SCOPE_NAMES)
    parser.add_argument("--target", help="semantic target: one token or a token id (default: top)")
    parser.add_argument("--rank", type=int, default=1, help="Fisher rank")
    parser.add_argument("--position", type=int, default=-1, help="explained position")
    parser.add_argument("--top", type=int, default=10, help="how many tokens to print")
    parser.add_argument("--out", type=Path, help="write an HTML report here")
    parser.add_argument("--save", type=Path, help="write the result as JSON here")
    _add_model_arguments(parser)


def _run_attribute(args: argparse.Namespace) -> int:
    from tlscopes.attribute import attribute
    from tlscopes.models import load_model

    model = load_model(args.model, kind=args.kind)
    scope = _make_scope(args.scope, args.target, args.rank)
    result = attribute(model, args.text, scope, position=args.position)
    print(_describe(result, args.top))
    if args.out:
        result.to_html(args.out)
        print(f"wrote {args.out}")
    if args.save:
        result.save(args.save)
        print(f"wrote {args.save}")
    return 0


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=DEMO_PROMPT)
    parser.add_argument("--target", default=" Paris", help="semantic target")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("tlscopes_demo.html"))
    _add_model_arguments(parser)


def _run_demo(args: argparse.Namespace) -> int:
    from tlscopes.attribute import attribute
    from tlscopes.models import load_model
    from tlscopes.viz import combined_html

    model = load_model(args.model, kind=args.kind)
    results = []
    for name in SCOPE_NAMES:
        result = attribute(model, args.text, _make_scope(name, args.target, 1))
        print(_describe(result, args.top), end="\n\n")
        results.append(result)
    Path(args.out).write_text(combined_html(results), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


BASE_COMMANDS: dict[str, Command] = {
    "attribute": (_add_attribute_arguments, _run_attribute),
    "demo": (_add_demo_arguments, _run_demo),
}
# Commands that other modules own; each exposes `COMMAND = (add_arguments, run)`.
OPTIONAL_COMMANDS = {"evaluate": "tlscopes.evaluate"}


def available_commands() -> dict[str, Command]:
    """The base commands plus those of the optional modules that are present (a new dict)."""
    import importlib

    commands = dict(BASE_COMMANDS)
    for name, module_name in OPTIONAL_COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        if name in commands:
            raise RuntimeError(f"command {name!r} is defined twice")
        commands[name] = module.COMMAND
    return commands


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    commands = available_commands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="tlscopes", description="Jacobian Scopes for TransformerLens models"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _) in commands.items():
        add_arguments(subparsers.add_parser(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    commands = available_commands()
    args = build_parser(commands).parse_args(argv)
    _, run = commands[args.command]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
