import { performance } from "node:perf_hooks";
import { BudgetExceededError } from "../errors.ts";
import { addUsage, zeroUsage, type Reranker, type RerankUsage } from "../rerank/types.ts";
import { mulberry32 } from "../util/random.ts";
import { averagePrecision, candidates, ndcgAt, reciprocalRankAt, type RerankRecord } from "./rerank.ts";

/**
 * The reranking evaluation (`rankchain eval --rerank FILE --rerankers … --depth …`): every query's
 * candidates (positives + negatives, shuffled with a fixed seed so file order leaks nothing) are
 * ranked by the embedder (the first stage); each other reranker then reorders the first stage's
 * top `depth` (the rest keeps first-stage order). `cascade` = the cross-encoder over the top
 * `depth`, then the LLM over the cross-encoder's top `window` — an LLM reordering the
 * cross-encoder's output. Quality (nDCG@10, MAP, MRR@10, ×100 with src/eval/rerank.ts' definitions),
 * USD and milliseconds per query are reported side by side. An LLM reranker that reaches its cap stops; its row then covers fewer
 * queries (`queries`, `incomplete: "budget"`).
 */
export type RerankerName = "embedder" | "cross-encoder" | "llm" | "cascade" | "pointwise";
export const RERANKER_NAMES: readonly RerankerName[] = ["embedder", "cross-encoder", "llm", "cascade", "pointwise"];

export interface RerankRow {
  reranker: RerankerName;
  id: string;
  /** Candidates reranked per query (null for the embedder: it ranks them all). */
  depth: number | null;
  queries: number;
  "ndcg@10": number;
  map: number;
  "mrr@10": number;
  usd_per_query: number;
  ms_per_query: number;
  usd_total: number;
  calls: number;
  /** LLM tokens counted over the row's queries (0 for rerankers without tokens); what a price table turns into an estimate. */
  input_tokens: number;
  output_tokens: number;
  incomplete?: "budget";
}

export interface RerankEvaluation {
  file: string;
  queries: number;
  candidates_per_query: { min: number; mean: number; max: number };
  depths: number[];
  seed: number;
  rows: RerankRow[];
  conventions: string;
}

export interface EvaluateRerankersOptions {
  file: string;
  queries: RerankRecord[];
  embedder: Reranker;
  crossEncoder?: Reranker | undefined;
  llm?: Reranker | undefined;
  pointwise?: Reranker | undefined;
  rerankers: RerankerName[];
  depths: number[];
  /** cascade: how many of the cross-encoder's top the LLM reorders (default 20). */
  cascadeWindow?: number;
  seed?: number;
  onQuery?: (done: number, total: number) => void;
}

interface Acc {
  ndcg: number;
  map: number;
  mrr: number;
  ms: number;
  usage: RerankUsage;
  n: number;
  stopped: boolean;
}

const newAcc = (): Acc => ({ ndcg: 0, map: 0, mrr: 0, ms: 0, usage: zeroUsage(), n: 0, stopped: false });

function shuffle<T>(xs: T[], rand: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export async function evaluateRerankers(o: EvaluateRerankersOptions): Promise<RerankEvaluation> {
  const seed = o.seed ?? 13;
  const rand = mulberry32(seed);
  const window = o.cascadeWindow ?? 20;
  const stage2 = o.rerankers.filter((r) => r !== "embedder");
  const accs = new Map<string, Acc>();
  const key = (r: RerankerName, d: number | null) => `${r}@${d ?? "all"}`;
  accs.set(key("embedder", null), newAcc());
  for (const r of stage2) for (const d of o.depths) accs.set(key(r, d), newAcc());
  const sizes: number[] = [];

  for (const [qi, q] of o.queries.entries()) {
    const cands = shuffle(candidates(q), rand);
    sizes.push(cands.length);
    const texts = cands.map((c) => c.text);
    const gains = cands.map((c) => c.gain);
    const score = (a: Acc, ranking: number[], ms: number, usage: RerankUsage) => {
      a.ndcg += ndcgAt(ranking, gains, 10);
      a.map += averagePrecision(ranking, gains);
      a.mrr += reciprocalRankAt(ranking, gains, 10);
      a.ms += ms;
      a.usage = addUsage(a.usage, usage);
      a.n++;
    };
    let t0 = performance.now();
    const first = await o.embedder.rerank(q.query, texts);
    score(accs.get(key("embedder", null))!, first.order, performance.now() - t0, first.usage);

    for (const d of o.depths) {
      const top = first.order.slice(0, d);
      const rest = first.order.slice(d);
      const topTexts = top.map((i) => texts[i]!);
      for (const r of stage2) {
        const acc = accs.get(key(r, d))!;
        if (acc.stopped) continue;
        t0 = performance.now();
        try {
          let order: number[];
          let usage = zeroUsage();
          if (r === "cascade") {
            const ce = await o.crossEncoder!.rerank(q.query, topTexts);
            const head = ce.order.slice(0, window);
            const llm = await o.llm!.rerank(q.query, head.map((i) => topTexts[i]!), { chainId: `query-${qi + 1}` });
            order = [...llm.order.map((k) => head[k]!), ...ce.order.slice(window)];
            usage = addUsage(ce.usage, llm.usage);
          } else {
            const rr = r === "cross-encoder" ? o.crossEncoder : r === "llm" ? o.llm : o.pointwise;
            const res = await rr!.rerank(q.query, topTexts, { chainId: `query-${qi + 1}` });
            order = res.order;
            usage = res.usage;
          }
          score(acc, [...order.map((k) => top[k]!), ...rest], performance.now() - t0, usage);
        } catch (e) {
          if (e instanceof BudgetExceededError) {
            acc.stopped = true;
            continue;
          }
          throw e;
        }
      }
    }
    o.onQuery?.(qi + 1, o.queries.length);
  }

  const idOf = (r: RerankerName) =>
    r === "embedder" ? o.embedder.id : r === "cross-encoder" ? o.crossEncoder!.id : r === "llm" ? o.llm!.id : r === "pointwise" ? o.pointwise!.id : `${o.crossEncoder!.id} → ${o.llm!.id}`;
  const rows: RerankRow[] = [];
  for (const [k, a] of accs) {
    const [name, d] = k.split("@") as [RerankerName, string];
    const n = Math.max(a.n, 1);
    rows.push({
      reranker: name,
      id: idOf(name),
      depth: d === "all" ? null : Number(d),
      queries: a.n,
      "ndcg@10": r2((a.ndcg / n) * 100),
      map: r2((a.map / n) * 100),
      "mrr@10": r2((a.mrr / n) * 100),
      usd_per_query: r9(a.usage.usd / n),
      ms_per_query: Math.round((a.ms / n) * 100) / 100,
      usd_total: r9(a.usage.usd),
      calls: a.usage.calls,
      input_tokens: a.usage.inputTokens,
      output_tokens: a.usage.outputTokens,
      ...(a.stopped ? { incomplete: "budget" as const } : {}),
    });
  }
  return {
    file: o.file,
    queries: o.queries.length,
    candidates_per_query: { min: Math.min(...sizes), mean: r4(sizes.reduce((s, x) => s + x, 0) / sizes.length), max: Math.max(...sizes) },
    depths: o.depths,
    seed,
    rows,
    conventions:
      "candidates = positives + negatives, shuffled (seed); the embedder ranks all (first stage); each other reranker reorders the first stage's top `depth`; cascade = cross-encoder over the top depth, then the LLM over its top 20; metrics (x100, src/eval/rerank.ts definitions) are means over the queries in `queries`; ms_per_query is the reranker's own time (the first stage's is the embedder row)",
  };
}

const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
const r2 = (x: number) => Math.round(x * 100) / 100;
const r9 = (x: number) => Math.round(x * 1e9) / 1e9;

/** A plain-text table of the rows for the terminal. */
export function formatRerankTable(e: RerankEvaluation): string {
  const head = ["reranker", "depth", "nDCG@10 x100", "MAP x100", "MRR@10 x100", "USD/query", "ms/query", "queries"];
  const rows = e.rows.map((r) => [
    r.reranker,
    r.depth === null ? "all" : String(r.depth),
    r["ndcg@10"].toFixed(2),
    r.map.toFixed(2),
    r["mrr@10"].toFixed(2),
    r.usd_per_query.toPrecision(3),
    r.ms_per_query.toFixed(1),
    `${r.queries}${r.incomplete ? " (cap)" : ""}`,
  ]);
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const lines = all.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  lines.splice(1, 0, w.map((x) => "-".repeat(x)).join("  "));
  return lines.join("\n");
}
