#!/usr/bin/env bash
# Opt-in (never run by CI): builds llama-cpp-python[server] in a scratch venv, for
# bench/compat/run.ts. PyPI ships llama-cpp-python as a source distribution only, so pip compiles
# llama.cpp here: expect 10–40 minutes on a small CPU machine.
#
#   bash bench/compat/setup-llama-cpp-python.sh [VENV_DIR]      (default: $RANKCHAIN_CACHE/compat-venv)
#
# Env: LLAMA_CPP_PYTHON_VERSION (default: newest), CMAKE_BUILD_PARALLEL_LEVEL (default: nproc).
set -euo pipefail
CACHE="${RANKCHAIN_CACHE:-$HOME/.cache/rankchain}"
VENV="${1:-$CACHE/compat-venv}"
PY="${PYTHON:-python3}"
SPEC="llama-cpp-python[server]${LLAMA_CPP_PYTHON_VERSION:+==$LLAMA_CPP_PYTHON_VERSION}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  echo "compat: $("$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)') already in $VENV" >&2
  exit 0
fi
echo "compat: building $SPEC in $VENV (compiles llama.cpp; this takes a while)" >&2
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# CPU build without the examples and tools; native CPU flags are fine for a local server
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_OPENMP=ON}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
"$VENV/bin/pip" install --no-cache-dir "$SPEC"
"$VENV/bin/python" -c 'import llama_cpp, llama_cpp.server; print("compat: llama-cpp-python", llama_cpp.__version__, "ready")' >&2
