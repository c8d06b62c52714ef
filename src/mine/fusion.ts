/**
 * Fusion of several embedders' retrieval results into one candidate order.
 *
 *   rrf:  fused(c) = Σ_e 1 / (rrfK + rank_e(c))   over the embedders whose top-k holds c (rank 1 = best);
 *         an embedder that did not retrieve c adds nothing (Cormack, Clarke & Büttcher 2009, k = 60).
 *   mean: fused(c) = (1 / E) Σ_e cos_e(q, c)       every embedder's exact cosine, retrieved or not.
 *
 * Ties are broken by the candidate's id (lower first) so a run is reproducible.
 */
export const FUSIONS = ["rrf", "mean"] as const;
export type Fusion = (typeof FUSIONS)[number];

export const DEFAULT_RRF_K = 60;

/** One candidate of one query as every embedder sees it. */
export interface CandidateScores {
  id: number;
  /** Cosine to the query under each embedder (same order as the embedders). */
  scores: number[];
  /** 1-based rank in each embedder's top-k, or null where that embedder did not retrieve it. */
  ranks: (number | null)[];
}

export function rrfScore(ranks: readonly (number | null)[], rrfK = DEFAULT_RRF_K): number {
  if (!Number.isFinite(rrfK) || rrfK < 0) throw new Error(`rrf k must be a finite number >= 0, got ${rrfK}`);
  let s = 0;
  for (const r of ranks) {
    if (r === null) continue;
    if (!Number.isInteger(r) || r < 1) throw new Error(`ranks are 1-based integers, got ${r}`);
    s += 1 / (rrfK + r);
  }
  return s;
}

export function meanScore(scores: readonly number[]): number {
  if (scores.length === 0) throw new Error("mean fusion of no embedder scores");
  let s = 0;
  for (const x of scores) s += x;
  return s / scores.length;
}

export function fusedScore(c: CandidateScores, fusion: Fusion, rrfK = DEFAULT_RRF_K): number {
  return fusion === "rrf" ? rrfScore(c.ranks, rrfK) : meanScore(c.scores);
}

/** Candidates with their fused score, best first. */
export function fuse<C extends CandidateScores>(candidates: readonly C[], fusion: Fusion, rrfK = DEFAULT_RRF_K): (C & { fused: number })[] {
  return candidates
    .map((c) => ({ ...c, fused: fusedScore(c, fusion, rrfK) }))
    .sort((a, b) => (b.fused !== a.fused ? b.fused - a.fused : a.id - b.id));
}

/**
 * The positive-aware false-negative guard: a candidate is dropped when any embedder scores it
 * above `guard` × that embedder's score of the positive. Returns the first embedder (by index)
 * that trips it, or -1 when the candidate is kept.
 */
export function guardTrips(candidate: readonly number[], positive: readonly number[], guard: number): number {
  for (let e = 0; e < candidate.length; e++) {
    if (candidate[e]! > guard * positive[e]!) return e;
  }
  return -1;
}
