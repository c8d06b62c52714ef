import { describe, expect, it } from "vitest";
import { buildCfgStepRequest, cfgRewriteMessages, cfgStepSeed, CFG_PROMPT_NAME, CFG_PROMPT_VERSION, cfgTemplate } from "../../src/steering/cfg.ts";

describe("cfg step requests", () => {
  const anchor = "The cat sat on the mat.";
  it("step 1: both prompts hold the anchor, so guidance is 1 (plain decoding)", () => {
    const r = buildCfgStepRequest({ anchor, steps: [], guidance: 1.5, maxOutputTokens: 40 });
    expect(r.positive).toEqual(r.negative);
    expect(r.guidance).toBe(1);
    expect(r.positive.map((m) => m.content).join("\n")).toContain(anchor);
    expect(r.stopAtNewline).toBe(true);
  });
  it("step 2 rewrites x1 against the anchor; step 3 rewrites x2 against x1", () => {
    const s2 = buildCfgStepRequest({ anchor, steps: ["A cat was on the mat."], guidance: 1.5, maxOutputTokens: 40 });
    expect(s2.positive).toEqual(cfgRewriteMessages("A cat was on the mat."));
    expect(s2.negative).toEqual(cfgRewriteMessages(anchor));
    expect(s2.guidance).toBe(1.5);
    const s3 = buildCfgStepRequest({ anchor, steps: ["A cat was on the mat.", "A dog lay on the rug."], guidance: 2, maxOutputTokens: 40, seed: 3, temperature: 0.7 });
    expect(s3.positive).toEqual(cfgRewriteMessages("A dog lay on the rug."));
    expect(s3.negative).toEqual(cfgRewriteMessages("A cat was on the mat."));
    expect([s3.guidance, s3.temperature, s3.maxOutputTokens]).toEqual([2, 0.7, 40]);
    // a per-step seed: reproducible, and different from the previous step's
    expect(s3.seed).toBe(cfgStepSeed(3, 2));
    expect(buildCfgStepRequest({ anchor, steps: ["A cat was on the mat.", "A dog lay on the rug."], guidance: 2, maxOutputTokens: 40, seed: 3 }).seed).toBe(s3.seed);
    expect(cfgStepSeed(3, 1)).not.toBe(cfgStepSeed(3, 2));
    expect(buildCfgStepRequest({ anchor, steps: [], maxOutputTokens: 4 }).seed).toBeUndefined();
  });
  it("loads the versioned template from prompts/", () => {
    const t = cfgTemplate();
    expect([t.name, t.version]).toEqual([CFG_PROMPT_NAME, CFG_PROMPT_VERSION]);
    expect(t.hash).toMatch(/^[0-9a-f]{16}$/);
    expect(() => buildCfgStepRequest({ anchor, steps: [], guidance: 0.9, maxOutputTokens: 4 })).toThrow(RangeError);
  });
});
