/**
 * Rerankers (src/rerank): given a query and candidate passages, return the passages' order, most
 * relevant first. Every reranker reports what it spent (USD through the budget ledger, tokens,
 * calls), so evaluations can put quality next to cost and latency.
 */
export type RerankerKind = "embedder" | "cross-encoder" | "llm" | "pointwise" | "cascade";

export interface RerankUsage {
  usd: number;
  inputTokens: number;
  outputTokens: number;
  calls: number;
}

export interface RerankResult {
  /** Indices into the input passages, most relevant first; a permutation of 0..n-1. */
  order: number[];
  /** Per-passage scores in input order, when the reranker has them (higher = more relevant). */
  scores?: number[] | undefined;
  usage: RerankUsage;
  /** Malformed LLM answers that were repaired (listwise only). */
  repairs?: PermutationIssues[] | undefined;
}

export interface PermutationIssues {
  duplicates: number;
  missing: number;
  outOfRange: number;
  /** true when no identifier at all could be read (the window kept its input order). */
  unparsable: boolean;
}

export interface RerankOptions {
  /** Ledger attribution for paid calls (e.g. the chain id). */
  chainId?: string | undefined;
  abortSignal?: AbortSignal | undefined;
}

export interface Reranker {
  readonly kind: RerankerKind;
  /** Stable id recorded in results, e.g. "cross-encoder:onnx:rankchain-ce" or "llm:openai/gpt-4o-mini". */
  readonly id: string;
  rerank(query: string, passages: readonly string[], options?: RerankOptions): Promise<RerankResult>;
  dispose(): Promise<void>;
}

export const zeroUsage = (): RerankUsage => ({ usd: 0, inputTokens: 0, outputTokens: 0, calls: 0 });

export function addUsage(a: RerankUsage, b: RerankUsage): RerankUsage {
  return { usd: a.usd + b.usd, inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens, calls: a.calls + b.calls };
}

/** Indices sorted by score descending; ties keep input order (stable). */
export function orderByScores(scores: readonly number[]): number[] {
  return scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}
