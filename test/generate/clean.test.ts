import { describe, expect, it } from "vitest";
import { cleanStep } from "../../src/generate/clean.ts";

describe("cleanStep", () => {
  const earlier = ["A man is playing a guitar on stage.", "A man is playing a violin on stage."];

  it("keeps a plain sentence", () => {
    expect(cleanStep("A woman is playing a violin on stage.", earlier)).toEqual({ ok: true, text: "A woman is playing a violin on stage.", fixes: [] });
  });

  it.each([
    ['"A woman sings on stage."', "A woman sings on stage."],
    ["`A woman sings on stage.`", "A woman sings on stage."],
    ["“A woman sings on stage.”", "A woman sings on stage."],
    ["Here is the rewritten sentence: A woman sings on stage.", "A woman sings on stage."],
    ["Sure! Here's step 3:\nA woman sings on stage.", "A woman sings on stage."],
    ["3. A woman sings on stage.", "A woman sings on stage."],
    ["  A woman sings on stage.  \n", "A woman sings on stage."],
    ["```\nA woman sings on stage.\n```", "A woman sings on stage."],
  ])("cleans %j", (raw, expected) => {
    const r = cleanStep(raw, earlier);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.text).toBe(expected);
      if (raw.trim() !== expected) expect(r.fixes.length).toBeGreaterThan(0);
    }
  });

  it("keeps quotes that belong to the sentence", () => {
    const r = cleanStep('He said "stop" and "go" loudly.', earlier);
    expect(r).toMatchObject({ ok: true, text: 'He said "stop" and "go" loudly.' });
  });

  it.each([
    ["", "empty"],
    ["   \n  ", "empty"],
    ['""', "empty"],
    ["I'm sorry, but I can't help with that.", "refusal"],
    ["As an AI language model, I cannot rewrite this.", "refusal"],
    ["A woman sings.\nThis keeps the stage but changes the performer.", "multi-line"],
    ["Here is the rewritten sentence:", "explanation"],
    ["A man is playing a violin on stage!", "duplicate"],
    ["a man is PLAYING a guitar on stage", "duplicate"],
  ])("rejects %j as %s", (raw, reason) => {
    const r = cleanStep(raw, earlier);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
  });

  it("rejects a step cut off by the token limit", () => {
    const r = cleanStep("A woman is playing a", earlier, { finishedByLength: true });
    expect(r).toMatchObject({ ok: false, reason: "truncated" });
  });
});
