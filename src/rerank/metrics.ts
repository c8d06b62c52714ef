/**
 * Ranking metrics over one ranked list. `ranking` lists candidate indices best first; `gains[i]` is
 * candidate i's graded relevance (0 = not relevant). Kept minimal so it can be swapped for
 * src/eval's metric functions once they land (issue 9).
 */

/** nDCG@k with exponential gain (2^g − 1) and log2(rank + 1) discount; 0 when nothing is relevant. */
export function ndcgAt(ranking: readonly number[], gains: readonly number[], k = 10): number {
  const dcg = (gs: readonly number[]) => gs.slice(0, k).reduce((s, g, r) => s + (2 ** g - 1) / Math.log2(r + 2), 0);
  const ideal = dcg([...gains].sort((a, b) => b - a));
  return ideal === 0 ? 0 : dcg(ranking.map((i) => gains[i]!)) / ideal;
}

/** Average precision (binary: gain > 0 is relevant) over the whole list. */
export function averagePrecision(ranking: readonly number[], gains: readonly number[]): number {
  const total = gains.filter((g) => g > 0).length;
  if (total === 0) return 0;
  let hits = 0;
  let sum = 0;
  ranking.forEach((i, r) => {
    if (gains[i]! > 0) {
      hits++;
      sum += hits / (r + 1);
    }
  });
  return sum / total;
}

/** Reciprocal rank of the first relevant candidate within the top k (0 when none). */
export function reciprocalRankAt(ranking: readonly number[], gains: readonly number[], k = 10): number {
  const r = ranking.slice(0, k).findIndex((i) => gains[i]! > 0);
  return r < 0 ? 0 : 1 / (r + 1);
}
