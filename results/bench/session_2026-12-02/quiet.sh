#!/bin/bash
# Quiet window (session 5): Fisher on Gemma-3-270M; bridge scopes at 128 tokens before / after /
# after with the previous solver, twice each, interleaved; Fisher on SmolLM2. One thread.
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
B=/tmp/bench2
run() { name=$1; shift; echo "=== $name $(date)"; "$@" --json $B/$name.json 2>&1 | grep -v "Loading weights"; }
echo "=== fisher gemma $(date)"
.venv/bin/python scripts/benchmark_fisher.py --shapes gemma --threads 1 --passages 10 --repeats 3 --no-truth --json $B/fisher_gemma.json 2>&1 | grep -v "Loading weights"
for round in 1 2; do
run q_before_$round env PYTHONPATH=/tmp/before .venv/bin/python scripts/benchmark.py --kind bridge --sections scopes --quick
run q_after_$round .venv/bin/python scripts/benchmark.py --kind bridge --sections scopes --quick
run q_oldsolver_$round .venv/bin/python /tmp/bench2/after_old_solver.py --kind bridge --sections scopes --quick
done
echo "=== fisher default $(date)"
.venv/bin/python scripts/benchmark_fisher.py --shapes default --threads 1 --passages 10 --repeats 3 --no-truth --json $B/fisher_default.json 2>&1 | grep -v "Loading weights"
echo "=== quiet done $(date)"
