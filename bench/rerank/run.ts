/**
 * bench/rerank: per reranker, quality on a held-out chain rerank file vs milliseconds and USD per
 * query, in one run (so machine load hits every reranker alike).
 *
 *   npx tsx bench/rerank/run.ts --rerank FILE --cross-encoder DIR [--cross-encoder-base DIR]
 *       [--llm NAME|GGUF] [--llm-queries N] [--queries N] [--depth 20] [--threads 1] [--out FILE]
 *
 * The rerank file: held-out chains (bench/rerank/split.ts writes them with `export`'s split rule;
 * `rankchain export --format mteb-rerank` writes the same format): query = anchor, positives = the
 * first kept steps (graded, closest highest), negatives = the last ones. Without --rerank, "chains"
 * read from STS-B dev (../shared/eval-data/stsb-dev.tsv, never trained on): an anchor sentence that
 * occurs in several scored pairs is the query, partners with gold >= 3.5 are positives (graded by
 * gold − 2.5), partners with gold < 2.5 and six sentences of other pairs are negatives.
 *
 * Rerankers: the embedder (all-MiniLM-L6-v2 ONNX, the first stage); the cross-encoder before
 * training (--cross-encoder-base: MiniLM with a fresh one-label head, bench/rerank/base_ce.py) and
 * after (--cross-encoder: `rankchain posttrain --cross-encoder` on chains that exclude the held-out
 * ones); the pointwise yes/no scorer and the LLM listwise reranker on a local GGUF (--llm, default
 * SmolLM2-135M); the cascade (trained cross-encoder, then the LLM over its top 20). --llm-queries
 * limits the LLM rows (llm, pointwise, cascade) to the first N queries, for slow local models; the
 * other rows are then also reported on those N queries. Local models cost $0; the USD column also
 * shows what the LLM rows' counted tokens would cost at OpenAI list prices (an estimate: the tokens
 * are counted with the local model's tokenizer, not OpenAI's).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { DEFAULT_PRICES, lookupPrice, costUsd } from "../../src/config/prices.ts";
import { modelsDir, PROJECT_ROOT } from "../../src/config/paths.ts";
import { createEmbedder } from "../../src/embed/index.ts";
import { createLocalModel } from "../../src/llm/local/index.ts";
import { evaluateRerankers, type RerankEvaluation, type RerankRecord, type RerankRow } from "../../src/eval/index.ts";
import { CrossEncoder, EmbedderReranker, LlmListwiseReranker, PointwiseYesNoReranker, type RerankOptions, type Reranker } from "../../src/rerank/index.ts";
import { mulberry32 } from "../../src/util/random.ts";

const { values } = parseArgs({
  options: {
    rerank: { type: "string" },
    queries: { type: "string" },
    "llm-queries": { type: "string" },
    depth: { type: "string", default: "20" },
    "cross-encoder": { type: "string" },
    "cross-encoder-base": { type: "string" },
    llm: { type: "string", default: "default" },
    threads: { type: "string", default: "1" },
    stsb: { type: "string" },
    out: { type: "string" },
  },
});
const MINILM = join(modelsDir(), "all-MiniLM-L6-v2");
if (!existsSync(join(MINILM, "onnx", "model.onnx"))) {
  console.log(`bench/rerank: skipped — ${MINILM} is absent (run scripts/setup-embedder.sh)`);
  process.exit(0);
}
if (!values["cross-encoder"]) {
  console.error("bench/rerank: --cross-encoder DIR is required (train one: rankchain posttrain --cross-encoder --data SPLIT/train …)");
  process.exit(2);
}

function stsbFile(n: number): RerankRecord[] {
  const evalData = process.env.RANKCHAIN_EVAL_DATA ?? join(PROJECT_ROOT, "..", "shared", "eval-data");
  const stsb = values.stsb ?? join(evalData, "stsb-dev.tsv");
  if (!existsSync(stsb)) {
    console.log(`bench/rerank: skipped — ${stsb} is absent (set RANKCHAIN_EVAL_DATA or pass --rerank FILE)`);
    process.exit(0);
  }
  const partners = new Map<string, Map<string, number>>();
  const all: string[] = [];
  for (const line of readFileSync(stsb, "utf8").split("\n").slice(1)) {
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

function readRerank(file: string): RerankRecord[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      const r = JSON.parse(l) as RerankRecord;
      if (typeof r.query !== "string" || !Array.isArray(r.positive) || !Array.isArray(r.negative)) {
        console.error(`${file}:${i + 1}: needs query, positive[], negative[]`);
        process.exit(2);
      }
      return r;
    });
}

const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const loadStart = load();
const started = new Date().toISOString();
let queries = values.rerank ? readRerank(values.rerank) : stsbFile(Number(values.queries ?? 12));
if (values.queries) queries = queries.slice(0, Number(values.queries));
const llmQueries = values["llm-queries"] ? Math.min(Number(values["llm-queries"]), queries.length) : queries.length;
const depth = Number(values.depth);
const threads = Number(values.threads);

const embedder = new EmbedderReranker(await createEmbedder(MINILM, { batchSize: 32, threads }), true);
const ce = await CrossEncoder.load(values["cross-encoder"], { threads, name: "trained" });
const ceBase = values["cross-encoder-base"] ? await CrossEncoder.load(values["cross-encoder-base"], { threads, name: "base" }) : undefined;
const local = await createLocalModel({ model: values.llm, gpu: "off", threads });
const ledger = BudgetLedger.inMemory();
/** Counts how often a reranker hands back its input order unchanged (a small LLM that echoes the list scores exactly like the stage before it). */
class EchoCount implements Reranker {
  calls = 0;
  unchanged = 0;
  constructor(private readonly inner: Reranker) {}
  get kind() {
    return this.inner.kind;
  }
  get id() {
    return this.inner.id;
  }
  async rerank(q: string, ps: readonly string[], o?: RerankOptions) {
    const r = await this.inner.rerank(q, ps, o);
    this.calls++;
    if (r.order.every((x, i) => x === i)) this.unchanged++;
    return r;
  }
  dispose() {
    return this.inner.dispose();
  }
}
const llm = new EchoCount(new LlmListwiseReranker({ model: local, ledger, price: undefined, stage: "eval" }));
const pointwise = new EchoCount(new PointwiseYesNoReranker(local));

const t0 = Date.now();
const fileLabel = values.rerank ?? "stsb-dev chains (held out)";
const progress = (label: string) => (d: number, n: number) => process.stderr.write(`\r${label} ${d}/${n} queries`);
// The same queries for every row: the LLM rows' subset first, all rerankers side by side on it;
// then (when --llm-queries is smaller than the file) the cheap rows alone on the whole file.
const parts: { label: string; e: RerankEvaluation }[] = [];
const head = queries.slice(0, llmQueries);
parts.push({
  label: `${head.length} queries`,
  e: await evaluateRerankers({
    file: fileLabel,
    queries: head,
    embedder,
    crossEncoder: ce,
    llm,
    pointwise,
    rerankers: ["embedder", "cross-encoder", "pointwise", "llm", "cascade"],
    depths: [depth],
    onQuery: progress("all rerankers:"),
  }),
});
const baseRows = async (qs: RerankRecord[]) =>
  ceBase
    ? (await evaluateRerankers({ file: fileLabel, queries: qs, embedder, crossEncoder: ceBase, rerankers: ["cross-encoder"], depths: [depth] })).rows.filter(
        (r) => r.reranker === "cross-encoder",
      )
    : [];
parts[0]!.e.rows.splice(1, 0, ...(await baseRows(head)));
if (llmQueries < queries.length) {
  const e = await evaluateRerankers({ file: fileLabel, queries, embedder, crossEncoder: ce, rerankers: ["embedder", "cross-encoder"], depths: [depth], onQuery: progress("cheap rerankers:") });
  e.rows.splice(1, 0, ...(await baseRows(queries)));
  parts.push({ label: `all ${queries.length} queries (no LLM)`, e });
}
process.stderr.write("\n");
const loadEnd = load();

function label(r: RerankRow): string {
  if (r.reranker === "cross-encoder") return r.id.endsWith(":base") ? "cross-encoder (base)" : "cross-encoder (trained)";
  return r.reranker;
}
function table(rows: RerankRow[]): string {
  const head = ["reranker", "depth", "nDCG@10", "MAP", "MRR@10", "USD/query", "ms/query", "queries"];
  const body = rows.map((r) => [label(r), r.depth === null ? "all" : String(r.depth), r["ndcg@10"].toFixed(2), r.map.toFixed(2), r["mrr@10"].toFixed(2), String(r.usd_per_query), r.ms_per_query.toFixed(1), String(r.queries)]);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((x) => x[i]!.length)));
  const lines = all.map((x) => x.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  lines.splice(1, 0, w.map((x) => "-".repeat(x)).join("  "));
  return lines.join("\n");
}
const PRICED = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"] as const;
const estimate = (r: RerankRow) =>
  Object.fromEntries(
    PRICED.map((m) => {
      const p = lookupPrice(DEFAULT_PRICES, "openai", m)!;
      return [m, r.queries ? costUsd(p, r.input_tokens, r.output_tokens) / r.queries : 0];
    }),
  );
console.log(
  `bench/rerank — ${started}; load average ${loadStart} at start, ${loadEnd} at end (2 cores, shared); ${((Date.now() - t0) / 1000).toFixed(0)} s\n` +
    `file ${fileLabel}; depth ${depth}; ${threads} thread(s) per model; LLM ${local.modelId} (local, $0); cross-encoder ${ce.source}` +
    (ceBase ? ` (base: ${ceBase.source})` : ""),
);
for (const { label: partLabel, e } of parts) {
  console.log(`\n${partLabel} (${e.candidates_per_query.mean} candidates per query on average; rows in order: embedder, cross-encoder base, cross-encoder trained, …)`);
  console.log(table(e.rows));
  const base = e.rows.find((r) => r.reranker === "embedder")!;
  for (const r of e.rows) {
    if (r === base) continue;
    const est = r.input_tokens > 0 ? `; at OpenAI list price (estimate) ${PRICED.map((m) => `${m} $${estimate(r)[m]!.toFixed(6)}`).join(", ")} per query (${(r.input_tokens / r.queries).toFixed(0)} in / ${(r.output_tokens / r.queries).toFixed(0)} out tokens)` : "";
    console.log(
      `  ${label(r).padEnd(24)} nDCG@10 ${(r["ndcg@10"] - base["ndcg@10"] >= 0 ? "+" : "") + (r["ndcg@10"] - base["ndcg@10"]).toFixed(2)} vs the embedder, ${(r.ms_per_query / Math.max(base.ms_per_query, 1e-9)).toFixed(1)}× its ms/query${est}`,
    );
  }
}
console.log(
  `\nthe LLM handed back its input order unchanged in ${llm.unchanged} of ${llm.calls} listwise calls (llm + cascade rows); pointwise: ${pointwise.unchanged} of ${pointwise.calls}`,
);
if (values.out) {
  writeFileSync(
    values.out,
    JSON.stringify(
      {
        started,
        load_average: { start: loadStart, end: loadEnd },
        llm_unchanged_order: { listwise: [llm.unchanged, llm.calls], pointwise: [pointwise.unchanged, pointwise.calls] },
        settings: { file: fileLabel, depth, threads, llm: local.modelId, cross_encoder: ce.source, cross_encoder_base: ceBase?.source ?? null, llm_queries: llmQueries },
        parts: parts.map(({ label, e }) => ({ label, ...e, estimates: Object.fromEntries(e.rows.filter((r) => r.input_tokens > 0).map((r) => [`${r.reranker}@${r.depth}`, estimate(r)])) })),
      },
      null,
      2,
    ) + "\n",
  );
}
await embedder.dispose();
await ce.dispose();
await ceBase?.dispose();
await local.dispose();
