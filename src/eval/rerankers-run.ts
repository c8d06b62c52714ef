import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import type { ProviderName } from "../llm/types.ts";
import { createLlmReranker, CrossEncoder, EmbedderReranker, type Reranker } from "../rerank/index.ts";
import { readRerankFile } from "./rerank.ts";
import { evaluateRerankers, RERANKER_NAMES, type RerankerName, type RerankEvaluation } from "./rerankers.ts";

export interface RerankEvalOptions {
  rerank: string;
  rerankers: string;
  depth: string;
  /** The embedder (first stage): an exported model dir, registry name, hub id or openai:<model>. */
  embedder?: string | undefined;
  crossEncoder?: string | undefined;
  llmProvider?: string | undefined;
  llmModel?: string | undefined;
  llmBaseUrl?: string | undefined;
  llmMaxUsd?: number | undefined;
  /** Ledger the LLM spends through (stage "eval"): the run's ledger.jsonl with --data. */
  ledgerPath?: string | undefined;
  prices?: string | undefined;
  /** eval.json to merge the `rerank` section into (created when absent). */
  out: string;
  onQuery?: (done: number, total: number) => void;
}

export function parseRerankers(value: string): RerankerName[] {
  const names = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new ConfigError(`--rerankers names none (${RERANKER_NAMES.join(", ")})`);
  for (const n of names) if (!(RERANKER_NAMES as readonly string[]).includes(n)) throw new ConfigError(`--rerankers: unknown reranker "${n}" (known: ${RERANKER_NAMES.join(", ")})`);
  return [...new Set(names)] as RerankerName[];
}

export function parseDepths(value: string): number[] {
  const ds = value.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (ds.length === 0 || ds.some((d) => !Number.isInteger(d) || d < 1)) throw new ConfigError(`--depth expects a comma list of integers >= 1, got "${value}"`);
  return [...new Set(ds)].sort((a, b) => a - b);
}

/** Runs the reranking evaluation and merges it into eval.json as `rerank`. */
export async function runRerankEval(o: RerankEvalOptions): Promise<{ evaluation: RerankEvaluation; outPath: string }> {
  const names = parseRerankers(o.rerankers);
  const depths = parseDepths(o.depth);
  if (!existsSync(o.rerank)) throw new ConfigError("no such rerank file (--rerank)", { location: { file: o.rerank } });
  const needCe = names.includes("cross-encoder") || names.includes("cascade");
  const needLlm = names.includes("llm") || names.includes("cascade");
  if (needCe && !o.crossEncoder) throw new ConfigError("--rerankers cross-encoder/cascade need --cross-encoder DIR");
  const queries = await readRerankFile(o.rerank);
  if (queries.length === 0) throw new ConfigError("no records in the reranking file (--rerank)", { location: { file: o.rerank } });
  const { createEmbedder } = await import("../embed/index.ts");
  const embedder = new EmbedderReranker(await createEmbedder(o.embedder), true);
  const held: Reranker[] = [embedder];
  try {
    const ce = needCe ? await CrossEncoder.load(o.crossEncoder!) : undefined;
    if (ce) held.push(ce);
    const llm = needLlm
      ? await createLlmReranker({
          provider: (o.llmProvider ?? "local") as ProviderName,
          model: o.llmModel ?? ((o.llmProvider ?? "local") === "local" ? "default" : ""),
          baseUrl: o.llmBaseUrl,
          maxUsd: o.llmMaxUsd,
          ledgerPath: o.ledgerPath,
          prices: o.prices,
          stage: "eval",
        })
      : undefined;
    if (llm) held.push(llm.reranker);
    let pointwise: Reranker | undefined;
    if (names.includes("pointwise")) {
      if ((o.llmProvider ?? "local") !== "local") throw new ConfigError("--rerankers pointwise needs a local model (--llm-provider local)");
      const { createLocalModel } = await import("../llm/local/index.ts");
      const { PointwiseYesNoReranker } = await import("../rerank/pointwise.ts");
      pointwise = new PointwiseYesNoReranker(await createLocalModel({ model: o.llmModel ?? "default", gpu: "auto" }), { ownsModel: true });
      held.push(pointwise);
    }
    const evaluation = await evaluateRerankers({ file: o.rerank, queries, embedder, crossEncoder: ce, llm: llm?.reranker, pointwise, rerankers: names, depths, ...(o.onQuery ? { onQuery: o.onQuery } : {}) });
    await llm?.ledger.close();
    const outPath = resolve(o.out);
    mkdirSync(dirname(outPath), { recursive: true });
    let doc: Record<string, unknown> = {};
    if (existsSync(outPath)) {
      try {
        doc = JSON.parse(readFileSync(outPath, "utf8")) as Record<string, unknown>;
      } catch (e) {
        throw new ConfigError(`cannot merge into ${outPath}: ${(e as Error).message}`, { location: { file: outPath } });
      }
    }
    const merged = { primary_metric: "rerank", metrics: [], usd: null, usd_per_point: null, model: o.embedder ?? "all-MiniLM-L6-v2", baseline: null, ...doc, rerank: evaluation };
    writeFileSync(outPath, JSON.stringify(merged, null, 2) + "\n");
    return { evaluation, outPath };
  } finally {
    for (const r of held) await r.dispose();
  }
}

export const defaultEvalOut = (data: string | undefined, out: string | undefined): string => resolve(out ?? (data ? join(data, "eval.json") : "eval.json"));
