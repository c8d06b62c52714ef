import { describe, expect, it } from "vitest";
import { argmax, guidanceScores, logSoftmax, sampleToken, seededRandom } from "../../src/llm/local/cfg-math.ts";

describe("cfg arithmetic", () => {
  it("logSoftmax normalises raw logits in float64", () => {
    const lp = logSoftmax(new Map([[0, 2], [1, 1], [2, -1000]]), 3);
    const total = Math.exp(lp[0]!) + Math.exp(lp[1]!) + Math.exp(lp[2]!);
    expect(total).toBeCloseTo(1, 12);
    expect(lp[0]! - lp[1]!).toBeCloseTo(1, 12);
    // far below float32's range, but still finite: −(G−1)·log p never becomes +∞
    expect(Number.isFinite(lp[2]!)).toBe(true);
    expect(lp[2]!).toBeLessThan(-900);
  });

  it("combines G·log p_pos − (G−1)·log p_neg", () => {
    const pos = Float64Array.from([-0.5, -1.2, -3]);
    const neg = Float64Array.from([-0.1, -2.5, -3]);
    const s = guidanceScores(pos, neg, 1.5);
    expect(s[0]).toBeCloseTo(1.5 * -0.5 - 0.5 * -0.1, 12);
    expect(s[1]).toBeCloseTo(1.5 * -1.2 - 0.5 * -2.5, 12);
    // plain decoding would pick token 0; guidance prefers the token the negative prompt dislikes
    expect(argmax(pos)).toBe(0);
    expect(argmax(s)).toBe(1);
  });

  it("G = 1 is plain decoding and ignores the negative side", () => {
    const pos = Float64Array.from([-0.5, -1.2, -3]);
    expect(guidanceScores(pos, Float64Array.from([-Infinity, 0, 0]), 1)).toBe(pos);
    expect(() => guidanceScores(pos, undefined, 1.5)).toThrow();
    expect(() => guidanceScores(pos, pos, 0.5)).toThrow(RangeError);
  });

  it("identical prompts cancel: the argmax is the plain argmax", () => {
    const lp = logSoftmax(new Map([[0, 0.3], [1, 2.2], [2, 2.1], [3, -4]]), 4);
    expect(argmax(guidanceScores(lp, lp, 1.5))).toBe(argmax(lp));
  });

  it("sampling is reproducible with a seed and greedy at temperature 0", () => {
    const s = Float64Array.from([0, -0.1, -0.2, -5]);
    const draw = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 20 }, () => sampleToken(s, 1, r()));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(new Set(draw(7)).size).toBeGreaterThan(1);
    expect(sampleToken(s, 0, 0.99)).toBe(0);
  });
});
