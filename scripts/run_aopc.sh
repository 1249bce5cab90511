#!/usr/bin/env bash
# The AOPC table of the README: every method on the paper's 500 passages of both tasks, on the
# default model, Integrated Gradients with 5 path points (as the authors' table script). Resumable:
# rerun the same command after an interruption and finished passages are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 5 .venv/bin/tlscopes evaluate --task lambada,iwslt --limit 500 --n-steps 5 \
    --output results/aopc "$@"
