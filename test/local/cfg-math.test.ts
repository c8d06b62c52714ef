import { describe, expect, it } from "vitest";
import { argmax, candidateScores, guidanceScores, guidanceScoresFlat, logSoftmax, logSoftmaxFlat, sampleToken, seededRandom } from "../../src/llm/local/cfg-math.ts";

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

  it("candidate scores from raw logits rank tokens exactly like the log-softmax scores", () => {
    const rnd = seededRandom(11);
    for (let trial = 0; trial < 50; trial++) {
      const V = 40;
      const pos = new Map<number, number>();
      const neg = new Map<number, number>();
      for (let t = 0; t < V; t++) {
        pos.set(t, (rnd() - 0.5) * 30);
        neg.set(t, (rnd() - 0.5) * 30);
      }
      const g = 1 + rnd() * 3;
      const full = guidanceScores(logSoftmax(pos, V), logSoftmax(neg, V), g);
      // all tokens as candidates (given in a scrambled order): the same winner as the full vector
      const scrambled = new Map([...pos].reverse());
      const c = candidateScores(scrambled, neg, g);
      expect(c.tokens).toEqual([...Array(V).keys()]);
      expect(c.tokens[argmax(c.scores)]).toBe(argmax(full));
      // a subset: the winner is the full-score argmax restricted to that subset
      const subset = new Map([...pos].filter(([t]) => t % 3 === 0));
      const s = candidateScores(subset, neg, g);
      let best = 0;
      for (let t = 0; t < V; t += 3) if (full[t]! > full[best]!) best = t;
      expect(s.tokens[argmax(s.scores)]).toBe(best);
    }
    // guidance 1 ignores the negative side; a missing negative logit is an error otherwise
    expect(candidateScores(new Map([[5, 1], [2, 3]]), undefined, 1).scores).toEqual(Float64Array.from([3, 1]));
    expect(() => candidateScores(new Map([[5, 1]]), new Map(), 1.5)).toThrow(/no negative logit/);
  });

  it("raw-logit scores from flat arrays pick and sample the same tokens as the log-softmax form", () => {
    const V = 500;
    const rand = seededRandom(3);
    for (let trial = 0; trial < 20; trial++) {
      const flat = () => {
        // a shuffled [token, logit, …] layout, as node-llama-cpp returns it (sorted by logit, not id)
        const ids = Array.from({ length: V }, (_, i) => i).sort(() => rand() - 0.5);
        return ids.flatMap((t) => [t, (rand() - 0.5) * 30]);
      };
      const pos = flat();
      const neg = flat();
      for (const G of [1, 1.5, 3]) {
        const ref = guidanceScores(logSoftmaxFlat(pos, V), G === 1 ? undefined : logSoftmaxFlat(neg, V), G);
        const raw = guidanceScoresFlat(pos, G === 1 ? undefined : neg, V, G)!;
        expect(argmax(raw)).toBe(argmax(ref));
        // a constant shift apart, so softmax sampling agrees too
        const shift = raw[0]! - ref[0]!;
        for (let t = 0; t < V; t++) expect(raw[t]! - ref[t]!).toBeCloseTo(shift, 9);
        for (const u of [0.01, 0.37, 0.93]) expect(sampleToken(raw, 0.8, u)).toBe(sampleToken(ref, 0.8, u));
      }
    }
  });

  it("raw-logit scores need both arrays to cover the whole vocabulary once", () => {
    const full = [2, 0.5, 0, 1.0, 1, -1.0];
    expect(guidanceScoresFlat(full, full, 3, 1.5)).toBeInstanceOf(Float64Array);
    expect(guidanceScoresFlat([0, 1.0, 1, 2.0], full, 3, 1.5)).toBeUndefined(); // positive misses a token
    expect(guidanceScoresFlat(full, [0, 1.0, 0, 1.0, 1, 2.0], 3, 1.5)).toBeUndefined(); // negative repeats one
    expect(guidanceScoresFlat(full, undefined, 3, 1)).toEqual(new Float64Array([1.0, -1.0, 0.5]));
    expect(() => guidanceScoresFlat(full, full, 3, 0.5)).toThrow(RangeError);
  });
});
