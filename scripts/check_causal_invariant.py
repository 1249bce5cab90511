"""The causal invariant at full length on a shipped model (issue 22): explaining position p of a
long prompt equals explaining the last position of its first p + 1 tokens.

Too slow for the test suite (minutes per model on a CPU); tests/integration/test_long_context.py
checks the same at 1,024 tokens. Prints the largest difference relative to the largest score,
whether the top context token agrees, and the times.

    python scripts/check_causal_invariant.py --model smollm2-135m --length 8192 --position 6143
"""

from __future__ import annotations

import argparse
import time

import torch

import tlscopes as ts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--position", type=int, default=6143)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not 0 < args.position < args.length - 1:
        raise SystemExit(f"--position must lie in 1 .. {args.length - 2}")
    torch.set_num_threads(args.threads)
    model = ts.load_model(args.model)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1000, 20000, (args.length,), generator=generator)
    tokens[0] = int(model.tokenizer.bos_token_id or 0)
    scope = ts.SemanticScope()  # each run explains its own top prediction at the position
    start = time.perf_counter()
    whole = ts.attribute(model, tokens, scope, position=args.position, checkpoint=True)
    middle = time.perf_counter()
    prefix = ts.attribute(model, tokens[: args.position + 1], scope, checkpoint=True)
    end = time.perf_counter()
    a = whole.scores[0, : args.position + 1].double()
    b = prefix.scores[0].double()
    error = float((a - b).abs().max() / b.abs().max())
    after = float(whole.scores[0, args.position + 1 :].abs().max())
    print(
        f"{args.model} ({type(model).__name__}, {model.cfg.dtype}), {args.length} tokens, "
        f"position {args.position}: largest |difference| / largest score {error:.2e}; "
        f"same target {torch.equal(whole.target_ids, prefix.target_ids)}; same top context token "
        f"{int(a[:-1].argmax()) == int(b[:-1].argmax())}; largest score after the position "
        f"{after:.1e}; times {middle - start:.1f} s and {end - middle:.1f} s"
    )


if __name__ == "__main__":
    main()
