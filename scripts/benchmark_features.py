"""attribute_features against the ways one could get the same 64 features' token scores, in one run.

64 SAE features at 256 tokens on the shipped SmolLM2-135M (``ts.load_model()``), with a random
TopK SAE (k = 64, so "active" is exactly 64 features) at ``blocks.3.hook_resid_post``:

* ``attribute_features``: one forward pass and ceil(64 / directions per pass) batched
  input-only backward passes (tlscopes' engine);
* 64 separate ``ts.attribute(model, tokens, FeatureScope(sae, f))`` calls;
* the jacrev recipe: ``torch.func.jacrev`` over per-token embedding scales of the 64 latents'
  pre-activations (what users copy from ARENA 1.4.2's token_to_latent_gradients; it gives
  gradient x input along each embedding, a different quantity, so only its time is compared);
* the plain floor: one forward pass with the embeddings as a leaf, h captured at the hook,
  then 64 plain ``torch.autograd.grad`` calls (retain_graph), written directly in PyTorch;
  stopped at the hook point as attribute_features stops, and also run to the end of the model
  (as ``ts.attribute`` with a FeatureScope does).

The jacrev recipe is timed both with a full forward pass and stopped at the hook.

Times are medians over --repeats interleaved rounds after a warm-up (the 64 separate calls:
timed once, in the first round, without a warm-up of their own). Peak resident memory (VmHWM, reset to the current resident set
before each call) is the process's peak during each method's calls, in MiB (the model's
weights and the allocator's cache from earlier calls included). The scores of
attribute_features, the 64 calls and the floor are compared (largest absolute difference).

    python scripts/benchmark_features.py [--repeats 3] [--tokens 256] [--features 64]
        [--model gemma3-270m] [--arena]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import tlscopes as ts

warnings.filterwarnings("ignore")
HOOK = "blocks.3.hook_resid_post"


class Stop(Exception):
    """Stops a plain forward pass once the hook point is reached."""


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current resident set (Linux).
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def timed(work: Callable[[], object]) -> tuple[float, float, object]:
    """(seconds, peak resident MiB of the process during the call, result) of one call."""
    reset_peak()
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, status_mib("VmHWM"), result


def measure_all(
    methods: dict[str, tuple[Callable[[], object], bool]], repeats: int
) -> tuple[dict[str, tuple[float, float]], dict[str, object]]:
    """Median seconds and largest peak MiB of each method, timed in interleaved rounds after one
    warm-up call each (so that a change in the machine's load hits every method alike); a
    method marked False (slow: many calls of the same engine the others warmed up) is timed
    once, in the first round, without a warm-up. Each timing is also printed to stderr."""
    results = {name: work() for name, (work, repeat) in methods.items() if repeat}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks: dict[str, float] = {name: 0.0 for name in methods}
    for round_index in range(repeats):
        for name, (work, repeat) in methods.items():
            if round_index > 0 and not repeat:
                continue
            seconds, peak, results[name] = timed(work)
            print(f"round {round_index}: {name} {seconds:.2f} s", file=sys.stderr, flush=True)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
    rows = {name: (statistics.median(times[name]), peaks[name]) for name in methods}
    return rows, results


def prompt_tokens(model, length: int) -> torch.Tensor:
    data = Path(ts.__file__).parent / "data" / "lambada_prompts_500.json"
    passages = json.loads(data.read_text())
    texts = [item["text"] if isinstance(item, dict) else str(item) for item in passages]
    tokens = model.to_tokens(" ".join(texts[:40]))[0]
    if len(tokens) < length:
        raise SystemExit(f"only {len(tokens)} tokens of text; lower --tokens")
    return tokens[:length]


def random_sae(d_in: int, width: int, k: int) -> ts.SAE:
    generator = torch.Generator().manual_seed(0)
    W_enc = torch.randn(d_in, width, generator=generator) / d_in**0.5
    return ts.SAE.from_tensors(
        W_enc=W_enc,
        b_enc=torch.zeros(width),
        hook=HOOK,
        activation="topk",
        k=k,
        b_dec=torch.randn(d_in, generator=generator) * 0.1,
        apply_b_dec_to_input=True,
        source="random (benchmark_features.py, seed 0)",
    )


def hooked_pre(model, sae: ts.SAE, features: torch.Tensor, position: int, stop: bool):
    """fn(embeddings or scaled embeddings) -> the features' pre-activations at `position`."""

    def run(tokens: torch.Tensor, patch: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        captured = {}

        def embed(tensor, *, hook):
            return patch(tensor)

        def take(tensor, *, hook):
            captured["h"] = tensor[0, position]
            if stop:
                raise Stop
            return tensor

        with model.hooks(fwd_hooks=[("hook_embed", embed), (HOOK, take)]):
            try:
                model(tokens[None])
            except Stop:
                pass
        return sae.pre_activations(captured["h"])[features.to(captured["h"].device)]

    return run


def floor(model, tokens, sae, features, position, stop: bool) -> torch.Tensor:
    """One forward pass, then one plain input-only backward pass per feature."""
    leaf = {}

    def patch(tensor):
        leaf["x"] = tensor.detach().requires_grad_(True)
        return leaf["x"]

    # Parameter gradients off, as any input-only attribution turns them off (a bridge's
    # wrapped Hugging Face model holds the parameters its forward pass uses).
    modules = [model, getattr(model, "original_model", None)]
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        pre = hooked_pre(model, sae, features, position, stop)(tokens, patch)
        rows = []
        for index in range(len(features)):
            (grad,) = torch.autograd.grad(pre[index], leaf["x"], retain_graph=True)
            rows.append(grad[0].norm(dim=-1))
        return torch.stack(rows).detach()
    finally:
        for p in params:
            p.requires_grad_(True)


def jacrev_recipe(model, tokens, sae, features, position, stop: bool) -> torch.Tensor:
    """d latent / d (per-token scale of the embeddings), by torch.func.jacrev: [feature, pos]."""
    run = hooked_pre(model, sae, features, position, stop)

    def latents(scales: torch.Tensor) -> torch.Tensor:
        return run(tokens, lambda tensor: tensor * scales[None, :, None])

    scales = torch.ones(len(tokens), dtype=model.W_U.dtype)
    return torch.func.jacrev(latents)(scales).detach()


def arena_recipe(model, tokens, sae, chunk_size: int) -> torch.Tensor:
    """ARENA 1.4.2's token_to_latent_gradients as written: jacrev over per-token embedding scales
    of every nonzero latent at every position (its SparseTensor values), the forward pass
    stopped at the hook. jacrev gets `chunk_size` (the recipe has none: all 256 x 64 = 16,384
    vector-Jacobian products vmapped at once would hold [16384, pos, d_model] per activation)."""

    def latents(scales: torch.Tensor) -> torch.Tensor:
        captured = {}

        def embed(tensor, *, hook):
            return tensor * scales[None, :, None]

        def take(tensor, *, hook):
            captured["h"] = tensor[0]
            raise Stop

        with model.hooks(fwd_hooks=[("hook_embed", embed), (HOOK, take)]):
            try:
                model(tokens[None])
            except Stop:
                pass
        dense = sae.activations(sae.pre_activations(captured["h"]))  # [pos, d_sae]
        return dense[dense != 0]

    scales = torch.ones(len(tokens), dtype=model.W_U.dtype)
    return torch.func.jacrev(latents, chunk_size=chunk_size)(scales).detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--width", type=int, default=16384)
    parser.add_argument(
        "--model", default="smollm2-135m", help="a shipped model (default smollm2-135m) or a path"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--arena",
        action="store_true",
        help="also time ARENA's recipe as written (every nonzero latent at every position; "
        "minutes), timed once",
    )
    parser.add_argument("--arena-chunk-size", type=int, default=64)
    args = parser.parse_args()

    model = ts.load_model(args.model)
    tokens = prompt_tokens(model, args.tokens)
    position = len(tokens) - 1
    sae = random_sae(int(model.cfg.d_model), args.width, args.features)
    print(
        f"date {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model "
        f"{model.cfg.model_name} ({type(model).__name__}), {len(tokens)} tokens, random TopK SAE "
        f"d_sae={sae.d_sae} k={sae.k} at {HOOK}, loaded RSS {status_mib('VmRSS'):.0f} MiB"
    )
    features = ts.attribute_features(model, tokens, sae).features
    assert len(features) == args.features, f"{len(features)} features fire, not {args.features}"
    separate = f"{args.features} separate attribute calls"

    def separate_calls():
        return torch.stack(
            [ts.attribute(model, tokens, ts.FeatureScope(sae, int(f))).scores[0] for f in features]
        )

    methods = {
        "attribute_features": (lambda: ts.attribute_features(model, tokens, sae), True),
        "jacrev over token scales (full forward)": (
            lambda: jacrev_recipe(model, tokens, sae, features, position, stop=False),
            True,
        ),
        "jacrev over token scales (stopped at the hook)": (
            lambda: jacrev_recipe(model, tokens, sae, features, position, stop=True),
            True,
        ),
        "plain floor (full forward)": (
            lambda: floor(model, tokens, sae, features, position, stop=False),
            True,
        ),
        "plain floor (forward stopped at the hook)": (
            lambda: floor(model, tokens, sae, features, position, stop=True),
            True,
        ),
        separate: (separate_calls, False),
    }
    arena = "ARENA recipe as written (all positions)"
    if args.arena:
        methods[arena] = (lambda: arena_recipe(model, tokens, sae, args.arena_chunk_size), False)
    rows, results = measure_all(methods, args.repeats)
    ours = results["attribute_features"]
    separate_scores = results[separate]
    floor_scores = results["plain floor (forward stopped at the hook)"]
    base = rows["attribute_features"][0]
    print(f"\n{'method':46s} {'seconds':>9s} {'/ ours':>8s} {'peak RSS MiB':>13s}")
    for name, (seconds, peak) in rows.items():
        print(f"{name:46s} {seconds:9.3f} {seconds / base:8.2f} {peak:13.0f}")
    floor_stopped = rows["plain floor (forward stopped at the hook)"][0]
    print(
        f"\nattribute_features (forward stopped at the hook) is "
        f"{rows[separate][0] / base:.1f}x faster than "
        f"{args.features} separate calls, "
        f"{rows['jacrev over token scales (full forward)'][0] / base:.1f}x / "
        f"{rows['jacrev over token scales (stopped at the hook)'][0] / base:.1f}x faster than "
        "the jacrev recipe with a full / stopped forward pass (target >= 10x), and takes "
        f"{base / floor_stopped:.2f}x the plain floor with the same stopped forward pass and "
        f"{args.features} plain backward passes (target <= 1.1x)"
    )
    if args.arena:
        print(
            f"ARENA's token_to_latent_gradients as written (jacrev over every nonzero latent at "
            f"every position, chunk_size={args.arena_chunk_size}, from which the {args.features} "
            f"features at the last position are then read) took {rows[arena][0] / base:.0f}x as long as "
            "attribute_features"
        )
    print(f"load average during the run: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(
        "largest |difference| of the scores: vs the separate calls "
        f"{float((ours.scores - separate_scores).abs().max()):.2e}, vs the floor "
        f"{float((ours.scores - floor_scores.cpu()).abs().max()):.2e} (largest score "
        f"{float(ours.scores.abs().max()):.3g})"
    )
    if args.json:
        payload = {name: {"seconds": s, "peak_mib": p} for name, (s, p) in rows.items()}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
