#!/usr/bin/env bash
# Sets up and runs the whole test suite (unit and integration, offline) in two environments:
# the newest TransformerLens (4.x: TransformerBridge) and TransformerLens 3.x (HookedTransformer
# and TransformerBridge), printing the slowest tests. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not integration and not browser"   (the quick subset)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=.venv-tl3 TL_SPEC="transformer-lens>=3,<4" EXTRA_SPECS="sae-lens>=6,<7" bash scripts/setup.sh
status=0
for venv in .venv .venv-tl3; do
    echo "== pytest in $venv ($("$venv/bin/python" -c 'import importlib.metadata as m; print("transformer-lens", m.version("transformer-lens"))'))"
    "$venv/bin/python" -m pytest --durations=15 "$@" || status=$?
done
exit $status
