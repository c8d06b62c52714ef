#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what is needed (scripts/setup.sh,
# with chromium for the report test; PostgreSQL via scripts/setup-postgres.sh), then the TypeScript suite (vitest), the type check, and the
# Python suite (pytest). The closing lines of each runner tell the counts.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_WITH_CHROMIUM=1 bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ONNXRUNTIME_NODE_INSTALL=skip

echo "== postgresql (shared-ledger tests)" >&2
# Debian's postgresql on a private port and data directory (installed if missing); stopped at exit.
RANKCHAIN_TEST_PG_URL=$(bash scripts/setup-postgres.sh)
export RANKCHAIN_TEST_PG_URL
trap 'bash scripts/setup-postgres.sh stop' EXIT

echo "== type check" >&2
npx tsc --noEmit -p tsconfig.json

echo "== python tests (pytest)" >&2
.venv/bin/python -m pytest -q posttrain/tests

echo "== typescript tests (vitest)" >&2
npx vitest run
