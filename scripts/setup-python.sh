#!/usr/bin/env bash
# Installs the Python side (posttrain/) into ./.venv from PyPI. Idempotent; pip's own cache
# (~/.cache/pip) makes a second run on the same machine fast, and a clean machine still works.
# Override the interpreter with PYTHON=python3.12; RANKCHAIN_TORCH_INDEX=URL picks a torch wheel
# index on GPU machines that can reach one (e.g. a CUDA 12.x index); the default is PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "${RANKCHAIN_TORCH_INDEX:-}" ]; then
  .venv/bin/python -m pip install --quiet torch --index-url "$RANKCHAIN_TORCH_INDEX"
fi
.venv/bin/python -m pip install --quiet -e "posttrain[dev]"
.venv/bin/python -c "import torch, sentence_transformers; print(f'python side ready: torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, cuda={torch.cuda.is_available()}')"
