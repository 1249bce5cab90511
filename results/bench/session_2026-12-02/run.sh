#!/bin/bash
# Benchmark sequence, session 5 (quiet machine). OMP_NUM_THREADS=1.
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
B=/tmp/bench2
run() { name=$1; shift; echo "=== $name $(date)"; "$@" --json $B/$name.json 2>&1 | grep -v "Loading weights"; }
run scopes_bridge_before env PYTHONPATH=/tmp/before .venv/bin/python scripts/benchmark.py --kind bridge --sections scopes --repeats 5
run scopes_bridge_after .venv/bin/python scripts/benchmark.py --kind bridge --sections scopes --repeats 5
run layers_hooked .venv-tl3/bin/python scripts/benchmark.py --kind hooked --sections layers --repeats 5
run layers_bridge .venv/bin/python scripts/benchmark.py --kind bridge --sections layers --repeats 5
run gemma_scopes_bridge .venv/bin/python scripts/benchmark.py --model gemma3-270m --kind bridge --sections scopes --repeats 3
run gemma_scopes_hooked .venv-tl3/bin/python scripts/benchmark.py --model gemma3-270m --kind hooked --sections scopes --repeats 3
run scopes_hooked_before env PYTHONPATH=/tmp/before .venv-tl3/bin/python scripts/benchmark.py --kind hooked --sections scopes --repeats 5
run scopes_hooked_after .venv-tl3/bin/python scripts/benchmark.py --kind hooked --sections scopes --repeats 5
echo "=== done $(date)"
