import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import { ChainRecordSchema } from "../store/chain-record.ts";
import { readJsonl } from "../store/jsonl.ts";
import { readJsonObjectIfPresent } from "../store/json-file.ts";
import type { EvalMetric } from "../eval/index.ts";
import { StreamingHistogram } from "../validate/histogram.ts";
import { reasonKind } from "../validate/policy.ts";
import { runCost, type RunCost } from "../validate/cost.ts";
import { readMine, type MineReportData } from "./mine.ts";

/**
 * Everything report.html shows, gathered from a run directory in one streaming pass over
 * validated.jsonl (or chains.jsonl before validation): fixed-size histograms per step and for
 * Spearman, bounded best/worst lists, counts. Memory does not grow with the run.
 */
export interface StepBand {
  step: number;
  n: number;
  p25: number | null;
  median: number | null;
  p75: number | null;
}

export interface ExampleChain {
  id: string;
  anchor: string;
  steps: { text: string; sim: number | null; dropped: boolean }[];
  spearman: number | null;
  status: string;
  reasons: string[];
  generator: string;
}

/** One before/after row; `delta` is the improvement (model − baseline, negated when lower is better). */
export type { EvalMetric } from "../eval/index.ts";

export interface EvalData {
  primary_metric: string | null;
  metrics: EvalMetric[];
  usd: number | null;
  usd_per_point: number | null;
  /** eval --rerank --rerankers: one row per reranker and depth (src/rerank/evaluate.ts). */
  rerank: { file: string; queries: number; rows: RerankReportRow[] } | null;
}

export interface RerankReportRow {
  reranker: string;
  id: string;
  depth: number | null;
  queries: number;
  ndcg10: number | null;
  map: number | null;
  mrr10: number | null;
  usd_per_query: number | null;
  ms_per_query: number | null;
  incomplete: boolean;
}

/** validate --judge: the judges' agreement (src/validate/judges.ts), read leniently. */
export interface JudgeReport {
  mode: string;
  judges: string[];
  ids: Record<string, string>;
  matrix: (number | null)[][];
  n: number[][];
  counts: Record<string, number>;
  llm_usd: number | null;
  llm_cap_usd: number | null;
  per_judge: Record<string, { chains: number; in_order_rate: number | null; mean_kendall: number | null }>;
}

export interface ReportData {
  run: string;
  generated_at: string;
  validated: boolean;
  embedder: string | null;
  policy: string | null;
  thresholds: Record<string, unknown> | null;
  counts: { chains: number; accepted: number; repaired: number; rejected: number };
  reasons: { kind: string; chains: number }[];
  decay: { all: StepBand[]; kept: StepBand[] };
  spearman: { edges: number[]; all: number[]; kept: number[]; nulls: number };
  cost: RunCost & { kept_chains: number; usd_per_kept_chain: number | null };
  generators: { name: string; chains: number }[];
  best: ExampleChain[];
  worst: ExampleChain[];
  eval: EvalData | null;
  judges: JudgeReport | null;
  /** mine.json, when `rankchain mine` ran on this run. */
  mine?: MineReportData | null;
}

const MAX_STEPS = 256;
const EXAMPLES = 3;
const SPEARMAN_BINS = 20;

/** Reads validation fields leniently: a report must render whatever version wrote the file. */
const LooseValidation = z
  .object({
    embedder: z.string().optional(),
    sims_to_anchor: z.array(z.number()).optional(),
    dropped_sims_to_anchor: z.array(z.number()).optional(),
    dropped_steps: z.array(z.string()).optional(),
    spearman: z.number().nullable().optional(),
    status: z.string().optional(),
    reasons: z.array(z.string()).optional(),
    policy: z.string().optional(),
  })
  .passthrough();

const ReportRecordSchema = ChainRecordSchema.extend({ validation: LooseValidation.optional() });

function bands(hists: StreamingHistogram[]): StepBand[] {
  const out: StepBand[] = [];
  hists.forEach((h, i) => {
    if (h.count === 0) return;
    out.push({ step: i + 1, n: h.count, p25: round(h.quantile(0.25)), median: round(h.quantile(0.5)), p75: round(h.quantile(0.75)) });
  });
  return out;
}

function round(x: number | null): number | null {
  return x === null ? null : Math.round(x * 1e4) / 1e4;
}

function num(x: unknown): number | null {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

/** Reads eval.json (written by `rankchain eval`), tolerating missing or odd fields. */
export function readEval(runDir: string): EvalData | null {
  const d = readJsonObjectIfPresent(join(runDir, "eval.json"));
  if (!d) return null;
  const metrics: EvalMetric[] = [];
  if (Array.isArray(d.metrics)) {
    for (const m of d.metrics) {
      if (!m || typeof m !== "object") continue;
      const r = m as Record<string, unknown>;
      const baseline = num(r.baseline);
      const model = num(r.model);
      const greater = r.greater_is_better !== false;
      const delta = num(r.delta) ?? (baseline !== null && model !== null ? (greater ? model - baseline : baseline - model) : null);
      metrics.push({
        name: typeof r.name === "string" ? r.name : "metric",
        baseline,
        model,
        delta,
        greater_is_better: greater,
        ...(typeof r.description === "string" ? { description: r.description } : {}),
      });
    }
  }
  let rerank: EvalData["rerank"] = null;
  const rr = d.rerank as Record<string, unknown> | undefined;
  if (rr && typeof rr === "object" && Array.isArray(rr.rows)) {
    const rows: RerankReportRow[] = [];
    for (const x of rr.rows) {
      if (!x || typeof x !== "object") continue;
      const r = x as Record<string, unknown>;
      rows.push({
        reranker: typeof r.reranker === "string" ? r.reranker : "?",
        id: typeof r.id === "string" ? r.id : "",
        depth: num(r.depth),
        queries: num(r.queries) ?? 0,
        ndcg10: num(r["ndcg@10"]),
        map: num(r.map),
        mrr10: num(r["mrr@10"]),
        usd_per_query: num(r.usd_per_query),
        ms_per_query: num(r.ms_per_query),
        incomplete: r.incomplete !== undefined,
      });
    }
    rerank = { file: typeof rr.file === "string" ? rr.file : "", queries: num(rr.queries) ?? 0, rows };
  }
  return {
    primary_metric: typeof d.primary_metric === "string" ? d.primary_metric : null,
    metrics,
    usd: num(d.usd),
    usd_per_point: num(d.usd_per_point),
    rerank,
  };
}

/** The judges section of validation.json, tolerating missing or odd fields. */
export function readJudges(summary: Record<string, unknown> | null): JudgeReport | null {
  const j = summary?.judges as Record<string, unknown> | undefined;
  if (!j || typeof j !== "object") return null;
  const a = (j.agreement ?? {}) as Record<string, unknown>;
  const judges = Array.isArray(a.judges) ? a.judges.filter((x): x is string => typeof x === "string") : [];
  const grid = (v: unknown): (number | null)[][] => (Array.isArray(v) ? v.map((row) => (Array.isArray(row) ? row.map((c) => num(c)) : [])) : []);
  const counts: Record<string, number> = {};
  if (j.counts && typeof j.counts === "object") for (const [k, v] of Object.entries(j.counts)) if (typeof v === "number") counts[k] = v;
  const perJudge: JudgeReport["per_judge"] = {};
  if (j.per_judge && typeof j.per_judge === "object") {
    for (const [k, v] of Object.entries(j.per_judge as Record<string, Record<string, unknown>>)) {
      perJudge[k] = { chains: num(v?.chains) ?? 0, in_order_rate: num(v?.in_order_rate), mean_kendall: num(v?.mean_kendall) };
    }
  }
  const ids: Record<string, string> = {};
  if (j.judges && typeof j.judges === "object") for (const [k, v] of Object.entries(j.judges)) if (typeof v === "string") ids[k] = v;
  return {
    mode: typeof j.mode === "string" ? j.mode : "?",
    judges,
    ids,
    matrix: grid(a.matrix),
    n: grid(a.n).map((row) => row.map((c) => c ?? 0)),
    counts,
    llm_usd: num(j.llm_usd),
    llm_cap_usd: num(j.llm_cap_usd),
    per_judge: perJudge,
  };
}

function readSummary(runDir: string): Record<string, unknown> | null {
  return readJsonObjectIfPresent(join(runDir, "validation.json"));
}

/** Keeps the k best items by a score (descending) without holding more than k. */
class TopK<T> {
  private items: { score: number; item: T }[] = [];
  constructor(
    private readonly k: number,
    private readonly better: (a: number, b: number) => boolean,
  ) {}
  offer(score: number, make: () => T): void {
    if (this.items.length >= this.k && !this.better(score, this.items[this.items.length - 1]!.score)) return;
    this.items.push({ score, item: make() });
    this.items.sort((a, b) => (this.better(a.score, b.score) ? -1 : this.better(b.score, a.score) ? 1 : 0));
    if (this.items.length > this.k) this.items.pop();
  }
  values(): T[] {
    return this.items.map((x) => x.item);
  }
}

export async function collectReportData(runDir: string): Promise<ReportData> {
  const validatedPath = join(runDir, "validated.jsonl");
  const chainsPath = join(runDir, "chains.jsonl");
  const validated = existsSync(validatedPath);
  const input = validated ? validatedPath : chainsPath;
  const summary = readSummary(runDir);

  const all: StreamingHistogram[] = [];
  const kept: StreamingHistogram[] = [];
  const hist = (arr: StreamingHistogram[], i: number) => (arr[i] ??= new StreamingHistogram(-1, 1, 400));
  const rhoAll = new Array<number>(SPEARMAN_BINS).fill(0);
  const rhoKept = new Array<number>(SPEARMAN_BINS).fill(0);
  let nulls = 0;
  const counts = { chains: 0, accepted: 0, repaired: 0, rejected: 0 };
  const reasons = new Map<string, number>();
  const generators = new Map<string, number>();
  let chainsUsd = 0;
  let sawUsd = false;
  let embedder: string | null = null;
  let policy: string | null = null;
  const best = new TopK<ExampleChain>(EXAMPLES, (a, b) => a > b);
  const worst = new TopK<ExampleChain>(EXAMPLES, (a, b) => a < b);

  if (existsSync(input)) {
    for await (const { value: r } of readJsonl(input, ReportRecordSchema, { onIssue: () => undefined })) {
      counts.chains++;
      const gen = `${r.generator.provider}/${r.generator.model} (${r.generator.steering})`;
      generators.set(gen, (generators.get(gen) ?? 0) + 1);
      if (typeof r.usage.usd === "number") {
        chainsUsd += r.usage.usd;
        sawUsd = true;
      }
      const v = r.validation;
      if (!v) continue;
      embedder ??= v.embedder ?? null;
      policy ??= v.policy ?? null;
      const status = v.status === "accepted" || v.status === "repaired" || v.status === "rejected" ? v.status : "rejected";
      counts[status]++;
      const kinds = new Set((v.reasons ?? []).map(reasonKind));
      for (const k of kinds) reasons.set(k, (reasons.get(k) ?? 0) + 1);
      const sims = [...(v.sims_to_anchor ?? []), ...(v.dropped_sims_to_anchor ?? [])];
      sims.forEach((s, i) => {
        if (i < MAX_STEPS) hist(all, i).add(s);
      });
      if (status !== "rejected") (v.sims_to_anchor ?? []).forEach((s, i) => i < MAX_STEPS && hist(kept, i).add(s));
      const rho = v.spearman ?? null;
      if (rho === null) nulls++;
      else {
        const b = Math.min(SPEARMAN_BINS - 1, Math.max(0, Math.floor(((rho + 1) / 2) * SPEARMAN_BINS)));
        rhoAll[b]!++;
        if (status !== "rejected") rhoKept[b]!++;
      }
      const example = (): ExampleChain => {
        const keptSims = v.sims_to_anchor ?? [];
        const steps = r.steps.map((text, i) => ({ text, sim: keptSims[i] ?? null, dropped: false }));
        (v.dropped_steps ?? []).forEach((text, i) => steps.push({ text, sim: v.dropped_sims_to_anchor?.[i] ?? null, dropped: true }));
        return { id: r.id, anchor: r.anchor, steps, spearman: rho, status, reasons: v.reasons ?? [], generator: gen };
      };
      // best: kept chains, highest Spearman, longer chains first on ties; worst: any chain, lowest
      if (status !== "rejected" && rho !== null) best.offer(rho + Math.min(r.steps.length, 999) * 1e-6, example);
      worst.offer(rho === null ? -2 : rho, example);
    }
  }

  const cost = await runCost(runDir, sawUsd ? chainsUsd : null);
  const keptChains = validated ? counts.accepted + counts.repaired : 0;
  const edges = Array.from({ length: SPEARMAN_BINS + 1 }, (_, i) => Math.round((-1 + (2 * i) / SPEARMAN_BINS) * 100) / 100);
  return {
    run: basename(runDir.replace(/[\\/]+$/, "")),
    generated_at: new Date().toISOString(),
    validated,
    embedder: embedder ?? (summary?.embedder && typeof summary.embedder === "object" ? String((summary.embedder as { id?: unknown }).id ?? "") || null : null),
    policy: policy ?? (typeof summary?.policy === "string" ? summary.policy : null),
    thresholds: summary?.thresholds && typeof summary.thresholds === "object" ? (summary.thresholds as Record<string, unknown>) : null,
    counts,
    reasons: [...reasons].map(([kind, chains]) => ({ kind, chains })).sort((a, b) => b.chains - a.chains),
    decay: { all: bands(all), kept: bands(kept) },
    spearman: { edges, all: rhoAll, kept: rhoKept, nulls },
    cost: { ...cost, kept_chains: keptChains, usd_per_kept_chain: cost.usd !== null && keptChains > 0 ? cost.usd / keptChains : null },
    generators: [...generators].map(([name, chains]) => ({ name, chains })).sort((a, b) => b.chains - a.chains),
    best: best.values(),
    worst: worst.values(),
    eval: readEval(runDir),
    judges: readJudges(summary),
    mine: readMine(runDir),
  };
}
