#!/usr/bin/env bash
# The AOPC table of the README: every method on the paper's 500 passages of both tasks, on the
# default model, Integrated Gradients with 5 path points (as the authors' table script).
#   scripts/run_aopc.sh          run (resumable: rerun after an interruption, finished passages
#                                are kept); extra arguments go to `tlscopes evaluate`. VENV
#                                picks the environment (default .venv); the committed table
#                                ran as `VENV=.venv-tl3 scripts/run_aopc.sh --kind hooked`
#                                OUT picks the output directory (default results/aopc); the
#                                other committed runs:
#                                VENV=.venv-tl3 OUT=results/aopc_authors scripts/run_aopc.sh \
#                                    --kind hooked --protocol authors
#                                VENV=.venv-tl3 OUT=results/aopc_gemma3 scripts/run_aopc.sh \
#                                    --kind hooked --model gemma3-270m
#   scripts/run_aopc.sh table    rewrite OUT's aopc.csv, paired_vs_semantic.csv and table.md
#                                (with the paper's LLaMA-3.2-1B column) from the passages
#                                finished so far (scripts/aopc_tables.py --single)
#   scripts/run_aopc.sh tables   the comparison tables of all three runs (both protocols,
#                                Gemma-3 beside SmolLM2, Wilcoxon and bootstrap) in
#                                results/aopc_tables.md (scripts/aopc_tables.py)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "tables" ]]; then
    exec "${VENV:-.venv}/bin/python" scripts/aopc_tables.py
fi
if [[ "${1:-}" != "table" ]]; then
    exec nice -n 5 "${VENV:-.venv}/bin/tlscopes" evaluate --task lambada,iwslt --limit 500 --n-steps 5 \
        --output "${OUT:-results/aopc}" "$@"
fi
exec "${VENV:-.venv}/bin/python" scripts/aopc_tables.py --single "${OUT:-results/aopc}"
