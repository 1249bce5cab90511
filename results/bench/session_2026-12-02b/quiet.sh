#!/bin/bash
# The quiet window of this session (nothing else running): fisher_directions on Gemma-3-270M's
# real distributions against forming F, and Gemma-3-270M attribution over forward and floor at
# 128 and 512 tokens on the TransformerBridge (TransformerLens 4.3). One torch thread.
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
B=results/bench/session_2026-12-02b
run() { name=$1; shift; echo "=== $name $(date) load $(cut -d' ' -f1-3 /proc/loadavg)"; "$@" --json $B/$name.json 2>&1 | grep -v "Loading weights"; }
run fisher_gemma .venv/bin/python scripts/benchmark_fisher.py --shapes gemma --passages 20 --repeats 3 --threads 1 --no-truth
run gemma_scopes_bridge .venv/bin/python scripts/benchmark.py --model gemma3-270m --kind bridge --sections scopes --lengths 128,512 --repeats 3
echo "=== done $(date) load $(cut -d' ' -f1-3 /proc/loadavg)"
