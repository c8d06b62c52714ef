import { describe, expect, it } from "vitest";
import { CosineLshIndex, dot, gaussianArray, normalize } from "../../src/validate/index.ts";
import { mulberry32 } from "../../src/util/random.ts";

/** n random unit vectors in d dimensions, reproducible. */
function randomUnits(n: number, d: number, seed: number): Float32Array[] {
  const g = gaussianArray(n * d, seed);
  return Array.from({ length: n }, (_, i) => normalize(g.subarray(i * d, (i + 1) * d)));
}

/** A unit vector at exactly cosine c to v (v must be unit). */
function atCosine(v: Float32Array, c: number, seed: number): Float32Array {
  const u = randomUnits(1, v.length, seed)[0]!;
  const p = dot(u, v);
  const perp = normalize(u.map((x, i) => x - p * v[i]!) as Float32Array);
  return v.map((x, i) => c * x + Math.sqrt(1 - c * c) * perp[i]!) as Float32Array;
}

describe("CosineLshIndex", () => {
  it("finds planted near-duplicates with the recall the band formula predicts, checking a small fraction of pairs", () => {
    const d = 64;
    const base = randomUnits(3000, d, 11);
    const index = new CosineLshIndex<number>({ dimensions: d, seed: 5 });
    base.forEach((v, i) => index.add(i, v));
    const rand = mulberry32(99);
    const queries: { q: Float32Array; planted: number }[] = [];
    for (let k = 0; k < 200; k++) {
      const target = Math.floor(rand() * base.length);
      queries.push({ q: atCosine(base[target]!, 0.955 + 0.04 * rand(), 1000 + k), planted: target });
    }
    let found = 0;
    let exactTruth = 0;
    let agree = 0;
    for (const { q, planted } of queries) {
      const truth = base.map((v, i) => [i, dot(q, v)] as const).filter(([, c]) => c >= 0.95).map(([i]) => i);
      exactTruth += truth.length;
      const got = index.query(q, 0.95).map((m) => m.key);
      if (got.includes(planted)) found++;
      agree += truth.filter((i) => got.includes(i)).length;
      // nothing below the threshold is ever returned (exact check)
      for (const m of index.query(q, 0.95)) expect(m.cosine).toBeGreaterThanOrEqual(0.95);
    }
    const recall = agree / exactTruth;
    expect(CosineLshIndex.candidateProbability(0.95)).toBeGreaterThan(0.99);
    expect(recall).toBeGreaterThanOrEqual(0.97);
    expect(found).toBeGreaterThanOrEqual(194);
    // brute force would make 3000 exact checks per query (x2 queries per loop above)
    const perQuery = index.exactChecks / (2 * queries.length);
    expect(perQuery).toBeLessThan(3000 * 0.1);
  });

  it("returns matches best first and validates its arguments", () => {
    const index = new CosineLshIndex<string>({ dimensions: 3, bandBits: 4, bands: 8 });
    index.add("x", new Float32Array([1, 0, 0]));
    index.add("y", new Float32Array([0.99, 0.14, 0]));
    index.add("z", new Float32Array([0, 0, 1]));
    const m = index.query(new Float32Array([1, 0.05, 0]), 0.9);
    expect(m.map((x) => x.key)).toEqual(["x", "y"]);
    expect(index.nearest(new Float32Array([0, 0.01, 1]), 0.9)?.key).toBe("z");
    expect(() => index.add("bad", new Float32Array(4))).toThrow(/3-dimensional/);
    expect(() => new CosineLshIndex({ dimensions: 3, bandBits: 31 })).toThrow(/bandBits/);
  });

  it("matches the analytic candidate probability empirically", () => {
    const d = 32;
    const index = new CosineLshIndex<number>({ dimensions: d, bandBits: 8, bands: 4, seed: 3 });
    const base = randomUnits(400, d, 21);
    base.forEach((v, i) => index.add(i, v));
    let hits = 0;
    base.forEach((v, i) => {
      if (index.query(atCosine(v, 0.9, 5000 + i), 0.5).some((m) => m.key === i)) hits++;
    });
    const expected = CosineLshIndex.candidateProbability(0.9, 8, 4);
    expect(Math.abs(hits / base.length - expected)).toBeLessThan(0.08);
  });
});
