"""Checks tlscopes on an accelerator against the same computation on the CPU and exact Jacobians.

Builds the tiny float64 test models (tlscopes.testing.toy: randomised norm weights and biases), puts
one copy on the CPU and one on DEVICE, and compares, for every scope, Integrated Gradients and
the AOPC ablation pass:

* scores on the device against scores on the CPU;
* scores on the device against ||v^T J_t|| from a full torch.func Jacobian taken on the device
  (TransformerLens' own attention, so the fused kernel is checked too).

Prints one line per check and exits 1 if any difference exceeds the tolerance.

Usage: python scripts/check_device.py [--device cuda] [--rtol 1e-6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlscopes as ts  # noqa: E402
from tlscopes.evaluation.ablate import ablated_log_probs
from tlscopes.methods import baselines  # noqa: E402
from tlscopes.models.facts import hooked_transformer_class  # noqa: E402
from tlscopes.testing import toy as helpers  # noqa: E402
from tlscopes.testing.reference import exact_jacobian, fisher_eig, scores_for  # noqa: E402

PROMPTS = ["the capital of france is paris and the capital of italy is", "one two three four five"]


def builders() -> dict[str, Any]:
    found = {"bridge-llama": lambda: helpers.build_bridge()}
    if hooked_transformer_class() is not None:
        found["hooked-rms-rotary-grouped-query"] = lambda: helpers.build_hooked(
            normalization_type="RMS", positional_embedding_type="rotary", n_key_value_heads=1
        )
        found["hooked-ln-standard"] = lambda: helpers.build_hooked()
    return found


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-300))


def check_model(name: str, build: Any, device: str, rtol: float) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    on_cpu = build()
    torch.manual_seed(0)
    on_device = build().to(device)
    if on_device.W_U.device.type != torch.device(device).type:
        raise RuntimeError(f"{name} did not move to {device}")
    results = []
    scopes = {
        "semantic": ts.SemanticScope(" rome"),
        "temperature": ts.TemperatureScope(),
        "fisher-rank-2": ts.FisherScope(rank=2),
    }
    for label, scope in scopes.items():
        cpu_scores = ts.attribute(on_cpu, PROMPTS, scope).scores
        device_scores = ts.attribute(on_device, PROMPTS, scope).scores
        results.append(
            (f"{name} {label}: device vs CPU", relative_difference(device_scores, cpu_scores))
        )

    tokens = on_device.to_tokens(PROMPTS[0])[0]
    y, jacobian = exact_jacobian(on_device, tokens, len(tokens) - 1)
    W_U = on_device.W_U.detach()
    temperature = ts.attribute(on_device, PROMPTS[0], ts.TemperatureScope()).scores[0]
    expected = scores_for(jacobian, (y / y.norm())[:, None])
    results.append(
        (
            f"{name} temperature: device vs exact Jacobian",
            relative_difference(temperature, expected),
        )
    )
    values, vectors = fisher_eig(W_U, y @ W_U + on_device.b_U.detach())
    fisher = ts.attribute(on_device, PROMPTS[0], ts.FisherScope()).scores[0]
    results.append(
        (
            f"{name} fisher: device vs exact Jacobian",
            relative_difference(fisher, scores_for(jacobian, vectors[:, :1])),
        )
    )

    ig_cpu = baselines.integrated_gradients(on_cpu, PROMPTS[0], target=" rome", n_steps=8).scores
    ig_device = baselines.integrated_gradients(
        on_device, PROMPTS[0], target=" rome", n_steps=8
    ).scores
    results.append(
        (f"{name} integrated gradients: device vs CPU", relative_difference(ig_device, ig_cpu))
    )

    cpu_tokens = on_cpu.to_tokens(PROMPTS[0])
    keep = torch.ones(3, cpu_tokens.shape[1], dtype=torch.bool)
    keep[1, 2] = keep[2, 3:6] = False
    target = int(cpu_tokens[0, -1])
    position = cpu_tokens.shape[1] - 2
    ablated_cpu = ablated_log_probs(on_cpu, cpu_tokens, position, target, keep)
    ablated_device = ablated_log_probs(on_device, cpu_tokens, position, target, keep)
    results.append(
        (
            f"{name} AOPC ablation pass: device vs CPU",
            relative_difference(ablated_device, ablated_cpu),
        )
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"{args.device} is not available here", file=sys.stderr)
        return 2
    failed = 0
    for name, build in builders().items():
        for label, difference in check_model(name, build, args.device, args.rtol):
            ok = difference <= args.rtol
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {difference:.2e}  {label}")
    print(f"{failed} check(s) over rtol {args.rtol:g} on {args.device}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
