import { describe, expect, it } from "vitest";
import { exactTopK, HnswIndex, normalizeRows, rowDot } from "../../src/vector/index.ts";
import { mulberry32 } from "../../src/util/random.ts";

function randomUnitRows(n: number, d: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const m = new Float32Array(n * d);
  for (let i = 0; i < m.length; i++) m[i] = rand() * 2 - 1;
  return normalizeRows(m, d);
}

/** Clustered data (like sentence embeddings): centres plus noise, so neighbours are meaningful. */
function clusteredRows(n: number, d: number, clusters: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const centres = randomUnitRows(clusters, d, seed + 1);
  const m = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    const c = Math.floor(rand() * clusters);
    for (let i = 0; i < d; i++) m[r * d + i] = centres[c * d + i]! + (rand() - 0.5) * 0.4;
  }
  return normalizeRows(m, d);
}

describe("exactTopK", () => {
  it("equals a full sort of all inner products, with exclusions and ties to the lower row", () => {
    const d = 8;
    const pool = randomUnitRows(300, d, 1);
    const queries = randomUnitRows(7, d, 2);
    const exclude = (q: number, id: number) => id % 7 === q;
    const got = exactTopK(pool, queries, d, 10, exclude);
    for (let q = 0; q < 7; q++) {
      const all = Array.from({ length: 300 }, (_, id) => ({ id, s: Math.fround(rowDot(queries, q, pool, id, d)) }))
        .filter((x) => !exclude(q, x.id))
        .sort((a, b) => b.s - a.s || a.id - b.id)
        .slice(0, 10);
      expect(Array.from(got[q]!.ids)).toEqual(all.map((x) => x.id));
      got[q]!.scores.forEach((s, j) => expect(s).toBeCloseTo(all[j]!.s, 5));
    }
    // identical rows tie: the lower row number comes first
    const dup = new Float32Array([1, 0, 0, 1, 1, 0]);
    expect(Array.from(exactTopK(dup, new Float32Array([1, 0]), 2, 2)[0]!.ids)).toEqual([0, 2]);
  });

  it("returns fewer than k when the pool is smaller, and names bad arguments", () => {
    expect(exactTopK(new Float32Array([1, 0]), new Float32Array([1, 0]), 2, 5)[0]!.ids.length).toBe(1);
    expect(() => exactTopK(new Float32Array(3), new Float32Array(2), 2, 1)).toThrow(/multiple of 2/);
    expect(() => exactTopK(new Float32Array(2), new Float32Array(2), 2, 0)).toThrow(/k must be/);
  });
});

describe("HnswIndex (usearch)", () => {
  it("finds nearly the same top-10 as exact search on clustered vectors, with cosine scores", async () => {
    const d = 32;
    const pool = clusteredRows(4000, d, 40, 3);
    const queries = clusteredRows(100, d, 40, 3 + 1000);
    const index = await HnswIndex.build(pool, d, { threads: 1 });
    expect(index.size).toBe(4000);
    const approx = index.search(queries, 10);
    const exact = exactTopK(pool, queries, d, 10);
    let hits = 0;
    for (let q = 0; q < 100; q++) {
      const truth = new Set(exact[q]!.ids);
      for (const id of approx[q]!.ids) if (truth.has(id)) hits++;
      // scores are cosines of the returned rows, best first
      const a = approx[q]!;
      for (let j = 0; j < a.ids.length; j++) expect(a.scores[j]).toBeCloseTo(rowDot(queries, q, pool, a.ids[j]!, d), 4);
      for (let j = 1; j < a.ids.length; j++) expect(a.scores[j]!).toBeLessThanOrEqual(a.scores[j - 1]! + 1e-6);
    }
    expect(hits / 1000).toBeGreaterThanOrEqual(0.95);
  });

  it("caps k at the index size", async () => {
    const index = await HnswIndex.build(randomUnitRows(3, 4, 9), 4);
    expect(index.search(randomUnitRows(2, 4, 10), 10).map((r) => r.ids.length)).toEqual([3, 3]);
  });
});
