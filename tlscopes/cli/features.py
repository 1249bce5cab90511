"""``tlscopes features``: which input tokens drive each SAE feature active at a position."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tlscopes.cli.common import (
    UsageError,
    add_model_arguments,
    add_output_arguments,
    add_prompt_arguments,
    int_list,
    load_with_message,
    positive_int,
    refuse_existing,
)


def feature_ids(text: str) -> str | list[int]:
    """argparse type: "active" or comma-separated non-negative feature ids."""
    if text == "active":
        return text
    return int_list(
        text, "--features", "12,407", non_negative=True, accepts="'active' or comma-separated ids"
    )


def add_features_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_arguments(parser, "explain")
    parser.add_argument(
        "--sae",
        type=Path,
        required=True,
        help="the SAE's folder: Gemma Scope 2 (params.safetensors + config.json), EleutherAI "
        "sparsify (sae.safetensors + cfg.json) or one SAELens saved (sae_weights.safetensors + "
        "cfg.json)",
    )
    parser.add_argument(
        "--hook", help="the TransformerLens hook point, overriding the SAE's config"
    )
    parser.add_argument(
        "--features",
        type=feature_ids,
        default="active",
        help="'active' (default: every feature that fires at the position) or ids, e.g. 12,407",
    )
    parser.add_argument(
        "--position", type=int, default=-1, help="the explained position (default -1: the last)"
    )
    parser.add_argument(
        "--include-bos",
        action="store_true",
        help="keep BOS in the printed lists and the report (by default it is reported as a sink)",
    )
    parser.add_argument(
        "--show", type=positive_int, default=8, help="how many features to print (default 8)"
    )
    parser.add_argument(
        "--top", type=positive_int, default=5, help="tokens to print per feature (default 5)"
    )
    parser.add_argument(
        "--figure", type=Path, help="write the first feature's token map as an image (PNG, SVG)"
    )
    add_output_arguments(parser)
    add_model_arguments(parser)


def describe(result: Any, show: int, top: int) -> str:
    """The features with their activations and top tokens, then the reverse view for the
    explained token."""
    position = result.position
    lines = [
        f"== SAE features at {result.hook}, position {position} "
        f"({result.tokens[position]!r}); {len(result)} feature(s); SAE {result.sae['source']} "
        f"sha256 {result.sae['sha256'][:16]}"
    ]
    if len(result) == 0:
        lines.append("no feature fires at this position")
        return "\n".join(lines)
    sinks = result.sink_scores()
    if len(sinks) and not result.include_bos:
        ratio = sinks["ratio_to_max_other"].median()
        lines.append(f"BOS left out (a sink: {ratio:.3g}x the largest other score, median)")
    for row in range(min(show, len(result))):
        feature = int(result.features[row])
        tokens = ", ".join(
            f"{item.token!r} {item.score:.3g}"
            for item in result.top_tokens(feature, top).itertuples()
        )
        lines.append(
            f"feature {feature}: activation {float(result.activations[row]):.4g} "
            f"(pre {float(result.pre_activations[row]):.4g}) <- {tokens}"
        )
    drivers = result.top_features(position, k=top)
    shown = ", ".join(f"{int(item.feature)} {item.score:.3g}" for item in drivers.itertuples())
    lines.append(f"features the explained token drives most: {shown}")
    return "\n".join(lines)


def run_features(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.ids is None):
        raise UsageError("give the prompt as TEXT or as --ids, one of the two")
    for path in (args.out, args.save, args.figure):
        refuse_existing(path, args.overwrite)
    from tlscopes.sae.features import attribute_features
    from tlscopes.sae.formats import load_sae

    sae = load_sae(args.sae, hook=args.hook)
    model = load_with_message(args)
    import torch

    inputs = args.text if args.ids is None else torch.tensor(args.ids, dtype=torch.long)
    result = attribute_features(
        model, inputs, sae, args.features, position=args.position, include_bos=args.include_bos
    )
    print(describe(result, args.show, args.top))
    if args.out:
        result.to_html(args.out)
        print(f"wrote {args.out}")
    if args.save:
        result.save(args.save, overwrite=args.overwrite)
        print(f"wrote {args.save}")
    if args.figure and len(result):
        from tlscopes.views.feature_views import feature_token_figure

        feature_token_figure(result, int(result.features[0])).savefig(args.figure, dpi=150)
        print(f"wrote {args.figure}")
    return 0
