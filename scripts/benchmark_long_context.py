"""Long-context benchmark: time and peak memory per prompt length, tlscopes beside the best
plain recipe (issue 22).

For each shipped model and length, each method runs in a fresh child process (so its peak is
its own), watched: a child whose resident memory passes --limit-gib is killed and recorded as
out of memory, and longer lengths of that method are skipped.

Methods:

* ``tlscopes``: every scope at once (``attribute_many`` with Semantic, Fisher and Temperature
  scopes, or those named by --scopes: one forward pass, one input-only backward pass per
  scope, each recomputing the blocks) with ``checkpoint=True``;
* ``tlscopes-plain``: the same with ``checkpoint=False`` (every activation kept);
* ``plain-recipe``: the best plain recipe with Hugging Face alone: SDPA attention,
  ``gradient_checkpointing_enable()``, parameters frozen, the embeddings a leaf, one
  input-only backward pass of the last position's top logit (one scope's worth of work);
* ``captum-ixg``: captum's ``InputXGradient`` on the Hugging Face model (SDPA attention, no
  checkpointing), the last position's top token as target (``pip install captum``; not run by
  default);
* ``inseq-ixg``: inseq's ``input_x_gradient`` as its docs use it: ``inseq.load_model`` on the
  model's folder (inseq's default eager attention), ``attribute`` of one generated token. inseq
  takes text, so the prompt is the seeded ids decoded; the row records the length inseq's
  tokenizer made of it. Not run by default: inseq 0.7.1 pins ``typeguard<=2.13.3`` and CUDA 11
  libraries, so it goes in its own environment (``pip install --no-deps inseq treescope
  typeguard==2.13.3`` beside the project's packages) and the benchmark runs from there.

Peak memory is the child's largest resident set during the attribution (sampled every 20 ms,
after loading) on CPU and
``torch.cuda.max_memory_allocated`` on a GPU (the script runs unchanged there: pass
``--device cuda``). "per 1k" is (peak - memory after loading the model and a 16-token forward
pass, which pages in memory-mapped weights) per 1,000 tokens (rows measured before 2026-12-07
20:15 UTC took the memory before that pass, so their "per 1k" also holds the weights paged in
during the attribution). The
prompt is seeded random token ids (BOS first); timing excludes loading.

    python scripts/benchmark_long_context.py                         # both models, 1k-32k
    python scripts/benchmark_long_context.py --models smollm2-135m --lengths 1024 2048
    python scripts/benchmark_long_context.py --out results/bench/long_context_DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

GIB = 2**30
METHODS = ("tlscopes", "tlscopes-plain", "plain-recipe", "captum-ixg", "inseq-ixg")


# The largest resident set seen since the last _reset_peak (sampled every 20 ms): the load's
# own peak (weights converted while loading) must not count as the attribution's.
_PEAK = {"rss": 0}


def _watchdog(limit: int) -> None:
    import psutil

    process = psutil.Process()
    while True:
        rss = process.memory_info().rss
        _PEAK["rss"] = max(_PEAK["rss"], rss)
        if rss > limit:
            sys.stdout.write(json.dumps({"error": f"over {limit / GIB:.0f} GiB"}) + "\n")
            sys.stdout.flush()
            os._exit(3)
        time.sleep(0.02)


def _reset_peak(device: str) -> None:
    import psutil
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _PEAK["rss"] = psutil.Process().memory_info().rss


def _peak_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return _PEAK["rss"]


def _loaded_bytes(model, tokens, device: str) -> int:
    """Memory once the model is loaded and its weights touched: a no-grad forward pass over the
    prompt's first 16 tokens first, since weights read from a memory-mapped file count as
    resident only once a pass reads them (about the model's size again; 1.07 GB on
    Gemma-3-270M), which would otherwise be charged to the attribution."""
    import torch

    with torch.no_grad():
        model(tokens.reshape(1, -1)[:, :16].to(device))
    return _now_bytes(device)


def _now_bytes(device: str) -> int:
    import psutil
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.memory_allocated())
    return int(psutil.Process().memory_info().rss)


def _prompt(length: int, bos: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1000, 20000, (length,), generator=generator)
    tokens[0] = bos
    return tokens


def _hf_model(name: str, device: str):
    """The shipped model `name` as Hugging Face's own model, SDPA attention, float32."""
    import torch
    from transformers import AutoModelForCausalLM

    from tlscopes.models import packaged_model_dir

    return AutoModelForCausalLM.from_pretrained(
        str(packaged_model_dir(name)), attn_implementation="sdpa", dtype=torch.float32
    ).to(device)


def _measured(device: str, start: float, loaded: int, top: list[int]) -> dict:
    """A measurement's row: seconds since `start` (the device synchronised first), the memory
    after loading and the peak, and the top context token(s) found."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "loaded": loaded, "peak": _peak_bytes(device), "top": top}


def _run_tlscopes(
    name: str, length: int, device: str, checkpoint: bool, scope_names: list[str]
) -> dict:
    import tlscopes as ts
    from tlscopes.core.scopes import scope_from_name

    model = ts.load_model(name, device=device)
    tokens = _prompt(length, int(model.tokenizer.bos_token_id or 0))
    loaded = _loaded_bytes(model, tokens, device)
    _reset_peak(device)
    scopes = [scope_from_name(scope) for scope in scope_names]
    start = time.perf_counter()
    results = ts.attribute_many(model, tokens, scopes, checkpoint=checkpoint)
    return _measured(
        device, start, loaded, [int(result.scores[0, :-1].argmax()) for result in results]
    )


def _run_plain_recipe(name: str, length: int, device: str) -> dict:
    import torch

    model = _hf_model(name, device)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()  # Hugging Face checkpoints only in training mode; these models have no dropout
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    tokens = _prompt(length, int(model.config.bos_token_id or 0)).to(device)
    loaded = _loaded_bytes(model, tokens, device)
    _reset_peak(device)
    start = time.perf_counter()
    embeddings = model.get_input_embeddings()(tokens[None]).detach().requires_grad_(True)
    hidden = model.model(inputs_embeds=embeddings, use_cache=False).last_hidden_state[0, -1]
    logits = model.lm_head(hidden)
    (grad,) = torch.autograd.grad(logits.max(), embeddings)
    scores = grad[0].norm(dim=-1)
    return _measured(device, start, loaded, [int(scores[:-1].argmax())])


def _run_captum(name: str, length: int, device: str) -> dict:
    """captum's InputXGradient as its docs use it on a Hugging Face model: a forward function
    from the input embeddings to the last position's logits, the top token as the target, eager
    autograd (no checkpointing). Needs ``pip install captum``."""
    import torch
    from captum.attr import InputXGradient

    model = _hf_model(name, device)
    model.eval()
    tokens = _prompt(length, int(model.config.bos_token_id or 0)).to(device)
    loaded = _loaded_bytes(model, tokens, device)
    _reset_peak(device)
    start = time.perf_counter()
    embeddings = model.get_input_embeddings()(tokens[None]).detach()

    def last_logits(inputs_embeds):
        return model(inputs_embeds=inputs_embeds, use_cache=False).logits[:, -1]

    with torch.no_grad():
        target = int(last_logits(embeddings).argmax())
    attributions = InputXGradient(last_logits).attribute(embeddings, target=target)
    scores = attributions[0].norm(dim=-1)
    return _measured(device, start, loaded, [int(scores[:-1].argmax())])


def _run_inseq(name: str, length: int, device: str) -> dict:
    """inseq's input x gradient of one generated token, loaded the way inseq's docs load a model
    (by its folder, inseq's default eager attention). Needs inseq (see the module's docstring)."""
    import inseq
    from transformers import AutoTokenizer

    from tlscopes.models import packaged_model_dir

    folder = str(packaged_model_dir(name))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = _prompt(length, int(tokenizer.bos_token_id or 0))
    text = tokenizer.decode(tokens[1:])
    model = inseq.load_model(folder, "input_x_gradient", device=device)
    loaded = _loaded_bytes(model.model, tokens, device)
    _reset_peak(device)
    start = time.perf_counter()
    output = model.attribute(text, generation_args={"max_new_tokens": 1}, show_progress=False)
    # [prompt + generated token, 1 step, d_model]: the L2 norm over the embedding's dimensions
    scores = output.sequence_attributions[0].target_attributions.nan_to_num(0).norm(dim=-1)
    row = _measured(device, start, loaded, [int(scores[:-1, 0].argmax())])
    row["inseq_tokens"] = int(scores.shape[0])
    return row


def child(args: argparse.Namespace) -> None:
    """One measurement, in this process; prints one JSON line."""
    import torch

    threading.Thread(target=_watchdog, args=(int(args.limit_gib * GIB),), daemon=True).start()
    torch.set_num_threads(args.threads)
    if args.method == "plain-recipe":
        result = _run_plain_recipe(args.model, args.length, args.device)
    elif args.method == "captum-ixg":
        result = _run_captum(args.model, args.length, args.device)
    elif args.method == "inseq-ixg":
        result = _run_inseq(args.model, args.length, args.device)
    else:
        checkpoint = args.method == "tlscopes"
        result = _run_tlscopes(args.model, args.length, args.device, checkpoint, args.scopes)
    print(json.dumps(result), flush=True)


def measure(model: str, length: int, method: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        model,
        "--length",
        str(length),
        "--method",
        method,
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--limit-gib",
        str(args.limit_gib),
        "--scopes",
        *args.scopes,
    ]
    env = dict(os.environ)
    if args.malloc_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {args.timeout} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument(
        "--lengths", nargs="+", type=int, default=[1024, 2048, 4096, 8192, 16384, 32768]
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS[:3]), choices=METHODS)
    parser.add_argument(
        "--scopes",
        nargs="+",
        default=["semantic", "fisher", "temperature"],
        choices=["semantic", "fisher", "temperature"],
        help="the scopes tlscopes runs (one backward pass each; the plain recipe runs one)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit-gib", type=float, default=12.0)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per measurement")
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=0,
        metavar="BYTES",
        help="run each child with MALLOC_MMAP_THRESHOLD_=BYTES (glibc; e.g. 1048576): blocks that "
        "large are mapped and handed back when freed, instead of kept in the heap, so the resident "
        "peak follows the live tensors (default 0: glibc's own adaptive threshold)",
    )
    parser.add_argument("--out", help="also write the rows as JSON here (after each row)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} threads, device {args.device}, "
        f"limit {args.limit_gib} GiB, scopes {' '.join(args.scopes)}, "
        f"MALLOC_MMAP_THRESHOLD_ {args.malloc_mmap_threshold or 'unset'}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    header = "model | tokens | method | time (s) | peak (GiB) | per 1k tokens (GiB)"
    print(header)
    print(" | ".join("---" for _ in header.split(" | ")))
    rows = []
    for model in args.models:
        stopped: set[str] = set()
        for length in args.lengths:
            for method in args.methods:
                if method in stopped:
                    continue
                result = measure(model, length, method, args)
                row = {"model": model, "tokens": length, "method": method, **result}
                rows.append(row)
                if "error" in result:
                    stopped.add(method)
                    print(f"{model} | {length} | {method} | — | {result['error']} | —", flush=True)
                else:
                    peak = result["peak"] / GIB
                    per_1k = (result["peak"] - result["loaded"]) / GIB / (length / 1000)
                    row["per_1k_gib"] = per_1k
                    print(
                        f"{model} | {length} | {method} | {result['seconds']:.1f} | {peak:.2f} | "
                        f"{per_1k:.3f}",
                        flush=True,
                    )
                if args.out:  # after every row, errors included
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
