#!/usr/bin/env bash
# Sets up and runs the whole test suite (unit and integration, offline) in two environments:
# the newest TransformerLens (4.x: TransformerBridge) and TransformerLens 3.x (HookedTransformer
# and TransformerBridge). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=.venv-tl3 TL_SPEC="transformer-lens>=3,<4" bash scripts/setup.sh
status=0
for venv in .venv .venv-tl3; do
    echo "== pytest in $venv ($("$venv/bin/python" -c 'import importlib.metadata as m; print("transformer-lens", m.version("transformer-lens"))'))"
    "$venv/bin/python" -m pytest "$@" || status=$?
done
exit $status
