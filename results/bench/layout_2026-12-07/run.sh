#!/usr/bin/env bash
# Issue 20's check: scripts/benchmark.py (scopes section, 128 tokens) on the code before the
# move (3a9183e, a worktree at /tmp/old) and after it, alternated on one machine, 2 rounds each, one thread (the test suite ran on the other core).
set -u
cd /work/main
OUT=results/bench/layout_2026-12-07
for round in 1 2; do
  for side in before after; do
    if [ $side = before ]; then tree=/tmp/old; else tree=/work/main; fi
    PYTHONPATH=$tree OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 timeout 900 .venv/bin/python $tree/scripts/benchmark.py \
      --quick --sections scopes --skip-memory --json $OUT/${side}_${round}.json > $OUT/${side}_${round}.txt 2>&1
    echo "$side $round rc=$?" >> $OUT/progress.log
  done
done
