import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parsePermutation, slidingWindows } from "../../src/rerank/index.ts";

describe("slidingWindows (back to front)", () => {
  it("RankGPT's default: 100 passages, width 20, step 10", () => {
    const w = slidingWindows(100, 20, 10);
    expect(w[0]).toEqual({ start: 80, end: 100 });
    expect(w[1]).toEqual({ start: 70, end: 90 });
    expect(w.at(-1)).toEqual({ start: 0, end: 20 });
    expect(w).toHaveLength(9);
  });
  it("fewer passages than the width: one window over all; fewer than 2: none", () => {
    expect(slidingWindows(7, 20, 10)).toEqual([{ start: 0, end: 7 }]);
    expect(slidingWindows(20, 20, 10)).toEqual([{ start: 0, end: 20 }]);
    expect(slidingWindows(1)).toEqual([]);
    expect(slidingWindows(0)).toEqual([]);
  });
  it("the last window always starts at 0 (RankGPT's loop would stop at start 5 for n = 25)", () => {
    expect(slidingWindows(25, 20, 10)).toEqual([
      { start: 5, end: 25 },
      { start: 0, end: 15 },
    ]);
  });
  it("rejects bad width and step with the value in the message", () => {
    expect(() => slidingWindows(10, 1, 1)).toThrow(/width.*got 1/);
    expect(() => slidingWindows(10, 20, 0)).toThrow(/step.*got 0/);
    expect(() => slidingWindows(10, 20, 21)).toThrow(/step.*got 21/);
  });
  it("property: windows cover every index, stay in range, overlap by width − step, and a passage at the bottom can reach the top", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 300 }), fc.integer({ min: 2, max: 40 }), fc.integer({ min: 1, max: 40 }), (n, width, stepRaw) => {
        const step = Math.min(stepRaw, width);
        const ws = slidingWindows(n, width, step);
        const covered = new Set<number>();
        for (const w of ws) {
          expect(w.start).toBeGreaterThanOrEqual(0);
          expect(w.end).toBeLessThanOrEqual(n);
          expect(w.end - w.start).toBe(Math.min(width, w.end));
          for (let i = w.start; i < w.end; i++) covered.add(i);
        }
        expect(covered.size).toBe(n);
        expect(ws[0]!.end).toBe(n);
        expect(ws.at(-1)!.start).toBe(0);
        for (let k = 1; k < ws.length; k++) expect(ws[k]!.end).toBe(ws[k - 1]!.end - step);
        // simulate: a perfect judge moves the best passage (at the bottom) to each window's top
        if (step < width) {
          let pos = n - 1;
          for (const w of ws) if (pos >= w.start && pos < w.end) pos = w.start;
          expect(pos).toBe(0);
        }
      }),
    );
  });
});

describe("parsePermutation", () => {
  it("reads the RankGPT answer format", () => {
    expect(parsePermutation("[2] > [3] > [1]", 3)).toEqual({ order: [1, 2, 0], issues: { duplicates: 0, missing: 0, outOfRange: 0, unparsable: false } });
  });
  it("duplicates: the first mention counts", () => {
    const r = parsePermutation("[2] > [2] > [1] > [3] > [1]", 3);
    expect(r.order).toEqual([1, 0, 2]);
    expect(r.issues.duplicates).toBe(2);
  });
  it("missing ids are appended in input order", () => {
    const r = parsePermutation("[4] > [2]", 5);
    expect(r.order).toEqual([3, 1, 0, 2, 4]);
    expect(r.issues.missing).toBe(3);
  });
  it("out-of-range ids (0, n+1, huge) are ignored", () => {
    const r = parsePermutation("[0] > [3] > [7] > [99999999999999999999] > [1]", 3);
    expect(r.order).toEqual([2, 0, 1]);
    expect(r.issues.outOfRange).toBe(3);
  });
  it("no brackets, other separators, prose around it", () => {
    expect(parsePermutation("Ranking: 3, 1, 2.", 3).order).toEqual([2, 0, 1]);
    expect(parsePermutation("Sure! The ranking is [3] > [1] > [2] because passage 2 is off-topic", 3).order).toEqual([2, 0, 1]);
  });
  it("nothing readable keeps the input order and says so", () => {
    const r = parsePermutation("I cannot rank these.", 4);
    expect(r.order).toEqual([0, 1, 2, 3]);
    expect(r.issues.unparsable).toBe(true);
    expect(r.issues.missing).toBe(4);
  });
  it("property: any text gives a permutation of 0..n-1", () => {
    fc.assert(
      fc.property(fc.string(), fc.array(fc.integer({ min: -3, max: 30 })), fc.integer({ min: 0, max: 25 }), (junk, ids, n) => {
        const text = junk + ids.map((i) => `[${i}]`).join(" > ");
        const { order } = parsePermutation(text, n);
        expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      }),
    );
  });
});
