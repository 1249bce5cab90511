"""Side-by-side speed benchmark of tlscopes on the default model (issue: performance).

Everything is measured in one run, as medians over repeats after a warm-up, and reported as
ratios next to their references:

* each scope's attribution time over a plain no-grad forward pass, at 128 and 1,024 tokens,
  next to the plain floor (one forward pass to y and one input-only backward pass written
  directly in PyTorch, through the model's own attention);
* Fisher directions, matrix-free against forming F and taking eigh, at the default model's
  shapes and at LLaMA-3.2-1B shapes (random W_U, a peaked distribution);
* a translation matrix of 32 target rows, batched against one attribution per row;
* Integrated Gradients with 32 path points, batched against sequential;
* Input x Gradient and Integrated Gradients through captum and inseq (optional; installed
  with `pip install captum` and `pip install --no-deps inseq rich treescope "typeguard<=2.13.3"`)
  on the same weights and input, against tlscopes, at 128 tokens (and Input x Gradient also at
  1,024 tokens);
* peak resident memory of attribution over 2,048 tokens (in a fresh subprocess).

Usage: python scripts/benchmark.py [--repeats 7] [--quick] [--kind auto|hooked|bridge]
                                   [--model smollm2-135m|gemma3-270m]
                                   [--sections scopes,fisher,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import tlscopes as ts
from tlscopes.models.fused_attention import fused_attention

warnings.filterwarnings("ignore")
backward = importlib.import_module("tlscopes.core.backward")

TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening, counting the steps "
    "as his father had taught him, and when the lamp was lit he wrote the weather, the ships "
    "and the birds into a leather book that nobody else would ever read. "
)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in rounds (one call of each per round).

    This machine's speed drifts by up to 2x over minutes (a shared host); running the things
    compared in alternation keeps a drift from landing on one side of a ratio.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def tokens_of_length(model: Any, length: int) -> torch.Tensor:
    ids = model.to_tokens(TEXT * (length // 40 + 2))[:, :length]
    assert ids.shape[1] == length
    return ids


def plain_floor(model: Any, tokens: torch.Tensor) -> Callable[[], None]:
    """The floor of any attribution, written plainly in PyTorch without tlscopes.

    One forward pass to y (the final norm's output) at the last position and one input-only
    backward pass of a fixed direction, through the model's own attention (TransformerLens'
    for a HookedTransformer; the wrapped Hugging Face model's for a bridge, which is what the
    bridge runs), parameter gradients off. What a scope costs without the engine's
    economies (stopping at the unembedding is kept: the floor has no unembedding at all).
    """
    if ts.models.is_bridge(model):
        hf_model = model.original_model
        embed = hf_model.get_input_embeddings()

        def final_state(x: torch.Tensor) -> torch.Tensor:
            return hf_model.model(inputs_embeds=x).last_hidden_state[:, -1]

    else:
        if model.cfg.positional_embedding_type != "rotary":
            raise ValueError("plain_floor is written for rotary models such as the default one")
        embed = model.embed
        n_layers = model.cfg.n_layers

        def final_state(x: torch.Tensor) -> torch.Tensor:
            residual = model(x, start_at_layer=0, stop_at_layer=n_layers)
            return model.ln_final(residual)[:, -1]

    def run() -> None:
        with ts.core.hooks.frozen_parameters(model):
            x = embed(tokens).detach().requires_grad_(True)
            y = final_state(x)
            direction = (y / y.norm()).detach()
            torch.autograd.grad(y, x, direction)

    return run


def bench_scopes(model: Any, lengths: list[int], repeats: int) -> list[dict]:
    rows = []
    scopes = {
        "semantic": ts.SemanticScope(" the"),
        "temperature": ts.TemperatureScope(),
        "fisher": ts.FisherScope(),
        "fisher_rank4": ts.FisherScope(rank=4),
    }
    three = list(scopes.values())[:3]
    for length in lengths:
        tokens = tokens_of_length(model, length)

        def forward(tokens: torch.Tensor = tokens) -> None:
            with torch.no_grad():
                model(tokens)

        def forward_fused(tokens: torch.Tensor = tokens) -> None:
            with torch.no_grad(), fused_attention(model):
                model(tokens)

        # "forward" is the target's reference, TransformerLens' own forward pass. tlscopes runs
        # its passes with fused attention (HookedTransformer), which also speeds a plain forward
        # pass up: the ratio to that one is the overhead of attribution itself.
        fns: dict[str, Callable[[], Any]] = {
            "forward": forward,
            "forward_fused": forward_fused,
            "plain_floor": plain_floor(model, tokens),
        }
        for name, scope in scopes.items():
            fns[name] = lambda scope=scope, tokens=tokens: ts.attribute(model, tokens, scope)
        # The default pulls Fisher's 4 directions back in plain passes at this length or in one
        # vmapped pass (tlscopes.core.backward.resolve_directions_per_pass); the other way, for comparison.
        per_pass = backward.resolve_directions_per_pass(length)
        other = 4 if per_pass < 4 else 1
        fns[f"fisher_rank4_per_pass_{other}"] = lambda tokens=tokens, other=other: ts.attribute(
            model, tokens, ts.FisherScope(rank=4), directions_per_pass=other
        )
        fns["all_three_one_pass"] = lambda tokens=tokens: ts.attribute_many(model, tokens, three)
        seconds = interleaved_medians(fns, repeats)
        base = seconds.pop("forward")
        fused = seconds.pop("forward_fused")
        row: dict[str, Any] = {
            "tokens": length,
            "forward_s": base,
            "forward_fused_s": fused,
            "default_directions_per_pass": per_pass,
        }
        floor = seconds["plain_floor"]
        for name, value in seconds.items():
            row[f"{name}_s"] = value
            row[f"{name}_ratio"] = value / base
            row[f"{name}_ratio_to_fused_forward"] = value / fused
            row[f"{name}_over_floor"] = value / floor
        # The targets, judged against the floor measured in this same run: each scope within
        # 1.05x of it, and Fisher rank 1 within the floor plus a tenth of a forward pass.
        row["semantic_temperature_within_1.05_floor"] = all(
            seconds[name] <= 1.05 * floor for name in ("semantic", "temperature")
        )
        row["fisher_excess_over_floor_in_forwards"] = (seconds["fisher"] - floor) / base
        row["fisher_within_floor_plus_0.1_forward"] = seconds["fisher"] <= floor + 0.1 * base
        rows.append(row)
    return rows


def bench_fisher(repeats: int) -> list[dict]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for label, d_model, d_vocab in (("SmolLM2-135M", 576, 49152), ("LLaMA-3.2-1B", 2048, 128256)):
        W_U = torch.randn(d_model, d_vocab, generator=generator) * 0.02
        logits = torch.randn(d_vocab, generator=generator) * 4.0
        logits[:5] += 12.0  # a peaked distribution, as at most real positions
        probs = torch.softmax(logits, dim=0)
        fast = median_time(lambda: ts.fisher_directions(W_U, probs), repeats)
        formed = median_time(
            lambda: importlib.import_module("tlscopes.fisher.directions").fisher_directions_exact(
                W_U, probs
            ),
            max(1, repeats // 3),
        )
        _, u_fast = ts.fisher_directions(W_U, probs)
        _, u_exact = importlib.import_module("tlscopes.fisher.directions").fisher_directions_exact(
            W_U, probs
        )
        cosine = float((u_fast[:, 0].double() @ u_exact[:, 0].double()).abs())
        rows.append(
            {
                "shapes": f"{label} (d {d_model}, V {d_vocab})",
                "entropy_nats": float(-(probs * probs.clamp_min(1e-30).log()).sum()),
                "matrix_free_s": fast,
                "formed_eigh_s": formed,
                "speedup": formed / fast,
                "abs_cos": cosine,
            }
        )
    return rows


def bench_translation(model: Any, repeats: int) -> dict | None:
    try:
        matrix = importlib.import_module("tlscopes.core.matrix")
    except ModuleNotFoundError:
        return None
    text = (
        "German: Die Katze sitzt auf der Matte und schaut aus dem Fenster, während draußen "
        "der Regen fällt. English: The cat sits on the mat and looks out of the window while "
        "the rain falls outside, and the whole house is quiet."
    )
    length = model.to_tokens(text).shape[1]
    positions = list(range(length - 32, length))
    scope = ts.FisherScope()
    seconds = interleaved_medians(
        {
            "batched": lambda: matrix.attribution_matrix(model, text, scope, positions),
            "all_32_one_pass": lambda: matrix.attribution_matrix(
                model, text, scope, positions, directions_per_pass=32
            ),
            "row_by_row": lambda: [ts.attribute(model, text, scope, position=p) for p in positions],
        },
        max(1, repeats // 2),
    )
    return {
        "rows": 32,
        "tokens": length,
        "default_directions_per_pass": backward.resolve_directions_per_pass(length),
        **{f"{name}_s": value for name, value in seconds.items()},
        "speedup": seconds["row_by_row"] / seconds["batched"],
        "speedup_all_32_one_pass": seconds["row_by_row"] / seconds["all_32_one_pass"],
    }


def bench_integrated_gradients(model: Any, repeats: int) -> dict | None:
    try:
        baselines = importlib.import_module("tlscopes.methods.baselines")
    except ModuleNotFoundError:
        return None
    tokens = tokens_of_length(model, 128)
    seconds = interleaved_medians(
        {
            "batched": lambda: baselines.integrated_gradients(
                model, tokens, target=" the", n_steps=32
            ),
            "sequential": lambda: baselines.integrated_gradients(
                model, tokens, target=" the", n_steps=32, batch_size=1
            ),
        },
        max(1, repeats // 2),
    )
    return {
        "n_steps": 32,
        "tokens": 128,
        "batch_size": baselines.path_batch_size(model, 128, baselines.DEFAULT_MEMORY_BUDGET),
        "batched_s": seconds["batched"],
        "sequential_s": seconds["sequential"],
        "speedup": seconds["sequential"] / seconds["batched"],
    }


def bench_peers(
    bridge: Any, repeats: int, hooked: Any = None, length: int = 128, with_ig: bool = True
) -> list[dict]:
    """Input x Gradient and Integrated Gradients (32 points) through tlscopes, captum and inseq.

    The peers run on the Hugging Face model that the bridge wraps (the same weights; captum
    through a function of the input embeddings, inseq through its own model wrapper), on the
    same `length` tokens and target. One row per implementation; peer rows also give each
    tlscopes model kind's time over theirs (below 1: tlscopes is faster). `with_ig=False` times
    Input x Gradient only (Integrated Gradients at 1,024 tokens would take minutes per peer).
    """
    baselines = importlib.import_module("tlscopes.methods.baselines")
    hf_model = bridge.original_model
    tokens = tokens_of_length(bridge, length)
    target = ts.core.scopes.resolve_token(bridge, " the")
    ours: dict[str, tuple[float, float | None]] = {}
    for label, model in (("bridge", bridge), ("hooked", hooked)):
        if model is None:
            continue
        ours[label] = (
            median_time(lambda: baselines.input_x_gradient(model, tokens, target=target), repeats),
            median_time(
                lambda: baselines.integrated_gradients(model, tokens, target=target, n_steps=32),
                repeats,
            )
            if with_ig
            else None,
        )
    peers: dict[str, tuple[float, float | None] | str] = {}
    embed = hf_model.get_input_embeddings()

    def logit_of(embeds: torch.Tensor) -> torch.Tensor:
        return hf_model(inputs_embeds=embeds).logits[:, -1, target]

    try:
        from captum.attr import InputXGradient, IntegratedGradients
    except ImportError:
        peers["captum"] = "not installed"
    else:
        with torch.no_grad():
            embeds = embed(tokens)
        ixg = InputXGradient(logit_of)
        ig = IntegratedGradients(logit_of)
        peers["captum"] = (
            median_time(lambda: ixg.attribute(embeds.clone()), repeats),
            median_time(
                lambda: ig.attribute(
                    embeds.clone(), baselines=embeds * 0, n_steps=32, internal_batch_size=32
                ),
                repeats,
            )
            if with_ig
            else None,
        )
    try:
        import inseq
    except ImportError:
        peers["inseq"] = "not installed"
    else:
        text = bridge.to_string(tokens[0, 1:])
        full = text + bridge.to_single_str_token(target)

        def inseq_seconds(method: str, **kwargs: Any) -> float:
            wrapped = inseq.load_model(hf_model, method, tokenizer=bridge.tokenizer)
            return median_time(
                lambda: wrapped.attribute(text, full, show_progress=False, **kwargs), repeats
            )

        peers["inseq"] = (
            inseq_seconds("input_x_gradient"),
            inseq_seconds("integrated_gradients", n_steps=32, internal_batch_size=32)
            if with_ig
            else None,
        )
    rows: list[dict] = [
        {
            "implementation": f"tlscopes ({kind})",
            "input_x_gradient_s": a,
            "integrated_gradients_s": b,
        }
        for kind, (a, b) in ours.items()
    ]
    for peer, result in peers.items():
        if isinstance(result, str):
            rows.append({"implementation": peer, "skipped": result})
            continue
        row: dict[str, Any] = {
            "implementation": peer,
            "input_x_gradient_s": result[0],
            "integrated_gradients_s": result[1],
        }
        for kind, (a, b) in ours.items():
            row[f"{kind}_over_this_ixg"] = _ratio(a, result[0])
            row[f"{kind}_over_this_ig"] = _ratio(b, result[1])
        rows.append(row)
    for row in rows:
        row["tokens"] = length
    return rows


def bench_layers(model: Any, lengths: list[int], repeats: int) -> list[dict]:
    """attribute_layers (residual stream of every layer; and every head) over attribute, same
    scope and input, interleaved; and the peak memory of attribute_layers at 2,048 tokens."""
    rows = []
    scope = ts.FisherScope()
    for length in lengths:
        tokens = tokens_of_length(model, length)
        fns = {
            "attribute": lambda tokens=tokens: ts.attribute(model, tokens, scope),
            "layers": lambda tokens=tokens: ts.attribute_layers(model, tokens, scope),
            "layers_heads": lambda tokens=tokens: ts.attribute_layers(
                model, tokens, scope, heads=True
            ),
        }
        seconds = interleaved_medians(fns, repeats)
        base = seconds["attribute"]
        rows.append(
            {
                "tokens": length,
                "attribute_s": base,
                "layers_s": seconds["layers"],
                "layers_heads_s": seconds["layers_heads"],
                "layers_over_attribute": seconds["layers"] / base,
                "layers_heads_over_attribute": seconds["layers_heads"] / base,
                "layers_within_1.1": seconds["layers"] <= 1.1 * base,
                "layers_heads_within_1.3": seconds["layers_heads"] <= 1.3 * base,
            }
        )
    kind = "bridge" if ts.models.is_bridge(model) else "hooked"
    loaded, peak = peak_memory(kind, LAYERS_WITH_HEADS)
    rows.append({"tokens": 2048, "layers_heads_peak_rss_mib": peak, "loaded_mib": loaded})
    return rows


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours / theirs


# VmHWM is this process's own peak resident set. (getrusage's ru_maxrss is not: a child
# forked from the benchmark inherits the parent's peak, ~12 GB by then.)
MEMORY_PROBE = """
import warnings, torch, tlscopes as ts
warnings.filterwarnings("ignore")


def status_mib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024


model = ts.load_model(kind="{kind}")
loaded = status_mib("VmRSS")
# Writing 5 to clear_refs resets VmHWM, so the peak below is attribution's, not loading's.
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
tokens = model.to_tokens("{text}" * 120)[:, :2048]
{work}
print(loaded, status_mib("VmHWM"))
"""
THREE_SCOPES = """for scope in (ts.SemanticScope(" the"), ts.TemperatureScope(), ts.FisherScope()):
    ts.attribute(model, tokens, scope)"""
LAYERS_WITH_HEADS = "ts.attribute_layers(model, tokens, ts.FisherScope(), heads=True)"


def peak_memory(kind: str, work: str) -> tuple[float, float]:
    """(resident MiB after loading, peak MiB during `work`) at 2,048 tokens, in a fresh process."""
    probe = MEMORY_PROBE.format(kind=kind, text=TEXT.replace('"', ""), work=work)
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(output[-2]), float(output[-1])


def bench_memory() -> list[dict]:
    """Peak resident memory of the three scopes at 2,048 tokens, for each model kind installed."""
    kinds = ["hooked", "bridge"] if ts.models.hooked_transformer_class() else ["bridge"]
    rows = []
    for kind in kinds:
        loaded, peak = peak_memory(kind, THREE_SCOPES)
        rows.append(
            {"kind": kind, "tokens": 2048, "rss_after_load_mib": loaded, "peak_rss_mib": peak}
        )
    return rows


def print_table(title: str, rows: list[dict] | dict | None) -> None:
    print(f"\n== {title}")
    if not rows:
        print("(not available)")
        return
    rows = rows if isinstance(rows, list) else [rows]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(_fmt(row.get(key, "")) for key in keys))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


SECTIONS = {
    "scopes": "scopes over a no-grad forward pass",
    "fisher": "Fisher directions: matrix-free vs formed F + eigh",
    "translation": "translation matrix, 32 rows: batched vs row by row",
    "integrated_gradients": "Integrated Gradients, 32 points: batched vs sequential",
    "peers": "tlscopes time over peers' (same weights, same input)",
    "memory": "memory, attribution over 2,048 tokens",
    "layers": "attribute_layers over attribute (Fisher rank 1); memory at 2,048 tokens",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 128 tokens only")
    parser.add_argument("--kind", default="auto", choices=["auto", "hooked", "bridge"])
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="the model the scopes, translation and IG sections run on (e.g. gemma3-270m)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="same as leaving out memory")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--lengths",
        help="comma-separated prompt lengths for the scopes and layers sections "
        "(default 128,1024; 128 with --quick)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if args.skip_memory and "memory" in chosen:
        chosen.remove("memory")
    repeats = 3 if args.quick else args.repeats
    lengths = [128] if args.quick else [128, 1024]
    if args.lengths:
        lengths = [int(length) for length in args.lengths.split(",")]

    model = ts.load_model(args.model, kind=args.kind)
    report: dict[str, Any] = {
        "model": args.model,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{platform.processor() or platform.platform()}",
        "torch": torch.__version__,
        "model_kind": type(model).__name__,
        "repeats": repeats,
    }

    def peers() -> list[dict]:
        bridge = model if ts.models.is_bridge(model) else ts.load_model(kind="bridge")
        hooked = None if ts.models.is_bridge(model) else model
        rows = bench_peers(bridge, repeats, hooked)
        if not args.quick:
            rows += bench_peers(bridge, repeats, hooked, length=1024, with_ig=False)
        return rows

    runs: dict[str, Callable[[], Any]] = {
        "scopes": lambda: bench_scopes(model, lengths, repeats),
        "fisher": lambda: bench_fisher(repeats),
        "translation": lambda: bench_translation(model, repeats),
        "integrated_gradients": lambda: bench_integrated_gradients(model, repeats),
        "peers": peers,
        "memory": bench_memory,
        "layers": lambda: bench_layers(model, lengths, repeats),
    }
    for key in SECTIONS:
        if key in chosen:
            report[key] = runs[key]()
            print_table(SECTIONS[key], report[key])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
