#!/bin/bash
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
B=/tmp/bench2
run() { name=$1; shift; echo "=== $name $(date)"; "$@" --json $B/$name.json 2>&1 | grep -v "Loading weights"; }
for round in 3 4; do
run q_before_$round env PYTHONPATH=/tmp/before .venv/bin/python scripts/benchmark.py --kind bridge --sections scopes --lengths 128 --repeats 9
run q_after_$round .venv/bin/python scripts/benchmark.py --kind bridge --sections scopes --lengths 128 --repeats 9
done
echo "=== quiet2 done $(date)"
