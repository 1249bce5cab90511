"""Reproduces the paper's figures on the default model (SmolLM2-135M-Instruct), CPU-friendly.

Writes, under --out:
    bias.png/.html          figure 2: Semantic Scope, liberal vs conservative (case_bias.py)
    translation.png/.html   figure 3: Fisher Scope matrix of a translation (case_translation.py)
    timeseries.png/.html    figure 4: Temperature Scope on three time series (case_timeseries.py)
    layers.png/.html        the three scopes by layer, with attention sinks (case_layers.py)
    ig_path.png/.html       figure 15: the IG integrand along the path (analyses/ig_path.py)
    attention_sinks.png     appendix A.6: sink mass vs attributions (analyses/attention_sinks.py)
    fisher_spectrum.png     figure 16: Fisher spectra, explained variance, AOPC vs rank
    *.csv                   the numbers behind the analysis figures; timings.json

--quick uses shorter series, fewer path points, passages and ranks, and finishes in a few
minutes on 2 CPU cores; the full run took 45 minutes on 2 shared cores (40 of them AOPC by
rank, which pulls back 64 Fisher directions per passage).

Usage: python scripts/reproduce_figures.py --out DIR [--quick] [--only bias,ig_path,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import case_bias  # noqa: E402
import case_layers  # noqa: E402
import case_timeseries  # noqa: E402
import case_translation  # noqa: E402

import tlscopes as ts  # noqa: E402
from analyses import attention_sinks, fisher_spectrum, ig_path  # noqa: E402
from tlscopes.analysis import DEFAULT_ALPHAS, path_integrand  # noqa: E402
from tlscopes.evaluation import datasets  # noqa: E402
from tlscopes.views.plotting import token_rows_page  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """How much of each analysis to run."""

    series_values: int
    alphas: tuple[float, ...]
    ig_steps: int
    spectrum_passages: int
    aopc_passages: int
    ranks: tuple[int, ...]
    baselines: tuple[str, ...]


FULL = Sizes(
    series_values=120,
    alphas=DEFAULT_ALPHAS,
    ig_steps=100,
    spectrum_passages=100,
    aopc_passages=16,
    ranks=(1, 4, 16, 64),
    baselines=("semantic", "temperature", "input_x_gradient", "random"),
)
QUICK = Sizes(
    series_values=40,
    alphas=(0.01, 0.03, 0.1, 0.3, 0.6, 1.0),
    ig_steps=16,
    spectrum_passages=8,
    aopc_passages=2,
    ranks=(1, 4),
    baselines=("semantic", "temperature", "random"),
)


def run_ig_and_sinks(model: Any, out: Path, sizes: Sizes) -> list[Path]:
    """Figure 15 and the attention-sink analysis, on the bias sentence (as the paper does)."""
    text, target = case_bias.TEXT, case_bias.TARGETS[0]
    print(f"   IG path integrand at {len(sizes.alphas)} points", flush=True)
    integrand = path_integrand(model, text, target=target, alphas=sizes.alphas)
    ig_png, ig_html = out / "ig_path.png", out / "ig_path.html"
    ig_path.plot_path_integrand(integrand).savefig(ig_png, dpi=110)
    n_tokens = integrand.position + 1
    rows = [
        (f"α = {alpha:g}", (norms[:n_tokens] / norms[:n_tokens].max()).tolist())
        for alpha, norms in zip(integrand.alphas.tolist(), integrand.norms, strict=True)
    ]
    ig_html.write_text(
        token_rows_page(
            f"IG integrand norms toward {target!r}",
            integrand.tokens[:n_tokens],
            rows,
            note="One row per path point α (buttons); each row normalised to its largest norm.",
        ),
        encoding="utf-8",
    )

    frame = attention_sinks.sink_mass(model, text)
    path = attention_sinks.sink_path(model, integrand)
    shares, _ = attention_sinks.method_early_shares(
        model, text, target=target, n_steps=sizes.ig_steps
    )
    sinks_png = out / "attention_sinks.png"
    attention_sinks.plot_attention_sinks(frame, path, shares).savefig(sinks_png, dpi=100)
    frame.to_csv(out / "attention_sinks_mass.csv", index=False)
    path.to_pandas().to_csv(out / "attention_sinks_path.csv", index=False)
    shares.to_csv(out / "attention_sinks_method_shares.csv", index=False)
    return [ig_png, ig_html, sinks_png]


def run_fisher_spectrum(model: Any, out: Path, sizes: Sizes) -> list[Path]:
    texts = datasets.load_passages("lambada")
    print(
        f"   Fisher spectra of {sizes.spectrum_passages} passages, then AOPC at ranks "
        f"{list(sizes.ranks)} on {sizes.aopc_passages}",
        flush=True,
    )
    spectra = fisher_spectrum.fisher_spectra(model, texts[: sizes.spectrum_passages])
    frame = fisher_spectrum.aopc_by_rank(
        model, texts[: sizes.aopc_passages], ranks=sizes.ranks, baselines=sizes.baselines
    )
    png = out / "fisher_spectrum.png"
    fisher_spectrum.plot_fisher_spectrum(spectra, frame).savefig(png, dpi=100)
    explained = spectra.explained_variance()
    summary = {
        "passages": len(explained),
        "explained_r1_mean": float(explained[:, 0].mean()),
        "explained_r1_std": float(explained[:, 0].std()),
        "explained_r10_mean": float(explained[:, 9].mean()),
    }
    (out / "fisher_spectrum.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    frame.to_csv(out / "fisher_aopc_by_rank.csv", index=False)
    return [png]


def parts(sizes: Sizes) -> dict[str, Callable[[Any, Path], list[Path]]]:
    return {
        "bias": lambda model, out: case_bias.run(model, out),
        "translation": lambda model, out: case_translation.run(model, out),
        "timeseries": lambda model, out: case_timeseries.run(
            model, out, n_values=sizes.series_values
        ),
        "layers": lambda model, out: case_layers.run(model, out),
        "ig_path": lambda model, out: run_ig_and_sinks(model, out, sizes),
        "fisher_spectrum": lambda model, out: run_fisher_spectrum(model, out, sizes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    parser.add_argument("--only", help="comma-separated parts (default all)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    available = parts(sizes)
    chosen = list(available) if args.only is None else args.only.split(",")
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(f"unknown parts {unknown}; known parts: {', '.join(available)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print("loading the default model (the first load converts its weights, about a minute)")
    model = ts.load_model()
    timings = {"load_model": time.perf_counter() - start}
    for name in chosen:
        began = time.perf_counter()
        print(f"== {name}", flush=True)
        for path in available[name](model, args.out):
            print(f"   {path}", flush=True)
        timings[name] = time.perf_counter() - began
    timings["total"] = time.perf_counter() - start
    (args.out / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    print(", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
