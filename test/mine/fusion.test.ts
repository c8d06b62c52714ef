import { describe, expect, it } from "vitest";
import { fuse, guardTrips, meanScore, rrfScore } from "../../src/mine/fusion.ts";

describe("fusion arithmetic (hand-computed)", () => {
  it("rrf sums 1/(k + rank) over the embedders that retrieved the candidate", () => {
    // ranks 1 and 3 with k = 60: 1/61 + 1/63
    expect(rrfScore([1, 3])).toBeCloseTo(1 / 61 + 1 / 63, 12);
    expect(rrfScore([1, 3])).toBeCloseTo(0.0322664585, 9);
    // missing from the second embedder's top-k: only 1/(60 + 2)
    expect(rrfScore([2, null])).toBeCloseTo(0.0161290323, 9);
    expect(rrfScore([1, 1], 0)).toBe(2);
    expect(() => rrfScore([0])).toThrow(/1-based/);
  });

  it("mean averages every embedder's cosine", () => {
    expect(meanScore([0.9, 0.6])).toBeCloseTo(0.75, 12);
    expect(meanScore([0.2, 0.5, 0.8])).toBeCloseTo(0.5, 12);
    expect(() => meanScore([])).toThrow();
  });

  it("orders candidates by the fused score (ties to the lower id) — rrf and mean can disagree", () => {
    const cands = [
      { id: 7, scores: [0.80, 0.50], ranks: [1, 9] as (number | null)[] }, // rrf 1/61 + 1/69 = 0.030886197; mean 0.65
      { id: 3, scores: [0.70, 0.70], ranks: [2, 2] as (number | null)[] }, // rrf 2/62 = 0.032258; mean 0.70
      { id: 5, scores: [0.75, 0.40], ranks: [null, 12] as (number | null)[] }, // rrf 1/72 = 0.013889; mean 0.575
      { id: 1, scores: [0.70, 0.70], ranks: [2, 2] as (number | null)[] }, // ties with id 3
    ];
    const rrf = fuse(cands, "rrf");
    expect(rrf.map((c) => c.id)).toEqual([1, 3, 7, 5]);
    expect(rrf[0]!.fused).toBeCloseTo(0.0322580645, 9);
    expect(rrf[2]!.fused).toBeCloseTo(0.0308861962, 9);
    const mean = fuse(cands, "mean");
    expect(mean.map((c) => c.id)).toEqual([1, 3, 7, 5]);
    expect(mean.map((c) => Number(c.fused.toFixed(3)))).toEqual([0.7, 0.7, 0.65, 0.575]);
    // where they disagree: a candidate ranked first by one embedder only
    const b = [
      { id: 0, scores: [0.95, 0.1], ranks: [1, null] as (number | null)[] }, // rrf 0.016393; mean 0.525
      { id: 1, scores: [0.5, 0.5], ranks: [3, 1] as (number | null)[] }, // rrf 1/63 + 1/61 = 0.032266; mean 0.5
    ];
    expect(fuse(b, "rrf").map((c) => c.id)).toEqual([1, 0]);
    expect(fuse(b, "mean").map((c) => c.id)).toEqual([0, 1]);
  });

  it("the guard trips on the first embedder scoring a candidate above guard × its positive score", () => {
    // positive scores 0.80 and 0.60; guard 0.95 → thresholds 0.76 and 0.57
    expect(guardTrips([0.75, 0.56], [0.8, 0.6], 0.95)).toBe(-1);
    expect(guardTrips([0.77, 0.10], [0.8, 0.6], 0.95)).toBe(0);
    expect(guardTrips([0.10, 0.58], [0.8, 0.6], 0.95)).toBe(1);
    expect(guardTrips([0.76, 0.57], [0.8, 0.6], 0.95)).toBe(-1); // at the threshold: kept (strictly above drops)
  });
});
