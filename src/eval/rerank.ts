import { z } from "zod";
import { readJsonl } from "../store/jsonl.ts";

/**
 * The reranking-task format (`export --format mteb-rerank` writes it; `eval --rerank FILE` reads it,
 * and so does any reranker that wants to be scored on it). One JSON object per line, as in MTEB's
 * reranking tasks:
 *
 *   {"query": "…", "positive": ["…", …], "negative": ["…", …], "positive_relevance": [3, 2, 1]}
 *
 * - `query`: the text to rank for (for chains: the anchor);
 * - `positive`: relevant candidates (for chains: the first steps, closest in meaning);
 * - `negative`: non-relevant candidates (for chains: the last steps; MTEB files also use unrelated texts);
 * - `positive_relevance` (optional): graded gains of the positives, same length, > 0, used by nDCG
 *   (default 1 each); negatives have gain 0. MAP and MRR treat every positive as relevant;
 * - `id` (optional) and any other fields are kept and ignored.
 *
 * Metrics (×100 in eval.json), over the candidates of each record sorted by score, highest first;
 * ties are broken against the positives (a scorer that gives everything the same score earns the
 * worst ranking, not the best):
 * - MAP: mean over records of average precision (mean of precision@rank at each positive's rank);
 * - MRR@10: mean of 1/rank of the first positive when it is within the top 10, else 0;
 * - nDCG@10: DCG@10 = Σ gain_r / log2(r + 1) over the top 10, divided by the ideal DCG@10.
 * The Python side (rankchain_posttrain/rerank.py) implements the same definitions; a test checks
 * both give the same numbers on the same scores.
 */
export const RerankRecordSchema = z
  .object({
    id: z.union([z.string(), z.number()]).optional(),
    query: z.string().trim().min(1, "must be a non-empty string"),
    positive: z.array(z.string().trim().min(1, "must be non-empty strings")).min(1, "needs at least one positive"),
    negative: z.array(z.string().trim().min(1, "must be non-empty strings")),
    positive_relevance: z.array(z.number().positive().finite()).optional(),
  })
  .passthrough()
  .superRefine((r, ctx) => {
    if (r.positive_relevance && r.positive_relevance.length !== r.positive.length) {
      ctx.addIssue({ code: "custom", path: ["positive_relevance"], message: `has ${r.positive_relevance.length} values for ${r.positive.length} positives` });
    }
  });

export type RerankRecord = z.infer<typeof RerankRecordSchema>;

export const RERANK_METRICS = [
  { name: "rerank_map", description: "mean average precision x100 of the candidates ranked by score (reranking file)" },
  { name: "rerank_mrr@10", description: "mean reciprocal rank x100 of the first positive within the top 10 (reranking file)" },
  { name: "rerank_ndcg@10", description: "nDCG@10 x100 with graded gains (positive_relevance, default 1) (reranking file)" },
] as const;

/** Reads and checks a reranking file; a bad line raises ConfigError naming file:line and field. */
export async function readRerankFile(path: string): Promise<RerankRecord[]> {
  const out: RerankRecord[] = [];
  for await (const { value } of readJsonl(path, RerankRecordSchema)) out.push(value);
  return out;
}

/** One record's candidates with their gains, in file order: positives first, then negatives. */
export function candidates(r: RerankRecord): { text: string; gain: number }[] {
  return [...r.positive.map((text, i) => ({ text, gain: r.positive_relevance?.[i] ?? 1 })), ...r.negative.map((text) => ({ text, gain: 0 }))];
}

/** Candidate indexes sorted by score (highest first), ties broken against relevant candidates. */
export function rankByScore(scores: readonly number[], gains: readonly number[]): number[] {
  return scores
    .map((s, i) => i)
    .sort((a, b) => scores[b]! - scores[a]! || gains[a]! - gains[b]! || a - b);
}

export function averagePrecision(ranking: readonly number[], gains: readonly number[]): number {
  let hits = 0;
  let sum = 0;
  ranking.forEach((idx, r) => {
    if (gains[idx]! > 0) {
      hits++;
      sum += hits / (r + 1);
    }
  });
  const relevant = gains.filter((g) => g > 0).length;
  return relevant === 0 ? 0 : sum / relevant;
}

export function reciprocalRankAt(ranking: readonly number[], gains: readonly number[], k = 10): number {
  for (let r = 0; r < Math.min(k, ranking.length); r++) if (gains[ranking[r]!]! > 0) return 1 / (r + 1);
  return 0;
}

export function ndcgAt(ranking: readonly number[], gains: readonly number[], k = 10): number {
  const dcg = (gs: readonly number[]) => gs.slice(0, k).reduce((s, g, r) => s + g / Math.log2(r + 2), 0);
  const ideal = dcg([...gains].sort((a, b) => b - a));
  return ideal === 0 ? 0 : dcg(ranking.map((i) => gains[i]!)) / ideal;
}

export interface RerankMetrics {
  "rerank_map": number;
  "rerank_mrr@10": number;
  "rerank_ndcg@10": number;
  records: number;
}

/**
 * MAP, MRR@10 and nDCG@10 (×100) of a scorer over reranking records. `scores[i][j]` is the score of
 * candidate j of record i, candidates in `candidates()` order (positives, then negatives).
 */
export function rerankMetrics(records: readonly RerankRecord[], scores: readonly (readonly number[])[]): RerankMetrics {
  if (scores.length !== records.length) throw new Error(`rerankMetrics: ${scores.length} score lists for ${records.length} records`);
  let map = 0;
  let mrr = 0;
  let ndcg = 0;
  records.forEach((r, i) => {
    const gains = candidates(r).map((c) => c.gain);
    const s = scores[i]!;
    if (s.length !== gains.length) throw new Error(`rerankMetrics: record ${i} has ${gains.length} candidates but ${s.length} scores`);
    const ranking = rankByScore(s, gains);
    map += averagePrecision(ranking, gains);
    mrr += reciprocalRankAt(ranking, gains, 10);
    ndcg += ndcgAt(ranking, gains, 10);
  });
  const n = Math.max(1, records.length);
  return { "rerank_map": (map / n) * 100, "rerank_mrr@10": (mrr / n) * 100, "rerank_ndcg@10": (ndcg / n) * 100, records: records.length };
}
