#!/usr/bin/env bash
# The main job end to end on the embedded default, with no API key:
#   install → pull the default local model → generate chains with classifier-free guidance from the
#   seed file the project ships → validate them with the default embedder → post-train the
#   embedder on the accepted chains (CPU) → evaluate before vs after → report.html.
# Output: generations/demo/ (override with DEMO_OUT=dir). DEMO_STEPS, DEMO_LIMIT tune its size.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ONNXRUNTIME_NODE_INSTALL=skip
OUT=${DEMO_OUT:-generations/demo}
rm -rf "$OUT"
rc() { node bin/rankchain.js "$@"; }

echo "== generate (local model, CFG steering)" >&2
# SmolLM2-135M often copies its input under greedy decoding; sampling at 0.7 with a fixed seed
# keeps the run reproducible and lets the guidance move the chain.
rc generate --input examples/seeds.txt --out "$OUT" --provider local --steering cfg --guidance 1.5 \
  --temperature 0.7 --seed 1 --steps "${DEMO_STEPS:-6}" --concurrency 1 ${DEMO_LIMIT:+--limit "$DEMO_LIMIT"}

echo "== validate (embedding gate)" >&2
rc validate "$OUT" --policy repair

echo "== posttrain (CPU, a short run)" >&2
EMBEDDER="${RANKCHAIN_CACHE:-$HOME/.cache/rankchain}/models/all-MiniLM-L6-v2"
rc posttrain --data "$OUT" --base-model "$EMBEDDER" --out "$OUT/post" --device cpu --max-steps 20

echo "== eval (before vs after)" >&2
STS=../shared/eval-data/stsb-dev.tsv
[ -f "$STS" ] || STS=examples/sts-mini.tsv
rc eval --model "$OUT/post/model" --baseline "$EMBEDDER" --sts "$STS" --data "$OUT"

rc report "$OUT"

# The gain with its controls: the same chains trained 3 times (seeds 1-3) in order and with their
# rewrites shuffled; deltas on the reporting sets with mean ± sd (skipped when ../shared is absent).
if [ "${DEMO_GAIN:-1}" != "0" ]; then
  echo "== gain over 3 seeds, ordered vs shuffled-order control (reporting sets only)" >&2
  PYTHONPATH="$PWD/posttrain${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python bench/posttrain/gain.py --data "$OUT" \
    --seeds 1,2,3 --arms ordered,shuffled --epochs 2 --lr 1e-5 --json "$OUT/gain.json" || echo "gain step failed (see above)" >&2
fi
echo "== summary" >&2
node -e '
const fs = require("fs"); const dir = process.argv[1];
const run = JSON.parse(fs.readFileSync(dir + "/run.json", "utf8"));
const val = fs.existsSync(dir + "/validation.json") ? JSON.parse(fs.readFileSync(dir + "/validation.json", "utf8")) : null;
const chains = fs.readFileSync(dir + "/chains.jsonl", "utf8").trim().split("\n").map(JSON.parse);
console.log(`chains: ${run.totals.chains_done} (${run.totals.steps} steps, ${run.totals.chains_truncated} truncated), model ${chains[0].generator.model}, steering ${chains[0].generator.steering}`);
if (val) console.log("validation:", JSON.stringify(val.counts ?? val.summary ?? {}));
const ev = fs.existsSync(dir + "/eval.json") ? JSON.parse(fs.readFileSync(dir + "/eval.json", "utf8")) : null;
if (ev) for (const m of ev.metrics) console.log(`eval ${m.name}: baseline ${m.baseline?.toFixed?.(2)} → model ${m.model?.toFixed?.(2)} (delta ${m.delta?.toFixed?.(2)})`);
const c = chains[0]; console.log("example chain:"); console.log("  0. " + c.anchor); c.steps.forEach((s, i) => console.log(`  ${i + 1}. ${s}`));
console.log(`report: ${dir}/report.html`);
' "$OUT"
